"""The figure blocks of bench/README.md, rendered from results/bench.json.

The README's prose says what each comparison means and what the profile
measured; every figure it points at sits in a block between
``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` (the marks
harness.readme uses for the stage READMEs), rewritten by `make bench` and
checked equal to the results by tests/test_bench.py.

    python -m bench.readme     # rewrite the blocks from results/bench.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.goals import FASTAPI
from bench.goals import GOALS
from bench.goals import MLSERVER
from bench.goals import OURS
from bench.goals import evaluate
from bench.goals import own_route
from bench.servers import CEILINGS
from bench.servers import UNOBSERVED
from harness import publish
from harness.core import ROOT
from harness.readme import BLOCK
from harness.spread import plus_minus
from harness.spread import ratio

README = ROOT / "bench" / "README.md"
RESULTS = ROOT / "results" / "bench.json"
NOT_MEASURED = "not measured"


def load(results: dict[str, Any], server: str, name: str) -> dict[str, Any] | None:
    """One load of one server (``predict_1@8``, ...), or None when it was not measured."""
    entry = results["servers"].get(server, {}).get("loads", {}).get(name)
    return entry if entry and entry.get("rps") else None


def rate(entry: dict[str, Any] | None, unit: str = "req/s") -> str:
    """A rate with half its rounds' range, or "not measured"."""
    return f"{plus_minus(entry)} {unit}" if entry else NOT_MEASURED


def rows(entry: dict[str, Any] | None) -> str:
    """A load's rows/s (its median round), or "not measured"."""
    return f"{entry['rows_per_s']:,.0f} rows/s" if entry else NOT_MEASURED


def run_block(results: dict[str, Any]) -> str:
    return (
        f"- {publish.banner(results.get('run'))}\n"
        f"- {results['rounds']} rounds of {results['seconds_per_load']:g} s a load with every server up, the median "
        f"round kept; {results['workers']} workers for every multi-process server.\n"
    )


def servers_block(results: dict[str, Any]) -> str:
    lines = [
        "| server | route | req/s, 1 conn | req/s, 8 conns | p50 ms (8) | p99 ms (8) | server CPU µs/req (8) "
        "| 1,000-row batch (8) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in results["servers"].items():
        if "loads" not in entry:
            lines.append(f"| {name} | | {entry.get('skipped', NOT_MEASURED)} | | | | | |")
            continue
        kind = own_route(entry["loads"])
        one, eight = load(results, name, f"{kind}_1@1"), load(results, name, f"{kind}_1@8")
        cpu = (eight or {}).get("server_cpu_us_per_request")
        lines.append(
            f"| {name} | {kind} | {plus_minus(one) if one else '-'} | {plus_minus(eight) if eight else '-'} "
            f"| {eight['latency_ms']['p50'] if eight else '-'} | {eight['latency_ms']['p99'] if eight else '-'} "
            f"| {'-' if cpu is None else f'{cpu:,.0f}'} | {rows(load(results, name, f'{kind}_1000@8'))} |"
        )
    floor = results["in_process_floor"]
    lines.append(f"\nIn-process floor (validate + predict, no HTTP, one core): {floor['single_calls_per_s']:,.0f} "
                 f"calls/s, {floor['batch_rows_per_s']:,.0f} rows/s in 1,000-row batches.")  # fmt: skip
    return "\n".join(lines) + "\n"


def goals_block(results: dict[str, Any]) -> str:
    lines = [
        "| goal | ours | target | theirs | ours over theirs (medians) | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for goal in GOALS:
        g = evaluate(goal, results)
        shown = "-" if g["ratio"] is None else f"{g['ratio']:.2f}"
        missed = f", by {g['missed_by']:.0%}" if g["missed_by"] is not None else ""
        ours, theirs = (rate(g[side], goal.quantity) for side in ("ours", "theirs"))
        lines.append(f"| {goal.name} | {ours} | {goal.comparison} {goal.target:g} x | {theirs} | {shown} "
                     f"| {g['verdict']}{missed} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def profile_block(results: dict[str, Any]) -> str:
    profile = results.get("profile")
    if not profile:
        return "- Not profiled in this run: `make bench` profiles stage 03 first (`make bench-profile` alone).\n"
    layers, total = profile["layers_us_per_request"], profile["server_cpu_us_per_request"]
    ours = sum(us for name, us in layers.items() if name.startswith(("app.py", "model.py")))
    top = ", ".join(f"`{name}` {share:.0%}" for name, share in list(profile["top_self"].items())[:3])
    lines = [
        f"{profile['samples']:,} samples of one worker while it served {profile['rps_while_sampled']:,.0f} req/s "
        f"(py-spy attached, not a throughput figure): {total:,.0f} µs of server CPU a request.",
        "",
        "| layer (innermost recognised frame) | µs a request | share |",
        "|---|---:|---:|",
        *(f"| {name} | {us:,.0f} | {profile['layers'][name]:.0%} |" for name, us in layers.items()),
        "",
        f"Our own code (app.py, model.py): {ours:,.0f} µs of the {total:,.0f}. "
        f"The functions with the most samples of their own: {top}.",
    ]
    return "\n".join(lines) + "\n"


def single_block(results: dict[str, Any]) -> str:
    ours, fast = load(results, OURS, "predict_1@8"), load(results, FASTAPI, "predict_1@8")
    bare, echo = (load(results, name, "predict_1@8") for name in CEILINGS.values())
    floor = results["in_process_floor"]
    lines = [
        f"- Stage 03: {rate(ours)}; FastAPI + uvicorn: {rate(fast)} "
        f"(stage 03 over FastAPI: {ratio(ours, fast) if ours and fast else NOT_MEASURED}).",
        f"- gunicorn with a bare WSGI function and no model: {rate(bare)}; with Flask echoing the JSON body: "
        f"{rate(echo)}; stage 03 over the bare ceiling: {ratio(ours, bare) if ours and bare else NOT_MEASURED}.",
        f"- The in-process floor times the workers: {floor['single_calls_per_s'] * results['workers']:,.0f} "
        "calls/s, with no HTTP at all.",
    ]
    return "\n".join(lines) + "\n"


def batch_block(results: dict[str, Any]) -> str:
    floor, workers = results["in_process_floor"], results["workers"]
    ours, ours_v2 = load(results, OURS, "predict_1000@8"), load(results, OURS, "v2_1000@8")
    with_json = floor["batch_rows_per_s_with_json"] * workers
    lines = [
        f"- In-process, one core: {floor['batch_rows_per_s']:,.0f} rows/s for validate + predict; "
        f"{floor['batch_rows_per_s_with_json']:,.0f} rows/s with the JSON decode and encode a server adds.",
        f"- Stage 03 on /predict: {rows(ours)}"
        + (f", {ours['rows_per_s'] / with_json:.2f} of the JSON floor times {workers} workers" if ours else "")
        + f"; FastAPI + uvicorn: {rows(load(results, FASTAPI, 'predict_1000@8'))}.",
        f"- On V2: stage 03 {rows(ours_v2)}, MLServer {rows(load(results, MLSERVER, 'v2_1000@8'))}.",
    ]
    sizes = {name: results["servers"].get(name, {}).get("answer_bytes", {}).get("v2_1000") for name in (OURS, MLSERVER)}
    if all(sizes.values()):
        lines.append(f"- The answer to the same 1,000-row V2 request: stage 03 {sizes[OURS]:,} bytes, MLServer "
                     f"{sizes[MLSERVER]:,} bytes.")  # fmt: skip
    return "\n".join(lines) + "\n"


def observed_block(results: dict[str, Any]) -> str:
    """What the request ids, JSON access lines and metrics cost stage 03, single rows on the same route."""
    lines = []
    for connections in (1, 8):
        ours, plain = (
            load(results, OURS, f"predict_1@{connections}"),
            load(results, UNOBSERVED, f"predict_1@{connections}"),
        )
        if not (ours and plain):
            lines.append(f"- {connections} connection(s): {NOT_MEASURED} (the last `make bench` ran without the "
                         "server that has them off)")  # fmt: skip
            continue
        lines.append(
            f"- {connections} connection(s), direct: {rate(ours)} with them, {rate(plain)} without "
            f"({ratio(ours, plain)}); p50 {ours['latency_ms']['p50']} ms against {plain['latency_ms']['p50']} ms."
        )
    return "\n".join([*lines, f"- {publish.banner(results.get('run'))}"]) + "\n"


BLOCKS = {
    "run": run_block,
    "servers": servers_block,
    "goals": goals_block,
    "profile": profile_block,
    "single": single_block,
    "batch": batch_block,
    "observed": observed_block,
}
#: the pages holding bench blocks: the bench's README, and stage 03's for what its logs and metrics cost
PAGES = (README, ROOT / "03_wsgi" / "README.md")


def rendered(text: str, results: dict[str, Any]) -> str:
    """``text`` with every bench figure block re-rendered from ``results`` (other blocks left to their own)."""
    return BLOCK.sub(
        lambda m: m.group(1) + BLOCKS[m.group(2)](results) + m.group(4) if m.group(2) in BLOCKS else m.group(0), text
    )


def update(results: dict[str, Any], pages: tuple[Path, ...] = PAGES) -> bool:
    """Rewrite the bench figure blocks of ``pages``; whether any changed."""
    changed = False
    for path in pages:
        text = rendered(path.read_text(), results)
        if text != path.read_text():
            path.write_text(text)
            changed = True
    return changed


def main() -> int:
    """Command line: rewrite the blocks from results/bench.json."""
    changed = update(json.loads(RESULTS.read_text()))
    print(f"{', '.join(str(p.relative_to(ROOT)) for p in PAGES)}: {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
