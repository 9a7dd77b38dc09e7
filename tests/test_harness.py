"""The harness must report failure when there is failure (it would be worthless otherwise)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness import scenarios
from harness.core import ROOT
from harness.layers import DevServer
from harness.layers import Layer
from harness.layers import free_port
from harness.load import EXAMPLE_LABEL
from harness.load import EXAMPLE_ROW
from harness.load import LoadReport
from harness.load import LoadRun
from harness.load import Outcome
from harness.load import run_wrk
from harness.load import wrk_available


def test_load_against_a_dead_port_reports_failures_not_zero():
    # max_seconds leaves a stalled machine time to send 20; the run ends as soon as it has.
    with LoadRun(f"http://127.0.0.1:{free_port()}", clients=2, max_seconds=10, max_requests=100) as run:
        run.warm_up(requests=20, timeout=10)  # failures count as outcomes: the load flows
    summary = run.report.summary()
    assert summary["requests"] >= 20 and summary["failed"] == summary["requests"] and summary["ok"] == 0, summary
    assert summary["longest_stall_s"] == summary["duration_s"], "never answered: the whole run without an answer"


def test_load_run_is_bounded_in_count():
    with LoadRun(f"http://127.0.0.1:{free_port()}", clients=2, max_seconds=30, max_requests=10) as run:
        reached = run.wait_for(lambda r: r.total >= 10, timeout=10)
        time.sleep(0.3)
    assert reached, f"only {run.report.total} requests were sent"
    assert run.report.total <= 10 + 2, run.report.total  # each client may finish the request it started


@pytest.mark.skipif(not wrk_available(), reason="wrk is not installed (apt-get install wrk)")
def test_wrk_against_a_dead_port_reports_errors():
    result = run_wrk(f"http://127.0.0.1:{free_port()}", connections=2, seconds=1)
    assert result["rps"] == 0 and sum(result["errors"].values()) > 0, result
    assert "connect" in result["failure"], result


class NeverRecovers(Layer):
    """A fake layer whose crash is permanent: the harness must say 'never'."""

    stage, name = 0, "fake"

    def start(self, timeout: float = 60.0) -> float:
        return 0.0

    def stop(self, timeout: float = 30.0) -> None:
        pass

    def crash(self, target: str = "server", sig: int = signal.SIGKILL) -> str:
        return "nothing"

    def recovered(self) -> bool:
        return False


def test_a_layer_that_never_recovers_reports_never():
    result = scenarios.crash(NeverRecovers(model_path="unused"), clients=1, observe=1.0, warmup=0.1, timeline=0.1)
    assert result["recovered"] is False and result["recovery_s"] is None, result
    assert result["failed"] == result["requests"] > 0
    timeline = result["timeline"]  # what the notebooks plot: every request in exactly one bucket
    assert sum(timeline["failed"]) == result["failed"] and sum(timeline["ok"]) == 0, timeline
    assert 0 < result["event_s"] < result["duration_s"], result
    # watched for the whole window, recovered or not: every layer's figures cover the same time
    assert result["duration_s"] >= result["event_s"] + result["observed_s"], result
    assert result["longest_stall_s"] >= result["observed_s"], result


@pytest.mark.parametrize("stage", [3, 4, 5])
def test_the_scorecard_counts_the_code_make_diff_shows(stage):
    out = subprocess.run(["make", "-s", "diff", f"A={stage - 1}", f"B={stage}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60).stdout  # fmt: skip
    shown = {line.split()[-1].split("/", 1)[1] for line in out.splitlines() if line.startswith("diff ")}
    cost = scenarios.stage_diff(stage)
    assert set(cost["per_file"]) == shown and "README.md" not in shown, (sorted(cost["per_file"]), sorted(shown))
    shown_added = sum(1 for line in out.splitlines() if line.startswith("+") and not line.startswith("+++ "))
    assert cost["lines_added"] == shown_added


@pytest.mark.slow
def test_an_upgrade_that_never_lands_reports_it(model_v1, fresh_model, model_v2):
    """A layer whose upgrade does nothing must not be reported as serving version 2."""

    class NoOpUpgrade(DevServer):
        def upgrade(self, new_model):
            pass

    with NoOpUpgrade(fresh_model) as layer:
        result = scenarios.upgrade(layer, model_v2, clients=1, settle=1.0, ordinary=0.2)
    assert result["serves_new_version"] is False and result["failed"] == 0, result


def test_longest_stall_sees_a_gap_without_failures():
    """No request failed, yet nothing answered for 1.5 s: the stall shows it, failures cannot."""
    report = LoadReport(started=0.0, ended=4.0)
    report.outcomes = [Outcome(s, e, True, "200") for s, e in ((0.0, 0.1), (0.1, 0.5), (0.5, 2.0), (2.0, 2.1))]
    assert report.failed == 0
    assert report.longest_stall() == pytest.approx(1.9)  # from the last answer (2.1 s) to the end (4.0 s)
    assert report.slowest() == pytest.approx(1.5)
    summary = report.summary()
    assert summary["longest_stall_s"] == 1.9 and summary["slowest_s"] == 1.5


def test_wrong_answers_are_counted_and_timed(golden):
    """Answers that name another species than the example's own are wrong, however fast they came."""
    assert (golden["inputs"][0], golden["expected"][0]["label"]) == (EXAMPLE_ROW, EXAMPLE_LABEL)
    report = LoadReport(started=0.0, ended=3.0)
    report.outcomes = [
        Outcome(0.0, 0.1, True, "200", "1", EXAMPLE_LABEL),
        Outcome(0.1, 0.5, True, "200", "3", "versicolor"),
        Outcome(0.5, 2.0, True, "200", "3", "versicolor"),
        Outcome(2.0, 2.1, False, "503"),
    ]
    summary = report.summary()
    assert (summary["wrong"], summary["wrong_for_s"], summary["failed"]) == (2, 1.5, 1), summary


def harness_imports() -> dict[str, set[str]]:
    """Each harness module -> the harness modules it imports (anywhere in the file)."""
    import ast

    graph = {}
    for path in (ROOT / "harness").glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
                found.add(node.module.removeprefix("harness").lstrip(".") or next(a.name for a in node.names))
            elif isinstance(node, ast.Import):
                found |= {a.name.removeprefix("harness.") for a in node.names if a.name.startswith("harness.")}
        graph[path.stem] = found - {path.stem}
    return graph


def test_the_harness_has_no_import_cycle():
    graph = harness_imports()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
    assert len(graph) > 5, graph  # the walk saw the harness


def test_nothing_edits_sys_path():
    """The harness is an installed package (make setup); stage code reaches tests through pytest's pythonpath."""
    tracked = subprocess.run(["git", "ls-files", "*.py", "*.ipynb"], cwd=ROOT, capture_output=True, text=True).stdout
    files = [ROOT / name for name in tracked.split()] or [p for p in ROOT.rglob("*.py") if ".venv" not in str(p)]
    offenders = [str(p.relative_to(ROOT)) for p in files if "sys.path.insert" in p.read_text(errors="replace")]
    assert offenders == [str(Path(__file__).relative_to(ROOT))], offenders  # this test names it, nothing else
