"""What the comparison set out to show, as data, and the verdict on each from one run's figures.

A goal compares one quantity of ours with the same quantity of another server
(or of the in-process floor) times a target. Its verdict is computed from the
rounds' ranges (harness.spread): held or missed only when the range of ours
and the range of the target do not overlap, otherwise no measurable difference.
The why of each verdict is prose in bench/README.md, with its figures rendered
from the results (bench.readme).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.servers import UNOBSERVED
from bench.servers import WORKERS
from harness.spread import SAME
from harness.spread import differs

OURS, FASTAPI, MLSERVER = "03 gunicorn", "FastAPI + uvicorn", "MLServer"
#: the in-process floor's 1,000-row rate on one core times the workers a server has
FLOOR_BATCH = ("in-process floor", "batch")
VERDICTS = ("held", "missed", SAME, "not measured")


@dataclass(frozen=True)
class Goal:
    """Ours against theirs: ``ours`` (server, load) ``comparison`` ``target`` times ``theirs`` (server, load),
    both in ``quantity``."""

    name: str
    ours: tuple[str, str]
    theirs: tuple[str, str]
    target: float
    comparison: str = ">="  # ">=": ours should reach the target; "<=": ours should stay below it
    quantity: str = "rows/s"


GOALS = (
    Goal("single rows @8: stage 03 against FastAPI", (OURS, "predict_1@8"), (FASTAPI, "predict_1@8"), 1.0),
    Goal("single rows @1: stage 03 against FastAPI", (OURS, "predict_1@1"), (FASTAPI, "predict_1@1"), 1.0),
    Goal("V2 single row @1: stage 03 against MLServer", (OURS, "v2_1@1"), (MLSERVER, "v2_1@1"), 1.0),
    Goal("V2 single row @8: stage 03 against MLServer", (OURS, "v2_1@8"), (MLSERVER, "v2_1@8"), 1.0),
    Goal("V2 batch: stage 03 against MLServer", (OURS, "v2_1000@8"), (MLSERVER, "v2_1000@8"), 1.0),
    Goal("batch: stage 03 against FastAPI", (OURS, "predict_1000@8"), (FASTAPI, "predict_1000@8"), 2.0),
    Goal("batch: stage 03 against the in-process floor x workers", (OURS, "predict_1000@8"), FLOOR_BATCH, 0.75),
    # what the operator's view costs (issue 27): within 5% of the same stage without it, or say so
    Goal(
        "single rows @8: stage 03 against itself without logs and metrics",
        (OURS, "predict_1@8"),
        (UNOBSERVED, "predict_1@8"),
        0.95,
    ),
    Goal(
        "single rows @1: stage 03 against itself without logs and metrics",
        (OURS, "predict_1@1"),
        (UNOBSERVED, "predict_1@1"),
        0.95,
    ),
)


def rows_rate(results: dict[str, Any], side: tuple[str, str], scale: float = 1.0) -> dict[str, float] | None:
    """Rows/s of one (server, load) with its range over the rounds, ``scale`` times, as harness.spread
    compares them; None when it was not measured."""
    if side == FLOOR_BATCH:
        f, key = results["in_process_floor"], "batch_rows_per_s"
        values = (f[key], f.get(f"{key}_min", f[key]), f.get(f"{key}_max", f[key]))
        scale *= WORKERS
    else:
        server, load = side
        entry = results["servers"].get(server, {}).get("loads", {}).get(load)
        if not entry or not entry.get("rps"):
            return None
        values = tuple(entry.get(k, entry["rps"]) * entry["rows_per_request"] for k in ("rps", "rps_min", "rps_max"))
    rps, low, high = (v * scale for v in values)
    return {"rps": rps, "rps_min": low, "rps_max": high}


def verdict(ours: dict[str, float] | None, wanted: dict[str, float] | None, comparison: str = ">=") -> str:
    """held, missed, no measurable difference (the ranges of ours and of the target overlap), or not measured."""
    if not ours or not wanted:
        return "not measured"
    if not differs(ours, wanted):
        return SAME
    above = ours["rps"] > wanted["rps"]
    return "held" if above == (comparison == ">=") else "missed"


def evaluate(goal: Goal, results: dict[str, Any]) -> dict[str, Any]:
    """One goal against one run: the ratio of the medians, the verdict, and by how much it was missed."""
    ours, theirs = rows_rate(results, goal.ours), rows_rate(results, goal.theirs)
    found = verdict(ours, rows_rate(results, goal.theirs, goal.target), goal.comparison)
    ratio = round(ours["rps"] / theirs["rps"], 2) if ours and theirs else None
    return {
        "ours": ours,
        "theirs": theirs,
        "ratio": ratio,
        "target": goal.target,
        "comparison": goal.comparison,
        "quantity": goal.quantity,
        "verdict": found,
        "held": found in ("held", SAME),
        "missed_by": round(abs(1 - ratio / goal.target), 3) if found == "missed" else None,
    }


def own_route(loads: dict[str, Any]) -> str:
    """The route a server was measured on first: /predict where it has it, else V2."""
    return "predict" if any(name.startswith("predict_") for name in loads) else "v2"


def table(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The headline figures of each measured server, on its own route and on V2."""
    found = {}
    for name, entry in results["servers"].items():
        if "loads" not in entry:
            continue
        loads, kind = entry["loads"], own_route(entry["loads"])

        def fig(load: str, key: str = "rps", loads: dict = loads) -> float | None:
            return loads.get(load, {}).get(key)

        found[name] = {
            "single_rps@1": fig(f"{kind}_1@1"),
            "single_rps@8": fig(f"{kind}_1@8"),
            "single_rps@8_range": [fig(f"{kind}_1@8", "rps_min"), fig(f"{kind}_1@8", "rps_max")],
            "v2_single_rps@8": fig("v2_1@8"),
            "batch_rows_per_s@8": fig(f"{kind}_1000@8", "rows_per_s"),
            "v2_batch_rows_per_s@8": fig("v2_1000@8", "rows_per_s"),
        }
    return found


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """The headline table and every goal's verdict."""
    return {"table": table(results), "goals": {goal.name: evaluate(goal, results) for goal in GOALS}}
