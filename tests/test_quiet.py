"""A busy machine cannot publish a figure: measured (harness.quiet), refused in one line, or marked contended."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from harness import publish
from harness import quiet
from harness import readme
from harness.layers import ROOT
from harness.scorecard import RESULTS

QUIET = {"cores": 2, "load_average": [0.1, 0.2, 0.3], "load_per_core": 0.05, "busy_share": 0.03, "steal_share": 0.0,
         "floor": {"calls_per_s": [2900, 2950, 3000], "median": 2950, "min": 2900, "max": 3000, "spread": 0.034,
                   "noise": 0.034},
         "floor_noise": 0.034}  # fmt: skip
BUSY = {**QUIET, "busy_share": 0.55, "load_per_core": 1.1}


def test_cpu_shares_count_other_work_and_steal():
    #        user nice system idle iowait irq softirq steal
    before = [100, 0, 50, 1000, 10, 0, 0, 0]
    after = [200, 0, 100, 1100, 20, 0, 0, 30]  # 150 busy, 110 idle, 30 steal of 290
    assert quiet.cpu_shares(before, after) == {"busy_share": round(180 / 290, 3), "steal_share": round(30 / 290, 3)}


def test_a_quiet_reading_passes_and_a_busy_one_is_refused_in_one_line():
    assert quiet.check(calibration=QUIET)["contended"] is False
    with pytest.raises(quiet.Busy) as refused:
        quiet.check(calibration=BUSY)
    message = str(refused.value)
    assert "\n" not in message and "busy share 0.55 (needs <= 0.25)" in message and "FORCE=1" in message, message


def test_force_runs_anyway_and_marks_the_figures_contended():
    calibration = quiet.check(force=True, calibration=BUSY)
    assert calibration["contended"] is True and quiet.warning(calibration).startswith("WARNING")
    assert quiet.warning(quiet.check(calibration=QUIET)) == ""


def test_a_bad_force_setting_is_one_line(monkeypatch):
    monkeypatch.setenv("FORCE", "yes")
    with pytest.raises(quiet.Busy, match="FORCE must be 0 or 1, got 'yes'"):
        quiet.forced()


def test_a_contended_run_renders_with_a_visible_warning_wherever_it_is_shown():
    results = {"environment": {"cpus_usable": 2, "cpu_model": "test CPU", "measured_at": "2026-12-06T00:00:00Z"},
               "rounds": 3, "stages": [], "not_measured": {}}  # fmt: skip
    run = {"run_id": "test-run", "contended": True, "calibration": quiet.check(force=True, calibration=BUSY)}
    results["run"] = publish.stamp(run)
    assert readme.summary_table(results).count("WARNING: measured on a busy machine") == 1
    assert publish.banner(run).startswith("WARNING: measured on a busy machine")
    results["run"] = publish.stamp({**run, "contended": False, "calibration": quiet.check(calibration=QUIET)})
    assert "WARNING" not in readme.summary_table(results) and "run test-run" in readme.summary_table(results)


@pytest.mark.slow
def test_calibration_reads_the_machine_and_the_floor_noise():
    calibration = quiet.calibrate(sample_s=0.5)
    assert calibration["cores"] >= 1 and 0 <= calibration["busy_share"] <= 1
    floor = calibration["floor"]
    assert len(floor["calls_per_s"]) == quiet.FLOOR_ROUNDS and floor["min"] <= floor["median"] <= floor["max"]


@pytest.mark.slow
def test_publishing_on_a_machine_kept_busy_by_a_cpu_burner_is_refused_in_one_line():
    """`make scorecard` (its command) refuses before measuring anything, and leaves the results alone."""
    committed = RESULTS.read_text()
    env = {k: v for k, v in os.environ.items() if k not in (publish.RUN_ENV, "FORCE")}
    burners = [
        subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 60\nwhile time.time() < end: pass"])
        for _ in range(os.cpu_count() or 1)  # every core busy: whatever else runs, the reading is unmistakable
    ]
    try:
        time.sleep(1)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "harness.scorecard"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        took = time.monotonic() - started
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("refused: the machine is busy (busy share") and "Traceback" not in result.stderr
    assert RESULTS.read_text() == committed, "a refused run leaves the committed results as they were"
    assert took < 60, f"the refusal came after {took:.0f} s: it must come before any measurement"
