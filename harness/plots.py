"""Plots the notebooks share: a request timeline, labelled bars, and the note of the machine.

Presentation only: every figure plotted here comes from harness.scenarios.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

OK = "#2a9d8f"
FAILED = "#e63946"
WRONG = "#f4a261"  # answered, but naming the wrong species
NEUTRAL = "#8d99ae"


def machine_note(fig: Figure, env: dict[str, Any]) -> None:
    """Write where the figures were measured in the bottom-right corner of ``fig``."""
    text = f"measured on {env['cpus_usable']} CPUs ({env['cpu_model']}), Python {env['python']}, {env['measured_at']}"
    fig.text(0.995, 0.005, text, ha="right", va="bottom", fontsize=7, color="gray")


def timeline(ax: Axes, result: dict[str, Any], title: str, event: str) -> None:
    """Requests answered and failed per time bucket of a crash or upgrade result, the event marked."""
    t = result["timeline"]
    width = t["t_s"][1] - t["t_s"][0] if len(t["t_s"]) > 1 else 0.1
    right = [o - w for o, w in zip(t["ok"], t.get("wrong") or [0] * len(t["ok"]))]
    ax.bar(t["t_s"], right, width, align="edge", color=OK, label="answered")
    if any(t.get("wrong") or ()):  # answered, wrongly: a model that loads but names the wrong species
        ax.bar(t["t_s"], t["wrong"], width, bottom=right, align="edge", color=WRONG, label="answered wrongly")
    ax.bar(t["t_s"], t["failed"], width, bottom=t["ok"], align="edge", color=FAILED, label="failed")
    ax.axvline(result["event_s"], color="black", linestyle="--", linewidth=1)
    top = max(o + f for o, f in zip(t["ok"], t["failed"])) or 1
    ax.set_ylim(0, top * 1.25)
    ax.text(result["event_s"], top * 1.12, f" {event}", fontsize=9)
    ax.set(title=title, xlabel="time since the load started (s)", ylabel=f"requests per {width * 1000:.0f} ms")
    ax.legend(loc="upper right", fontsize=8)


def bad_releases(results: dict[str, dict[str, Any]], layer: str, env: dict[str, Any]) -> Figure:
    """One timeline per bad release (harness.releases.every), the release and the rollback marked."""
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    for ax, (kind, result) in zip(axes[0], results.items()):
        verdict = "refused" if result["refused"] else "not refused"
        timeline(ax, result, f"{layer}: {kind} release ({verdict})", "release")
        top = ax.get_ylim()[1] / 1.25
        ax.axvline(result["rollback_event_s"], color="black", linestyle=":", linewidth=1)
        ax.text(result["rollback_event_s"], top * 1.02, " rollback", fontsize=9)
    machine_note(fig, env)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def bars(ax: Axes, labels: list[str], values: list[float], fmt: str = "{:.0f}", colors: Any = None) -> None:
    """A bar per label with its value written on top."""
    drawn = ax.bar(labels, values, color=colors or NEUTRAL)
    ax.bar_label(drawn, labels=[fmt.format(v) for v in values], fontsize=9, padding=2)
    ax.set_ylim(0, max(values) * 1.2 if max(values) > 0 else 1)


def slow_clients(ax: Axes, result: dict[str, Any], title: str) -> None:
    """Normal requests answered and failed over time in a slow-clients result, the slow clients' wait shaded."""
    timeline(ax, result, title, f"{result['slow_clients']} slow clients connect")
    ax.axvspan(result["event_s"], result["release_s"], color=NEUTRAL, alpha=0.2, label="slow clients waiting")
    ax.legend(loc="upper right", fontsize=8)
