"""The benchmark against the peers (bench/), as a smoke run: it runs, and every server answers.

`make bench` is a measurement, never a pass/fail timing test: this only checks
that a one-second-per-load run produces plausible, non-empty figures for each
server (requests served, no errors, latencies that are numbers), so the
benchmark keeps working as the stages change. It uses the bench's own venv
(.venv-bench, created by `make bench-venv` on first use).
"""

from __future__ import annotations

import json
import random
import re
import subprocess

import pytest

from harness.layers import ROOT
from harness.layers import model_module
from harness.load import wrk_available

BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
SERVERS = (
    "02 Flask dev server",
    "03 gunicorn",
    "FastAPI + uvicorn",
    "MLServer",
    "ceiling: gunicorn + bare WSGI",
    "ceiling: gunicorn + Flask echo",
)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    if not wrk_available():
        pytest.skip("wrk is not installed (apt-get install wrk)")
    made = subprocess.run(["make", "-s", "bench-venv"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, f"make bench-venv failed:\n{made.stdout[-2000:]}{made.stderr[-2000:]}"
    out = tmp_path_factory.mktemp("bench") / "bench-smoke.json"
    run = subprocess.run(
        [str(BENCH_PYTHON), "-m", "bench.run", "--smoke", "--port", "8150", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, f"bench smoke run failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return json.loads(out.read_text())


@pytest.mark.slow
def test_smoke_run_records_the_machine_and_the_floor(smoke):
    env = smoke["environment"]
    assert env["cores"] >= 1 and env["cpu_model"] and len(env["load_average_at_start"]) == 3
    assert env["versions"]["bench: mlserver"] and env["versions"]["stages: gunicorn"]
    floor = smoke["in_process_floor"]
    assert floor["single_calls_per_s"] > 0 and floor["batch_rows_per_s"] > 0, floor


@pytest.mark.slow
@pytest.mark.parametrize("server", SERVERS)
def test_smoke_run_has_plausible_figures_for_each_server(smoke, server):
    loads = smoke["servers"][server]["loads"]
    assert loads, f"{server}: no loads measured"
    for name, load in loads.items():
        msg = f"{server} {name}: {load}"
        assert load["requests"] > 0 and load["rps"] > 0, msg
        assert load["error_count"] == 0, msg
        assert 0 < load["latency_ms"]["p50"] <= load["latency_ms"]["p99"], msg
        assert load["wrk_cpu_cores"] >= 0, msg


@pytest.mark.slow
def test_smoke_run_says_why_stage_04_is_missing(smoke):
    assert smoke["servers"]["04 container"] == {"skipped": "smoke run"}


def test_bulk_validation_accepts_and_refuses_exactly_what_row_by_row_does():
    """model.validate_rows' bulk path (_plain_rows) must never change an answer or an error."""
    iris = model_module()
    odd = [0, -0.0, 1000, 1000.0001, -1, True, None, "1", float("nan"), float("inf"), 2**80, 2**1100, [], {}]
    rng = random.Random(13)
    checked = 0
    for _ in range(3000):
        rows = []
        for _ in range(rng.randint(1, 3)):
            row = {f: rng.choice(odd) if rng.random() < 0.2 else round(rng.uniform(0, 10), 2) for f in iris.FEATURES}
            if rng.random() < 0.05:
                row.pop(iris.FEATURES[0])
            if rng.random() < 0.05:
                row["extra"] = 1
            rows.append(row if rng.random() > 0.03 else rng.choice([1, "x", None, []]))
        bulk = iris._plain_rows(rows)
        try:
            # A list subclass skips the bulk path (it takes plain lists only): the row-by-row checks alone.
            slow = iris.validate_rows(RowByRow(rows))
        except iris.InputError as exc:
            assert bulk is None, f"bulk path accepted rows that validate_rows refuses ({exc}): {rows}"
            with pytest.raises(iris.InputError, match=re.escape(str(exc))):
                iris.validate_rows(rows)
            continue
        if bulk is not None:
            assert bulk.tolist() == slow.tolist() and bulk.dtype == slow.dtype, rows
            checked += 1
    assert checked > 100, "too few valid inputs to compare"


class RowByRow(list):
    """A list that model._plain_rows does not take (it wants exactly list)."""
