"""The post this tutorial grew from, beside the measurement: the ``<!-- figures:postN -->`` blocks.

Each stage README opens with one sentence of Dante Gates' post "A Beginner's Guide to Why You Should or
Shouldn't Be Using Kubernetes for Machine Learning" (2020, github.com/dantegates/why-kubernetes) and ends
with the scorecard's figures that test it. CLAIMS says which figures test which stage's statement; the
quotes themselves are in the READMEs, and readme.render adds the run the figures come from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.results import brought_along_mib
from harness.results import stage_of


def _reach(stage: dict[str, Any]) -> str:
    return "yes" if stage["reach"]["reachable"] else f"no ({stage['reach']['why']})"


def _needs(stage: dict[str, Any]) -> str:
    cost = stage["cost"]
    return (f"the source ({cost['lines_added']} lines), Python and {cost['packages']} pinned packages "
            f"({cost['installed_mib']} MiB installed)")  # fmt: skip


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
    text = f"{cost['lines_added']} lines added; " + (
        f"{memory} MiB PSS" if memory is not None else "memory not measured from the host"
    )
    beside = [what for key, what in BESIDE.items() if key in cost]
    return text + (f", and {brings} MiB for {' and '.join(beside)} beside it" if brings else "")


#: what a layer brings beside the model's processes (harness.results.brought_along_mib), by its cost key
BESIDE = {"engine": "the Docker engine", "cluster": "the cluster", "sidecar_pss_mib": "the nginx sidecar"}


#: a row of the table: what it measures, and its cell for one stage's entry
ROWS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "reach": ("can `curl` get the golden predictions?", _reach),
    "needs": ("what a caller must have", _needs),
    "crash": ("kill the server under load (SIGKILL)", _kill("crash")),
    "crash_worker": ("kill one worker under load", _kill("crash_worker")),
    "upgrade": ("upgrade to version 2 under load", _upgrade),
    "cost": ("what the layer costs", _cost),
}

#: stage -> (the post's statement in a few words, unquoted: the README quotes it; the stages set side by
#: side, the previous one where it shows what changed; the rows that test the statement)
CLAIMS: dict[int, tuple[str, tuple[int, ...], tuple[str, ...]]] = {
    1: ("at the story's start, a user needs the source, Python and the dependencies", (1,), ("reach", "needs")),
    2: ("with a development server, what goes down stays down and an upgrade stops it", (2,), ("crash", "upgrade")),
    3: ("the development server's two limits; beside them, what gunicorn changes", (2, 3),
        ("crash", "crash_worker", "upgrade")),
    4: ("containers package, but do not deploy", (3, 4), ("upgrade", "crash")),
    5: ("zero downtime deployments and health monitoring, at a price (scaling: "
        "[More pods, more capacity?](#more-pods-more-capacity) above)", (4, 5), ("upgrade", "crash", "cost")),
}  # fmt: skip


def markdown(number: int, results: dict[str, Any]) -> str:
    """Stage ``number``'s statement from the post against the figures that test it, as a Markdown table."""
    claim, stages, rows = CLAIMS[number]
    entries = [stage_of(results, n) for n in stages]
    header = [e["layer"] if e else f"{n:02d} (not measured)" for n, e in zip(stages, entries, strict=True)]
    lines = [f"The post: {claim}. The scorecard:", "", f"| | {' | '.join(header)} |", "|---" * (len(stages) + 1) + "|"]
    for key in rows:
        what, cell = ROWS[key]
        lines.append(f"| {what} | {' | '.join(cell(e) if e else 'not measured' for e in entries)} |")
    return "\n".join(lines) + "\n"
