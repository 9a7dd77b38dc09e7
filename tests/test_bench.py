"""The benchmark against the peers (bench/): its smoke run, its goals' verdicts and the figures of its README.

`make bench` is a measurement, never a pass/fail timing test: the smoke run only
checks that a one-second-per-load run measures every server on every load it
should, with figures that can only be produced by a server that answered. The
peers run from their own venv (.venv-bench, created by `make bench-venv` on first use).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from bench import readme
from bench.goals import FASTAPI
from bench.goals import FLOOR_BATCH
from bench.goals import GOALS
from bench.goals import OURS
from bench.goals import VERDICTS
from bench.goals import Goal
from bench.goals import evaluate
from bench.servers import WORKERS
from harness.layers import ROOT
from harness.load import wrk_available
from harness.spread import SAME

SINGLE_AND_BATCH = {"predict_1@1", "predict_1@8", "predict_1000@8"}
#: every server the smoke run measures, with the loads it gets (stage 04 needs Docker: the full run only)
LOADS = {
    "02 Flask dev server": SINGLE_AND_BATCH,
    "03 gunicorn": SINGLE_AND_BATCH,
    "03 gunicorn, no logs or metrics": SINGLE_AND_BATCH,
    "FastAPI + uvicorn": SINGLE_AND_BATCH,
    "MLServer": {"v2_1@1", "v2_1@8", "v2_1000@8"},
    "ceiling: gunicorn + bare WSGI": {"predict_1@1", "predict_1@8"},
    "ceiling: gunicorn + Flask echo": {"predict_1@1", "predict_1@8"},
}
#: a string that is a path on some machine: absolute, two levels or more, no spaces
LOCAL_PATH = re.compile(r"/[^/\s]+(?:/[^/\s]+)+/?")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    if not wrk_available():
        pytest.skip("wrk is not installed (apt-get install wrk)")
    made = subprocess.run(["make", "-s", "bench-venv"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, f"make bench-venv failed:\n{made.stdout[-2000:]}{made.stderr[-2000:]}"
    out = tmp_path_factory.mktemp("bench") / "bench-smoke.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, f"bench smoke run failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return json.loads(out.read_text())


@pytest.mark.slow
def test_smoke_run_measures_every_server_on_every_load(smoke):
    measured = {name: set(entry["loads"]) for name, entry in smoke["servers"].items() if "loads" in entry}
    assert measured == LOADS
    assert smoke["servers"]["04 container"]["skipped"], "a server left out must say why"
    named = {side[0] for goal in GOALS for side in (goal.ours, goal.theirs) if side != FLOOR_BATCH}
    assert named <= smoke["servers"].keys(), "every goal names a server the benchmark runs"


@pytest.mark.slow
@pytest.mark.parametrize("server", LOADS)
def test_smoke_run_has_figures_only_an_answering_server_gives(smoke, server):
    entry = smoke["servers"][server]
    for name, load in entry["loads"].items():
        msg = f"{server} {name}: {load}"
        assert load["requests"] > 0 and load["rps"] > 0 and load["error_count"] == 0, msg
        assert 0 < load["latency_ms"]["p50"] <= load["latency_ms"]["p99"], msg
        assert load["server_cpu_us_per_request"] > 0 and load["client_cpu_us_per_request"] > 0, msg
    if "predict_1000@8" in entry["loads"] or "v2_1000@8" in entry["loads"]:  # a server with a model
        sizes = entry["answer_bytes"]
        assert all(sizes[f"{kind}_1000"] > sizes[f"{kind}_1"] > 0 for kind in ("predict", "v2") if f"{kind}_1" in sizes)


@pytest.mark.slow
def test_smoke_run_records_the_machine_the_floor_and_no_local_path(smoke):
    env = smoke["environment"]
    assert env["cpus_usable"] >= 1 and env["packages"]["gunicorn"] and env["peer_packages"]["mlserver"], env
    floor = smoke["in_process_floor"]
    assert floor["single_calls_per_s"] > 0 and floor["batch_rows_per_s"] > 0, floor
    assert not local_paths(smoke)


def test_the_published_results_record_no_local_path():
    assert not local_paths(json.loads(readme.RESULTS.read_text()))


def local_paths(value) -> list[str]:
    """Every string in ``value`` (a JSON document) that is a file-system path."""
    if isinstance(value, dict):
        return [p for item in value.values() for p in local_paths(item)]
    if isinstance(value, list):
        return [p for item in value for p in local_paths(item)]
    return [value] if isinstance(value, str) and LOCAL_PATH.fullmatch(value) else []


def results_with(ours: tuple[float, float, float], theirs: tuple[float, float, float] | None) -> dict:
    """Bench results with stage 03 and FastAPI on single rows at 8 connections: (median, min, max) req/s."""

    def entry(rps: float, low: float, high: float, rows: int = 1) -> dict:
        return {"rps": rps, "rps_min": low, "rps_max": high, "rows_per_request": rows}

    servers = {OURS: {"loads": {"predict_1@8": entry(*ours), "predict_1000@8": entry(*ours, rows=1000)}}}
    if theirs:
        servers[FASTAPI] = {"loads": {"predict_1@8": entry(*theirs)}}
    floor = {"batch_rows_per_s": 5_000, "batch_rows_per_s_min": 4_500, "batch_rows_per_s_max": 5_500}
    return {"servers": servers, "in_process_floor": floor}


SINGLE = (OURS, "predict_1@8"), (FASTAPI, "predict_1@8")


@pytest.mark.parametrize(
    "ours, theirs, target, comparison, verdict, missed_by",
    [
        ((100, 95, 105), (50, 48, 52), 1.0, ">=", "held", None),
        ((100, 95, 105), (50, 48, 52), 2.5, ">=", "missed", 0.2),  # the target's range: 120 to 130
        ((100, 90, 110), (100, 95, 105), 1.0, ">=", SAME, None),
        ((100, 95, 105), (50, 48, 52), 1.0, "<=", "missed", 1.0),
        ((100, 95, 105), None, 1.0, ">=", "not measured", None),
    ],
)
def test_a_goal_is_decided_by_the_ranges_of_ours_and_of_the_target(ours, theirs, target, comparison, verdict,
                                                                    missed_by):  # fmt: skip
    found = evaluate(Goal("g", *SINGLE, target, comparison), results_with(ours, theirs))
    assert found["verdict"] == verdict and found["missed_by"] == missed_by, found
    assert found["held"] == (verdict in ("held", SAME))
    assert found["ratio"] == (round(ours[0] / theirs[0], 2) if theirs else None)


def test_the_floor_goal_counts_rows_and_the_workers():
    """Ours: 150 batches/s of 1,000 rows; the floor: 5,000 rows/s on one core times the workers."""
    found = evaluate(Goal("g", (OURS, "predict_1000@8"), FLOOR_BATCH, 1.0), results_with((150, 140, 160), None))
    assert found["ours"]["rps"] == 150_000 and found["theirs"]["rps"] == 5_000 * WORKERS, found
    assert found["theirs"]["rps_max"] == 5_500 * WORKERS and found["verdict"] == "held", found


def test_every_goal_has_a_verdict_on_the_published_results():
    results = json.loads(readme.RESULTS.read_text())
    assert all(evaluate(goal, results)["verdict"] in VERDICTS for goal in GOALS)


def test_the_figures_in_the_bench_readme_are_the_published_ones():
    pages = "".join(page.read_text() for page in readme.PAGES)
    assert all(f"<!-- figures:{name} -->" in pages for name in readme.BLOCKS), "a block is on no page"
    results = json.loads(readme.RESULTS.read_text())
    for page in readme.PAGES:
        text = page.read_text()
        assert text == readme.rendered(text, results), f"{page.name}: run `python -m bench.readme`"
