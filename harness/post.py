"""The post this tutorial grew from, beside the measurement: the ``<!-- figures:postN -->`` blocks.

Each stage README opens with one sentence of Dante Gates' post "A Beginner's Guide to Why You Should or
Shouldn't Be Using Kubernetes for Machine Learning" (2020, github.com/dantegates/why-kubernetes) and ends
with the scorecard's figures that test it: the stage beside the one below, every row that applies to
either. The quotes themselves are in the READMEs, and readme.render adds the run the figures come from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.paths import STAGES
from harness.results import brought_along_mib
from harness.results import stage_of


def _reach(stage: dict[str, Any]) -> str:
    return "yes" if stage["reach"]["reachable"] else f"no ({stage['reach']['why']})"


def _kill(key: str) -> Callable[[dict[str, Any]], str]:
    def cell(stage: dict[str, Any]) -> str:
        kill = stage.get(key)
        if kill is None:
            return "not measured"
        if not kill.get("applicable", True):
            return "n/a"
        watched = f"never back ({kill['observed_s']:.0f} s watched)"
        back = f"back after {kill['recovery_s']:.1f} s" if kill["recovered"] else watched
        return f"{kill['failed']} of {kill['requests']} failed; {back}"

    return cell


def _upgrade(stage: dict[str, Any]) -> str:
    up = stage["upgrade"]
    if not up.get("applicable", True):
        return "n/a"
    served = "" if up["serves_new_version"] else "; did NOT end up serving version 2"
    return f"{up['failed']} of {up['requests']} failed; {up['longest_stall_s']:.2f} s at most without an answer{served}"


def _cost(stage: dict[str, Any]) -> str:
    cost, memory, brings = stage["cost"], stage["memory"]["pss_mib"], brought_along_mib(stage)
    text = f"{cost['lines_added']} lines added, {cost['packages']} pinned packages; " + (
        f"{memory} MiB PSS" if memory is not None else "memory not measured from the host"
    )
    beside = [what for key, what in BESIDE.items() if key in cost]
    return text + (f", and {brings} MiB for {' and '.join(beside)} beside it" if brings else "")


#: what a layer brings beside the model's processes (harness.results.brought_along_mib), by its cost key
BESIDE = {"engine": "the Docker engine", "cluster": "the cluster", "sidecar_pss_mib": "the nginx sidecar"}


#: a row of the table: what it measures, and its cell for one stage's entry ("n/a" where it does not apply)
ROWS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("can `curl` get the golden predictions?", _reach),
    ("kill the server under load (SIGKILL)", _kill("crash")),
    ("kill one worker under load", _kill("crash_worker")),
    ("upgrade to version 2 under load", _upgrade),
    ("what the layer costs", _cost),
)


def markdown(number: int, results: dict[str, Any]) -> str:
    """The figures that test the post's statement atop stage ``number``'s README (the limit of the layer below,
    which this one lifts): this stage beside the previous one, every row that applies to either."""
    stages = [n for n in (number - 1, number) if n in STAGES]
    entries = [stage_of(results, n) for n in stages]
    header = [e["layer"] if e else f"{n:02d} (not measured)" for n, e in zip(stages, entries, strict=True)]
    lines = [
        "The post's words at the top of this page, against the scorecard"
        + (", this stage beside the one below:" if len(stages) > 1 else ":"),
        "",
        f"| | {' | '.join(header)} |",
        "|---" * (len(stages) + 1) + "|",
    ]
    for what, cell in ROWS:
        cells = [cell(e) if e else "not measured" for e in entries]
        if any(c not in ("n/a", "not measured") for c in cells):
            lines.append(f"| {what} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"
