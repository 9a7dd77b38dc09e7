"""Smoke runs of `make scorecard` and `make tour` (benchmarks are not pass/fail; their smoke runs are)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import scorecard as scorecard_module
from harness.layers import ROOT
from harness.layers import LayerError
from harness.load import wrk_available
from harness.scorecard import RESULTS
from harness.scorecard import implausible
from harness.scorecard import summary_table

pytestmark = pytest.mark.slow


def scorecard(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.scorecard", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.skipif(not wrk_available(), reason="wrk is not installed (apt-get install wrk): no throughput figures")
def test_scorecard_smoke_run_writes_every_figure(tmp_path):
    out = tmp_path / "scorecard.json"
    result = scorecard("--stages", "1,2,3", "--seconds", "1", "--observe", "5", "--hold", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[02 Flask dev server] crash under load" in result.stderr, "progress is visible"
    results = json.loads(out.read_text())
    assert results["environment"]["cpus_usable"] >= 1 and results["environment"]["packages"]["scikit-learn"]
    script, dev, gunicorn = results["stages"]
    assert script["reach"]["reachable"] is False and dev["reach"]["reachable"] is True
    assert script["self_contained"]["self_contained"] is False and "needs Python" in script["self_contained"]["why"]
    # the same event at every layer: SIGKILL of the serving process, watched for the same window
    for layer in (dev, gunicorn):
        crash = layer["crash"]
        assert (crash["target"], crash["observed_s"]) == ("server", 5.0), crash
        assert crash["recovered"] is False and crash["failed"] > 0 and crash["longest_stall_s"] >= 5.0, crash
        assert crash["command"].startswith("kill -9 "), crash
    assert dev["crash_worker"]["applicable"] is False
    # a worker's replacement is timed in test_wsgi.py; here: the others served, at most the victim's request failed
    worker = gunicorn["crash_worker"]
    assert worker["target"] == "worker" and worker["failed"] <= 1 < worker["ok"], worker
    assert gunicorn["upgrade"]["command"].endswith(f"kill -HUP {gunicorn['upgrade']['command'].split()[-1]}")
    assert dev["upgrade"]["serves_new_version"] is True
    (slow,) = dev["slow_clients"]  # the development server has no proxy variant
    assert set(slow["runs"]) == {"2", "50"} and slow["runs"]["50"]["during"]["requests"] > 0
    assert {t["connections"] for t in dev["throughput"]} == {1, 8}
    assert dev["cost"]["lines_added"] > 0 and dev["cost"]["packages"] > script["cost"]["packages"]
    assert "02 Flask dev server" in result.stdout, "the summary table is printed"
    assert implausible(results) == []
    assert RESULTS.read_text() != out.read_text(), "a run with --out leaves the committed results alone"


def test_the_committed_figures_are_plausible():
    assert implausible(json.loads(RESULTS.read_text())) == []


def test_implausible_figures_are_caught():
    results = json.loads(RESULTS.read_text())
    stage = results["stages"][-1]
    stage["throughput"][-1]["server_cpu_cores"] = -1.28
    stage["crash"].update(requests=10, ok=3, failed=2)
    problems = implausible(results)
    assert any("-1.28 is negative" in p for p in problems) and any("!= ok 3 + failed 2" in p for p in problems)


def test_bad_stage_list_is_a_one_line_error():
    result = scorecard("--stages", "1,x")
    assert result.returncode == 2 and "--stages takes numbers" in result.stderr and "Traceback" not in result.stderr


def test_a_layer_that_will_not_start_is_an_error_message_not_a_traceback(monkeypatch, capsys, tmp_path):
    def will_not_start(stage, *settings):
        raise LayerError(f"stage {stage}: http://127.0.0.1:1/v2/health/ready not ready within 60 s")

    monkeypatch.setattr(scorecard_module, "measure_stage", will_not_start)
    code = scorecard_module.main(["--stages", "1", "--out", str(tmp_path / "scorecard.json")])
    err = capsys.readouterr().err
    assert code == 1 and "error: stage 1: " in err and "Traceback" not in err, err


def test_tour_sends_the_same_flower_to_every_available_layer():
    result = scorecard("--tour")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("01 script", "02 Flask dev server", "03 gunicorn"):
        line = next(x for x in result.stdout.splitlines() if name in x)
        assert "-> setosa" in line, line
    assert summary_table(json.loads(RESULTS.read_text())) in result.stdout
