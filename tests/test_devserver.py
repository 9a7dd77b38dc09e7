"""Stage 02 for real: the Flask development server in a subprocess on a free loopback port.

The last two tests pass by asserting what this layer does NOT solve, with the
measured figures in their messages.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import requests

from harness import scenarios
from harness.core import wait_ready
from harness.golden import load_golden
from harness.layers import BIN
from harness.layers import ROOT
from harness.layers import DevServer
from harness.layers import free_port
from tests.test_wsgi import BAD_SETTINGS

pytestmark = pytest.mark.slow
SCHEMATHESIS_CONFIG = "tests/schemathesis.toml"


def golden_rows():
    return load_golden()["inputs"]


@pytest.fixture(scope="module")
def server(model_v1):
    with DevServer(model_v1) as layer:
        yield layer


def test_serves_the_golden_predictions_to_curl(server):
    result = scenarios.reach(server)
    assert result["reachable"], result["why"]


def test_bad_input_over_http_is_a_4xx_json(server):
    response = requests.post(f"{server.base_url}/predict", data="{oops", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "malformed JSON" in response.json()["error"]


def test_schemathesis_finds_nothing(server, tmp_path):
    """Every endpoint of /openapi.json, all checks, a bounded number of generated examples."""
    result = subprocess.run(
        [str(BIN / "schemathesis"), "--config-file", SCHEMATHESIS_CONFIG, "run", f"{server.base_url}/openapi.json",
         "--checks", "all", "--max-examples", "40", "--seed", "1", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "failure" not in result.stdout.split("SUMMARY")[-1].lower()


def test_a_crash_stays_down(model_v1):
    """Not solved here: nothing restarts a killed development server."""
    with DevServer(model_v1) as layer:
        result = scenarios.crash(layer, clients=2, observe=3.0)
    assert not result["recovered"], result
    assert result["failed"] > 0
    print(f"\ndev server crash: {result['failed']} of {result['requests']} requests failed; never recovered")


def test_an_upgrade_means_downtime(fresh_model, model_v2):
    """Not solved here: a new model version means stop and start; requests sent meanwhile fail."""
    with DevServer(fresh_model) as layer:
        result = scenarios.upgrade(layer, model_v2, clients=4)
    assert result["serves_new_version"], result
    assert result["failed"] > 0, f"expected failed requests during stop/start, got {result}"
    assert result["longest_stall_s"] > 0.5, f"a restart leaves clients without an answer: {result}"
    print(
        f"\ndev server upgrade: {result['failed']} of {result['requests']} requests failed, "
        f"{result['longest_stall_s']} s without an answer"
    )


def test_make_stage_2_runs_the_dev_server_on_host_port(model_v1):
    """`make stage-2` serves on $HOST:$PORT in the foreground (as the README says)."""
    layer = DevServer(model_v1)
    make = subprocess.Popen(
        ["make", "--no-print-directory", "stage-2", f"PORT={layer.port}"],
        cwd=ROOT, env=layer.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_ready(f"{layer.base_url}/v2/health/ready", 60, alive=lambda: make.poll() is None)
        assert layer.predict(golden_rows()[:1])["model_version"] == "1"
    finally:
        os.killpg(make.pid, signal.SIGTERM)  # make and the server it started
        make.wait(30)


@pytest.mark.parametrize("value", ["99999", "0", "abc", ""])
def test_make_stage_2_refuses_a_port_out_of_range_in_one_line(value):
    """Flask's `run --port` would wrap 99999 to 34463 silently: `make stage-2` names the setting instead."""
    env = {**os.environ, "PORT": value}
    proc = subprocess.run(["make", "-s", "stage-2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out
    assert f"error: PORT must be a whole number from 1 to 65535, got '{value}'" in out.splitlines(), out


# The settings stage 02 reads, each wrong as tests/test_wsgi.py's BAD_SETTINGS has it (the same lines).
STAGE_2_SETTINGS = ("PORT", "HOST", "MAX_ROWS", "MODEL_PATH")


@pytest.mark.parametrize("setting", [s for s in BAD_SETTINGS if s.split("=", 1)[0] in STAGE_2_SETTINGS])
def test_a_bad_setting_stops_make_stage_2_with_one_line_naming_it(setting):
    name, value = setting.split("=", 1)
    env = {**os.environ, "PORT": str(free_port()), name: value}
    proc = subprocess.run(["make", "-s", "stage-2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out
    assert BAD_SETTINGS[setting] in out, out


def test_the_crash_command_prints_what_a_crash_cost_and_refuses_a_target_the_layer_lacks():
    """`python -m harness.crash --stage 2` (exercises 02.3 to 04.3): the kill, the failed requests, the longest
    time without an answer, and "no" for back by itself; a worker, which the development server lacks, one line."""
    command = [str(BIN / "python"), "-m", "harness.crash", "--stage", "2", "--observe", "2"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = dict(line.split(":", 1) for line in run.stdout.strip().splitlines())
    failed, requests_sent = (int(n) for n in lines["failed requests"].split(" of "))
    assert 0 < failed <= requests_sent, lines
    assert lines["killed"].strip().startswith("kill -9 ") and lines["back by itself"].strip().startswith("no,"), lines
    lacking = subprocess.run([*command, "--target", "worker"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert lacking.returncode == 1 and "has no worker to kill" in lacking.stderr and "Traceback" not in lacking.stderr
