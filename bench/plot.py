"""results/bench.png: single-row requests/s at 8 connections per server, against the in-process floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.servers import CEILINGS
from bench.servers import WORKERS

KINDS = {"ours (stages 02-04)": "tab:blue", "ceilings (no model)": "tab:gray", "the peers": "tab:orange"}


def kind(name: str) -> str:
    """Which bar colour a server gets: one of our stages, a ceiling or a peer."""
    ours, ceiling, peer = KINDS
    return ours if name[:2].isdigit() else ceiling if name in CEILINGS.values() else peer


def plot(results: dict[str, Any], out: Path) -> None:
    """One bar a server: the rounds' median with their range, and the in-process floor times the workers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    table = results["summary"]["table"]
    names = [n for n in table if table[n]["single_rps@8"]]
    values = [table[n]["single_rps@8"] for n in names]
    low, high = zip(*(table[n]["single_rps@8_range"] for n in names))
    errors = [[v - lo for v, lo in zip(values, low)], [hi - v for v, hi in zip(values, high)]]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(names, values, xerr=errors, capsize=3, color=[KINDS[kind(n)] for n in names])
    floor = results["in_process_floor"]["single_calls_per_s"] * WORKERS
    line = ax.axvline(floor, color="black", linestyle="--")
    ax.set_xlabel(f"single-row requests/s at 8 connections (wrk; median of {results['rounds']} rounds, bar: range)")
    ax.set_title("Per-request overhead decides single-row throughput")
    ax.invert_yaxis()
    handles = [Patch(color=c, label=k) for k, c in KINDS.items()]
    ax.legend([*handles, line], [*KINDS, f"in-process floor x {WORKERS} cores"], loc="lower right", fontsize=8)
    if results.get("run"):
        fig.text(0.995, 0.005, f"run {results['run']['run_id']}", ha="right", va="bottom", fontsize=7, color="gray")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
