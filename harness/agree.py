"""Do the committed documents tell one story? The same quantity, read from each, set side by side.

The documents: results/scorecard.json, results/bench.json and the notebooks'
committed outputs (each figure a notebook states
is in its output's metadata: harness.publish.show). The README blocks are rendered
from the scorecard and checked equal to it by tests/test_docs.py.

A rate agrees with another when their ranges (min to max over the rounds),
each widened by the run's own measured noise (the calibration's floor noise),
overlap; a ratio (stage 04 over stage 03) likewise, from its two rates' ranges;
an event (a crash, an upgrade) is one event, the same in every document.

    python -m harness.agree        # the disagreements, one a line (exit 1), or "one story"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from harness.paths import ROOT
from harness.readme import rate
from harness.readme import route

RESULTS = ROOT / "results"
NOTEBOOKS = ROOT / "notebooks"
EVENT_KEYS = ("failed", "requests", "recovered", "longest_stall_s", "serves_new_version", "wrong", "refused")
#: bench.json's server names, as the scorecard's quantities name them
BENCH_NAMES = {"02 Flask dev server": "stage2 direct", "03 gunicorn": "stage3 direct",
               "04 container": "stage4 published port"}  # fmt: skip
RATIOS = {"stage4 published port over stage3 direct rps@8": ("stage4 published port rps@8", "stage3 direct rps@8")}


def load(name: str, root: Path = ROOT) -> dict[str, Any] | None:
    path = root / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def from_scorecard(card: dict[str, Any]) -> dict[str, Any]:
    """Quantity -> figure: every rate by stage, route and clients, the floor, every crash and upgrade."""
    found: dict[str, Any] = {}
    for s in card["stages"]:
        for entry in s.get("throughput", []):
            path = "published port" if entry["path"] == "published port" else route(entry)
            found[f"stage{s['stage']} {path} rps@{entry['connections']}"] = entry
        for key in ("crash", "crash_worker", "upgrade", "upgrade_alternative"):
            if s.get(key, {}).get("applicable", True) and key in s:
                found[f"stage{s['stage']} {key}"] = {k: s[key][k] for k in EVENT_KEYS if k in s[key]}
        bad = s.get("bad_release", {})
        for kind, event in bad.items() if bad.get("applicable", True) else ():
            found[f"stage{s['stage']} bad release {kind}"] = {k: event[k] for k in EVENT_KEYS if k in event}
    floor = next((s for s in card["stages"] if s["stage"] == 1), None)
    if floor and rate(floor, 1):
        found["floor calls/s"] = rate(floor, 1)
    return found


def from_bench(bench: dict[str, Any]) -> dict[str, Any]:
    """Quantity -> figure: our stages' single-row rates and the floor, as the benchmark measured them."""
    found: dict[str, Any] = {}
    for name, quantity in BENCH_NAMES.items():
        for load_name, entry in bench["servers"].get(name, {}).get("loads", {}).items():
            if load_name.startswith("predict_1@"):
                found[f"{quantity} rps@{load_name.split('@')[1]}"] = entry
    f = bench["in_process_floor"]
    found["floor calls/s"] = {"rps": f["single_calls_per_s"], "rps_min": f.get("single_calls_per_s_min"),
                              "rps_max": f.get("single_calls_per_s_max")}  # fmt: skip
    return found


def from_notebook(path: Path) -> dict[str, Any]:
    """The figures a notebook's committed outputs state (harness.publish.show's metadata)."""
    found: dict[str, Any] = {}
    for cell in json.loads(path.read_text())["cells"]:
        for output in cell.get("outputs", []):
            found.update(output.get("metadata", {}).get("figures", {}))
    return found


def documents(root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """Document name -> its quantities, for every committed document that states any."""
    docs: dict[str, dict[str, Any]] = {}
    # results/run.json's floor is the calibration: a noise reading over three seconds before the run, not a
    # published figure; the run's own floors (scorecard, bench) are medians of rounds spread over the run.
    for name, reader in (("scorecard", from_scorecard), ("bench", from_bench)):
        content = load(name, root)
        if content:
            docs[f"results/{name}.json"] = reader(content)
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        docs[f"notebooks/{path.name}"] = from_notebook(path)
    for figures in docs.values():  # a ratio is a quantity of its own, from the document's two rates
        for quantity, (top, bottom) in RATIOS.items():
            if top in figures and bottom in figures:
                figures[quantity] = ratio_range(figures[top], figures[bottom])
    return docs


def bounds(entry: dict[str, Any]) -> tuple[float, float]:
    return entry.get("rps_min") or entry["rps"], entry.get("rps_max") or entry["rps"]


def ratio_range(top: dict[str, Any], bottom: dict[str, Any]) -> dict[str, float]:
    """``top`` over ``bottom`` as a rate-like entry: the median ratio, the lowest and the highest possible."""
    (t_lo, t_hi), (b_lo, b_hi) = bounds(top), bounds(bottom)
    return {"rps": top["rps"] / bottom["rps"], "rps_min": t_lo / b_hi, "rps_max": t_hi / b_lo}


def same(a: Any, b: Any, noise: float) -> bool:
    """Whether two figures of one quantity agree: overlapping ranges (each widened by ``noise``), or equal events."""
    if isinstance(a, dict) and "rps" in a and isinstance(b, dict) and "rps" in b:
        (a_lo, a_hi), (b_lo, b_hi) = bounds(a), bounds(b)
        return a_lo * (1 - noise) <= b_hi * (1 + noise) and b_lo * (1 - noise) <= a_hi * (1 + noise)
    if isinstance(a, dict) and isinstance(b, dict):
        return all(a[k] == b[k] for k in a.keys() & b.keys())
    return a == b


def describe(figure: Any) -> str:
    if isinstance(figure, dict) and "rps" in figure:
        low, high = bounds(figure)
        return f"{figure['rps']:.4g} ({low:.4g} to {high:.4g})"
    return json.dumps(figure, sort_keys=True)


def disagreements(docs: dict[str, dict[str, Any]], noise: float) -> list[str]:
    """Every pair of documents that states one quantity differently, one line each."""
    found = []
    names = list(docs)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            for quantity in sorted(docs[first].keys() & docs[second].keys()):
                a, b = docs[first][quantity], docs[second][quantity]
                if not same(a, b, noise):
                    found.append(f"{quantity}: {first} says {describe(a)}, {second} says {describe(b)}")
    return found


def run_ids(root: Path = ROOT) -> dict[str, str | None]:
    """The run id every committed document carries (None where it carries none)."""
    ids: dict[str, str | None] = {}
    for name in ("scorecard", "bench", "profile-03", "run"):
        content = load(name, root)
        if content is not None:
            stamp = content if name == "run" else content.get("run")
            ids[f"results/{name}.json"] = (stamp or {}).get("run_id")
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        ids[f"notebooks/{path.name}"] = notebook_run_id(path)
    return ids


def notebook_run_id(path: Path) -> str | None:
    """The run id in a notebook's committed outputs (the banner its first code cell prints), or None."""
    for cell in json.loads(path.read_text())["cells"]:
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
            for line in text.splitlines():
                if line.startswith("run ") and ":" in line:
                    return line.split()[1].rstrip(":")
    return None


def noise(root: Path = ROOT) -> float:
    """The run's measured noise: the calibration's floor noise (0 without a record)."""
    run = load("run", root)
    return (run or {}).get("calibration", {}).get("floor", {}).get("noise") or 0.0


def main() -> int:
    """Command line: the disagreements and the run ids that differ; exit 1 when there are any."""
    problems = disagreements(documents(), noise())
    ids = run_ids()
    if len(set(ids.values())) > 1:
        problems.append("run ids differ: " + ", ".join(f"{doc} {rid}" for doc, rid in ids.items()))
    print("\n".join(problems) or f"one story: run {next(iter(ids.values()), None)}, {len(ids)} documents")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
