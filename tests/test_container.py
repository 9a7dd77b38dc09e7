"""Stage 04 for real: the image built by a Docker engine, run as `make stage-4` runs it.

One container serves most tests (module fixture), started the strictest way:
read-only root filesystem with a tmpfs /tmp. The graceful-stop test ends it,
so it comes last. Without a Docker engine every test here skips with the
reason; in CI (tests/conftest.py REQUIRE_DOCKER) it fails instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from harness import releases
from harness import scenarios
from harness.container import BASE_IMAGE
from harness.container import Container
from harness.container import docker
from harness.container import image_config
from harness.container import image_size
from harness.core import wait_until
from harness.golden import mismatches
from harness.layers import BIN
from harness.layers import ROOT
from harness.layers import STAGES
from harness.layers import free_port
from harness.load import EXAMPLE_LABEL
from harness.load import EXAMPLE_ROW
from harness.load import send_in_background
from tests.test_wsgi import BAD_SETTINGS

REQUIRED_IN_CI = os.environ.get("CI") == "true"

pytestmark = pytest.mark.docker
MB = 1_000_000
MAX_ADDED_MB = 300  # what our Dockerfile may add on top of python:3.11-slim


@pytest.fixture(scope="module")
def served(stage4_image):
    """The image's own baked-in model, read-only root, a 1 s health interval.

    (The interval only makes the healthcheck test quick; the check itself is the Dockerfile's.)
    """
    layer = Container(
        image=stage4_image,
        run_args=("--read-only", "--tmpfs", "/tmp", "--health-interval", "1s"),
    )
    layer.start_s = layer.start()
    print(f"\ncontainer start to ready: {layer.start_s:.2f} s")
    yield layer
    layer.stop()


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "proxy.Dockerfile"])
def test_hadolint_reports_nothing(dockerfile):
    result = subprocess.run(
        [str(BIN / "hadolint"), dockerfile], cwd=STAGES[4], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_image_is_built_as_the_template_says(stage4_image):
    config = image_config(stage4_image)
    assert config["User"] == "10001"
    shell, flag, script = config["Cmd"]
    assert (shell, flag) == ("/bin/sh", "-c") and script.endswith(
        "; exec gunicorn -c gunicorn.conf.py 'app:create_app()'"
    )
    assert "/v2/health/ready" in " ".join(config["Healthcheck"]["Test"])
    assert {"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "HOST=0.0.0.0", "PORT=8000"} <= set(config["Env"])
    assert "org.opencontainers.image.title" in config["Labels"]
    assert config["Labels"]["org.opencontainers.image.base.name"] == "python:3.11-slim", config["Labels"]


def test_a_download_the_lock_does_not_name_fails_the_build(stage4_image, tmp_path):
    """--require-hashes: with one pin's hashes replaced, pip refuses the real file and the build stops."""
    build = tmp_path / "04_container"
    shutil.copytree(STAGES[4], build, ignore=shutil.ignore_patterns("artifacts", "__pycache__"))
    requirements = build / "requirements.txt"
    text = requirements.read_text()
    pin = re.search(r"^blinker==\S+ \\\n((?:\s+--hash=sha256:[0-9a-f]{64}.*\n)+)", text, re.M)
    assert pin, "blinker and its hashes in requirements.txt"
    requirements.write_text(text.replace(pin.group(1), re.sub("[0-9a-f]{64}", "0" * 64, pin.group(1))))
    result = subprocess.run(
        ["docker", "build", "--target", "builder", "--no-cache", "--quiet", str(build)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode != 0 and "DO NOT MATCH THE HASHES" in result.stdout + result.stderr, result.stderr[-2000:]


# gunicorn parses WEB_CONCURRENCY itself before any config file: the image's CMD checks it (as `make stage-3` does)
CONTAINER_SETTINGS = {
    **BAD_SETTINGS,
    **{
        f"WEB_CONCURRENCY={v}": f"WEB_CONCURRENCY must be a whole number of at least 1, got '{v}'" for v in ("abc", "0")
    },
}


@pytest.mark.parametrize("setting", CONTAINER_SETTINGS)
def test_a_bad_setting_stops_the_container_with_one_line_naming_it(stage4_image, setting):
    """`docker run --env` reaches the same gunicorn.conf.py and app as stage 03: the same one line, no traceback."""
    run = subprocess.run(
        ["docker", "run", "--rm", "--env", "WEB_CONCURRENCY=1", "--env", setting, stage4_image],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode != 0 and CONTAINER_SETTINGS[setting] in log, log[-2000:]
    assert "Traceback" not in log, log[-2000:]


def test_image_size_stays_small(stage4_image):
    size, base = image_size(stage4_image), image_size(BASE_IMAGE)
    added = (size - base) / MB
    figures = f"image {size / MB:.0f} MB = base {base / MB:.0f} MB + ours {added:.0f} MB"
    print(f"\n{figures}")
    assert added <= MAX_ADDED_MB, figures


def test_serves_the_golden_predictions(served, golden):
    answer = served.predict(golden["inputs"])
    assert mismatches(answer["predictions"], golden) == [], f"started in {served.start_s:.2f} s"
    assert answer["model_version"] == golden["model_version"], "the model trained into the image at build time"


def test_gunicorn_is_pid_1(served):
    """The shell that checks WEB_CONCURRENCY execs gunicorn: the master is PID 1 and gets docker stop's SIGTERM."""
    assert b"gunicorn" in Path(f"/proc/{served.pid1()}/cmdline").read_bytes()


def test_runs_as_uid_10001_not_root(served):
    pids = served.serving_pids()
    uids = {pid: _real_uid(pid) for pid in pids}
    assert len(pids) >= 2 and set(uids.values()) == {10001}, f"host view of master + workers: {uids}"


def test_works_with_a_read_only_root_filesystem(served):
    assert served.inspect()["HostConfig"]["ReadonlyRootfs"] is True
    assert "Control socket listening at /tmp/" in served.log(), "gunicorn's socket lives in the tmpfs"
    assert served.ready()


def test_healthcheck_turns_healthy(served):
    def health() -> str:
        return served.inspect()["State"]["Health"]["Status"]

    assert wait_until(lambda: health() == "healthy", timeout=60, interval=0.5), f"health stayed {health()!r}"


def test_healthcheck_turns_unhealthy_when_the_only_worker_hangs(failure_image):
    """The HEALTHCHECK asks the app, so a server whose worker hangs is reported, though its process runs.

    (Docker only reports it: nothing restarts an unhealthy container; stage 05's liveness probe does.)
    """
    layer = Container(
        image=failure_image,
        env={"WEB_CONCURRENCY": "1", "GUNICORN_TIMEOUT": "300"},  # gunicorn's own timeout would free the worker
        run_args=("--health-interval", "1s", "--health-timeout", "1s", "--health-retries", "2"),
    )
    with layer:
        health = lambda: layer.inspect()["State"]["Health"]["Status"]  # noqa: E731
        assert wait_until(lambda: health() == "healthy", timeout=60, interval=0.5), health()
        send_in_background("GET", f"{layer.base_url}/_test/sleep?seconds=60", timeout=90)  # holds the worker
        assert wait_until(lambda: "test endpoint: sleeping" in layer.log(), 10), "the request never started"
        unhealthy = wait_until(lambda: health() == "unhealthy", timeout=45, interval=0.5)
        state = layer.inspect()["State"]
        assert unhealthy, f"health stayed {state['Health']['Status']!r}"
        assert state["Running"] and state["Health"]["Log"][-1]["ExitCode"] != 0, state["Health"]["Log"][-1]


def test_killing_pid_1_the_restart_policy_brings_it_back(served, golden):
    """SIGKILL the gunicorn master from the host, under load: on-failure restarts the container."""
    before = served.restart_count()
    report = scenarios.crash(served, clients=2, observe=30)
    figures = f"back after {report['recovery_s']} s; {report['failed']} of {report['requests']} requests failed"
    print(f"\nPID 1 killed: {figures}")
    assert report["recovered"], figures
    assert served.restart_count() == before + 1, figures
    assert mismatches(served.predict(golden["inputs"])["predictions"], golden) == []


def test_docker_stop_is_graceful(failure_image):
    """SIGTERM lets an in-flight request finish, exit code 0 (the image plus a route that holds a request)."""
    served = Container(image=failure_image)
    served.start()
    in_flight = send_in_background("GET", f"{served.base_url}/_test/sleep?seconds=2", timeout=30)
    # a worker logs this on entry: the request is in flight before the signal
    assert wait_until(lambda: "test endpoint: sleeping" in served.log(), 10), "the slow request never started"
    stop_at = time.monotonic()
    exit_code = served.stop()
    stopped_s = time.monotonic() - stop_at
    outcome = in_flight.result(timeout=30)
    figures = f"request {outcome.detail} after {outcome.end - outcome.start:.2f} s; docker stop took {stopped_s:.2f} s"
    print(f"\ndocker stop: {figures}, exit code {exit_code}")
    assert outcome.ok and outcome.end > stop_at, figures
    assert exit_code == 0, f"exit code {exit_code}; {figures}"


def test_upgrade_replaces_the_container(stage4_image, model_v1, model_v2):
    """A bind-mounted model picks the version; the upgrade is stop old, start new: count the cost."""
    with Container(model_v1, image=stage4_image) as layer:
        assert layer.predict([EXAMPLE_ROW])["model_version"] == "1"
        report = scenarios.upgrade(layer, model_v2, clients=2, settle=30, ordinary=0.5)
    print(f"\nupgrade by replacement: {report}")
    assert report["serves_new_version"], report
    assert report["failed"] > 0, f"stop old, start new is not zero-downtime: {report}"


@pytest.mark.parametrize("kind", releases.KINDS)
def test_a_bad_release_replaces_the_container_and_nothing_refuses_it(stage4_image, model_v1, kind, tmp_path):
    """Stop old, run new: a model that cannot load or a setting that stops it is an outage, a wrong model is
    served (Docker runs an unhealthy container on); running the previous one again is the way back."""
    with Container(model_v1, image=stage4_image) as layer:
        report = releases.bad_release(layer, kind, tmp_path, clients=2, observe=4)
        answer = layer.predict([EXAMPLE_ROW])
    figures = {k: report[k] for k in ("failed", "requests", "longest_stall_s", "wrong", "wrong_for_s",
                                      "answers_again_s", "command", "rollback")}  # fmt: skip
    print(f"\nbad release ({kind}) at stage 04: {figures}")
    assert not report["refused"], report
    if kind == "wrong":
        assert report["wrong"] > 0 and report["failed"] > 0, f"down, then wrong answers: {figures}"
    else:
        assert report["failed"] > 0 and report["longest_stall_s"] >= 4 and report["wrong"] == 0, figures
    assert report["answers_again_s"] is not None, f"the previous container answered again: {figures}"
    assert (answer["model_version"], answer["predictions"][0]["label"]) == ("1", EXAMPLE_LABEL)


def _real_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


@pytest.fixture(scope="module")
def compose(docker_engine) -> None:
    """Docker Compose v2 answers (`scripts/compose.sh --check`): skipped without it, required in CI."""
    check = subprocess.run(["bash", "scripts/compose.sh", "--check"], cwd=ROOT, capture_output=True, text=True)
    if check.returncode != 0:
        if REQUIRED_IN_CI:
            pytest.fail(f"CI requires Docker Compose v2: {check.stderr.strip()}", pytrace=False)
        pytest.skip(check.stderr.strip())


def test_make_stage_4_starts_the_compose_stack_hardened_and_down_removes_it(compose):
    port = str(free_port())
    up = subprocess.run(["make", "-s", "stage-4", f"PORT={port}"], cwd=ROOT, capture_output=True, text=True,
                        timeout=900)  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        assert '"label": "setosa"' in up.stdout, up.stdout[-1000:]
        for name in ("iris-serving-stage4", "iris-serving-stage4-proxy"):
            host = json.loads(docker("inspect", name).stdout)[0]["HostConfig"]
            assert host["RestartPolicy"]["Name"] == "unless-stopped" and host["ReadonlyRootfs"], host
            assert host["CapDrop"] == ["ALL"] and "no-new-privileges:true" in host["SecurityOpt"], host
        published = json.loads(docker("inspect", "iris-serving-stage4").stdout)[0]["NetworkSettings"]["Ports"]
        assert not any(published.values()), f"only nginx is published: {published}"
        answer = requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=10)
        assert answer.status_code == 200 and answer.headers["X-Request-ID"], "through nginx to the app"
    finally:
        down = subprocess.run(["make", "-s", "stage-4-down"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    left = docker("ps", "--all", "--filter", "name=iris-serving-stage4", "--format", "{{.Names}}").stdout.split()
    assert not left, f"make stage-4-down left {left}"
