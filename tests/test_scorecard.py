"""Smoke runs of `make scorecard` and `make tour` (benchmarks are not pass/fail; their smoke runs are)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import releases
from harness import scorecard as scorecard_module
from harness.layers import ROOT
from harness.layers import LayerError
from harness.load import wrk_available
from harness.plausible import implausible
from harness.plausible import impossible
from harness.scorecard import RESULTS
from harness.scorecard import summary_table

pytestmark = pytest.mark.slow


def scorecard(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.scorecard", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.skipif(not wrk_available(), reason="wrk is not installed (apt-get install wrk): no throughput figures")
def test_scorecard_smoke_run_writes_every_figure(tmp_path):
    out = tmp_path / "scorecard.json"
    result = scorecard(
        "--stages", "1,2,3", "--seconds", "1", "--rounds", "2", "--observe", "5", "--hold", "2", "--notice", "8",
        "--out", str(out),
    )  # fmt: skip
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
    # stage 03 upgrades the binary way, and measures its other way (HUP) beside it, in the same run
    upgrade, hup = gunicorn["upgrade"], gunicorn["upgrade_alternative"]
    assert upgrade["command"].endswith(f"kill -USR2 {upgrade['command'].split()[-1]}"), upgrade
    assert hup["command"].endswith(f"kill -HUP {hup['command'].split()[-1]}"), hup
    for up in (upgrade, hup, dev["upgrade"]):
        assert up["serves_new_version"] is True and up["ordinary_slowest_s"] > 0, up
    assert upgrade["failed"] == hup["failed"] == 0, (upgrade, hup)
    assert "upgrade_alternative" not in dev
    # time to notice, beside the failed requests: the dev server has nothing that notices; gunicorn's master
    # notices the crash loop's worker at once (its hung worker, at the default 30 s timeout, not within 8 s)
    assert script["notice"]["applicable"] is False
    assert dev["notice"]["hung"]["first_signal"] is None and dev["notice"]["crash_loop"]["first_signal"] is None
    assert gunicorn["notice"]["crash_loop"]["first_signal"]["source"].startswith("log"), gunicorn["notice"]
    assert all(n["requests"] > 0 for layer in (dev, gunicorn) for n in layer["notice"].values()), "under load"
    assert dev["window"]["health"] and gunicorn["window"]["metrics"], "each layer's window is recorded"
    # bad releases: stage 03 verifies first (model.py install, gunicorn --check-config) and serves on;
    # stage 02 stops first, so the same refusal is an outage, and a bad setting one it cannot refuse
    for kind in releases.KINDS:
        bad, down = gunicorn["bad_release"][kind], dev["bad_release"][kind]
        assert bad["refused"] and (bad["failed"], bad["wrong"]) == (0, 0), bad
        assert bad["rollback"].startswith("nothing to do") and bad["answers_again_s"] is not None, bad
        assert down["refused"] is (kind != "setting") and down["failed"] > 0 and down["wrong"] == 0, down
        assert down["longest_stall_s"] >= 5.0 and down["answers_again_s"] is not None, down
    assert "check-config" in gunicorn["bad_release"]["setting"]["refused_because"]
    assert "textbook setosa" in gunicorn["bad_release"]["wrong"]["refused_because"]
    assert script["bad_release"]["applicable"] is False
    (slow,) = dev["slow_clients"]  # the development server has no proxy variant
    assert set(slow["runs"]) == {"2", "50"} and slow["runs"]["50"]["during"]["requests"] > 0
    assert {t["connections"] for t in dev["throughput"]} == {1, 8}
    assert dev["cost"]["lines_added"] > 0 and dev["cost"]["packages"] > script["cost"]["packages"]
    assert "02 Flask dev server" in result.stdout, "the summary table is printed"
    assert impossible(results) == [], "one-second rounds on a busy machine may be noisy, never impossible"
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


def rate(path: str, connections: int, rps: float, spread: float = 0.02, **figures) -> dict:
    """A throughput entry as the scorecard writes it: the median round with its range."""
    low, high = rps * (1 - spread / 2), rps * (1 + spread / 2)
    entry = {
        "connections": connections,
        "path": path,
        "rps": rps,
        "rps_min": low,
        "rps_max": high,
        "rps_rounds": [low, rps, high],
        "rps_spread": spread,
        "latency_ms": {"p50": 8 / rps * 1000 * connections},
    }
    return {**entry, **figures}  # fmt: skip


def synthetic(*stages: dict) -> dict:
    """A results file with ``stages`` (each: stage, layer, path, throughput), plausible everywhere else."""
    return {"environment": {"cpus_usable": 2}, "stages": list(stages)}


def gunicorn_like(stage: int, layer: str, path: str, rps8: float, cpu8: float = 1.5, client8: float = 0.4) -> dict:
    return {"stage": stage, "layer": layer, "path": path, "throughput": [
        rate(path, 1, rps8 / 2, server_cpu_cores=0.5, client_cpu_cores=0.1, server_busy_processes=1),
        rate(path, 8, rps8, server_cpu_cores=cpu8, client_cpu_cores=client8, server_busy_processes=2),
    ]}  # fmt: skip


def test_a_plausible_synthetic_result_passes():
    card = synthetic(
        gunicorn_like(3, "03 gunicorn", "direct", 1900), gunicorn_like(4, "04 container", "published port", 1500)
    )
    assert implausible(card) == []


def test_a_server_below_saturation_while_latency_rises_is_flagged():
    # the committed run of 2026-11-30: two workers used 0.83 of 2 cores at 8 clients, p50 13 ms
    card = synthetic(gunicorn_like(3, "03 gunicorn", "direct", 549, cpu8=0.83, client8=0.1))
    (problem,) = implausible(card)
    assert "03 gunicorn (direct) at 8 clients" in problem and "not saturated" in problem, problem


def test_one_busy_process_is_saturated_at_one_core():
    # the development server is one process: one core is all it can use
    card = synthetic(gunicorn_like(2, "02 Flask dev server", "direct", 500, cpu8=0.95, client8=0.1))
    card["stages"][0]["throughput"][1]["server_busy_processes"] = 1
    assert implausible(card) == []


def test_the_same_gunicorn_faster_than_bare_on_the_same_route_is_flagged():
    bare = gunicorn_like(3, "03 gunicorn", "direct", 549)
    bare["throughput"].append(rate("nginx", 8, 700, server_cpu_cores=1.5, client_cpu_cores=0.3))
    cluster = gunicorn_like(5, "05 Kubernetes (local)", "nginx sidecar, NodePort Service", 1184)
    problems = implausible(synthetic(bare, cluster))
    assert any("05 Kubernetes (local)" in p and "cannot be faster" in p for p in problems), problems
    cluster["throughput"][1].update(rps=720, rps_min=690, rps_max=750)  # within bare's range on nginx: fine
    assert implausible(synthetic(bare, cluster)) == []


def test_a_rate_whose_rounds_spread_too_wide_is_flagged():
    card = synthetic(gunicorn_like(3, "03 gunicorn", "direct", 1900))
    card["stages"][0]["throughput"][1].update(rps_rounds=[1000, 1200, 1900, 2100, 2200], rps_iqr_spread=0.47)
    assert any("spread 47% (interquartile)" in p for p in implausible(card))


def test_bad_stage_list_is_a_one_line_error():
    result = scorecard("--stages", "1,x")
    assert result.returncode == 2 and "--stages takes numbers" in result.stderr and "Traceback" not in result.stderr


def test_a_layer_that_will_not_start_is_an_error_message_not_a_traceback(monkeypatch, capsys, tmp_path):
    def will_not_start(stage, *settings):
        raise LayerError(f"stage {stage}: http://127.0.0.1:1/v2/health/ready not ready within 60 s")

    monkeypatch.setattr(scorecard_module, "start_layers", will_not_start)
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
