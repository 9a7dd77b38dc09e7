"""Stage 03: what gunicorn solves, shown against a real gunicorn on loopback under load.

Each test starts (or reuses) gunicorn exactly as `make stage-3` runs it, through
harness.layers.Gunicorn, runs a bounded load loop (harness.load.LoadRun),
injects one fault and asserts on what the clients saw. The measured figures are
printed (run with -s to see them) and repeated in every assertion message.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from failure_app import SERVE as FAILURE_APP
from harness.core import ROOT
from harness.core import free_port
from harness.core import wait_until
from harness.golden import mismatches
from harness.layers import Gunicorn
from harness.layers import LayerError
from harness.load import LoadRun
from harness.load import send_in_background
from harness.local import GunicornHUP
from harness.local import pid_in
from harness.releases import wrong_model

pytestmark = pytest.mark.slow

CLIENTS = 4  # load threads: more clients than workers, so requests queue as in real traffic
SETTLE = 200  # requests to see after a fault before judging the outcome


def figures(test: str, **values) -> str:
    """Print the measured figures of one test and return them for its assertion messages."""
    text = f"{test}: {json.dumps(values, default=str)}"
    print(text)
    return text


@pytest.fixture(scope="module")
def module_model(iris, model_v1, tmp_path_factory) -> Path:
    """A private copy of version 1 for the shared servers (a failed test must not touch model_v1)."""
    target = tmp_path_factory.mktemp("served") / "iris.joblib"
    iris.install(model_v1, target)
    return target


@pytest.fixture(scope="module")
def default_server(module_model):
    """gunicorn with nothing but HOST/PORT/MODEL_PATH set: the served default."""
    with Gunicorn(module_model) as layer:
        yield layer


@pytest.fixture(scope="module")
def timeout_server(module_model):
    """Two workers, a 2 s worker timeout and the test endpoints (for the hung-request test)."""
    env = {"WEB_CONCURRENCY": "2", "GUNICORN_TIMEOUT": "2", **FAILURE_APP["env"]}
    with Gunicorn(module_model, env=env, app=FAILURE_APP["app"]) as layer:
        yield layer


@pytest.fixture
def broken_model(iris, model_v1, tmp_path) -> Path:
    """Version 1 with one byte appended: its SHA-256 no longer matches its metadata."""
    path = tmp_path / "broken" / "iris.joblib"
    iris.install(model_v1, path)
    with path.open("ab") as f:
        f.write(b"\0")
    return path


def golden_problems(layer: Gunicorn, golden: dict) -> tuple[str, list[str]]:
    """(model_version, mismatches against the version-1 golden predictions) as served now."""
    body = layer.predict(golden["inputs"])
    return body["model_version"], mismatches(body["predictions"], golden)


def test_defaults_one_worker_per_cpu(default_server):
    workers = default_server.workers()
    cpus = len(os.sched_getaffinity(0))
    assert len(workers) == cpus, figures("defaults", workers=len(workers), usable_cpus=cpus)
    assert default_server.booted(workers), "start() returns once every worker has loaded the model"


def test_killed_worker_is_replaced_and_costs_at_most_its_request(default_server):
    before = default_server.workers()
    with LoadRun(default_server.base_url, clients=CLIENTS, max_seconds=30) as run:
        run.warm_up(timeout=10)
        victim = before[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        after = default_server.wait_workers(len(before), timeout=20, exclude={victim})
        replaced_s = time.monotonic() - killed_at
        run.settle(SETTLE)
    report = run.report.summary()
    slowest = round(max(o.end - o.start for o in run.report.outcomes), 3)
    msg = figures(
        "worker SIGKILL", workers=len(before), replaced_in_s=round(replaced_s, 3), slowest_request_s=slowest, **report
    )
    # A sync worker holds exactly one connection at a time and closes it after
    # the response; connections not yet accepted wait in the listen socket the
    # master owns, and the other workers take them. So the kill costs at most
    # the one request that was inside the killed worker.
    assert set(after) - set(before), msg
    assert report["failed"] <= 1, msg
    assert run.report.outcomes[-1].ok, msg  # and the clients are answered afterwards


def test_hung_request_gets_its_worker_replaced_while_others_serve(timeout_server):
    before = timeout_server.workers()
    with LoadRun(timeout_server.base_url, clients=2, max_seconds=30) as run:
        run.warm_up(timeout=10)
        hung = send_in_background("GET", timeout_server.base_url + "/_test/sleep?seconds=30", timeout=60).result(60)
        during = [o for o in run.report.outcomes if o.start >= hung.start and o.end <= hung.end]
        replaced = wait_until(
            lambda: (
                len(set(before) - set(timeout_server.workers())) == 1 and len(timeout_server.workers()) == len(before)
            ),
            20,
        )
        after = timeout_server.workers()
        run.settle(SETTLE)
    report = run.report.summary()
    msg = figures(
        "hung request (timeout=2 s)",
        hung_request=hung.detail,
        hung_for_s=round(hung.end - hung.start, 3),
        served_ok_during_hang=sum(o.ok for o in during),
        workers_replaced=len(set(before) - set(after)),
        **report,
    )
    assert replaced, msg
    assert not hung.ok, msg  # a finished 30 s sleep would be a 200
    assert "WORKER TIMEOUT" in timeout_server.log(), msg
    assert len(set(before) - set(after)) == 1, msg  # only the hung worker was replaced
    assert sum(o.ok for o in during) > 0, msg  # the other worker kept serving meanwhile
    assert report["failed"] == 0, msg


def test_broken_model_is_refused_before_reload(iris, default_server, broken_model, golden):
    before = default_server.workers()
    installed = default_server.model_path.read_bytes()
    signals = default_server.log().count("Handling signal: usr2")
    with LoadRun(default_server.base_url, clients=CLIENTS, max_seconds=30) as run:
        run.warm_up(timeout=10)
        with pytest.raises(iris.ArtifactError) as refused:
            default_server.upgrade(broken_model)
        run.settle(SETTLE)
    version, problems = golden_problems(default_server, golden)
    report = run.report.summary()
    msg = figures("broken upgrade (validated)", refused=str(refused.value), serving=version, **report)
    assert default_server.model_path.read_bytes() == installed, msg
    assert default_server.log().count("Handling signal: usr2") == signals, msg  # no upgrade was started
    assert default_server.workers() == before, msg
    assert version == "1" and not problems, f"{msg}; {problems}"
    assert report["failed"] == 0 and set(report["versions"]) == {"1"}, msg


def test_unvalidated_broken_model_halts_gunicorn_on_hup(fresh_model, broken_model):
    """Why upgrade() validates: a HUP with a model no worker can load takes the whole server down."""
    with Gunicorn(fresh_model) as layer:
        with LoadRun(layer.base_url, clients=CLIENTS, max_seconds=30) as run:
            run.warm_up(timeout=10)
            shutil.copyfile(broken_model, fresh_model)  # no validation, the mistake under study
            hup_at = time.monotonic()
            os.kill(layer.proc.pid, signal.SIGHUP)
            halted = wait_until(lambda: layer.proc.poll() is not None, 30)
            halted_s = time.monotonic() - hup_at
            run.settle(20, timeout=5)  # what clients see afterwards
        report = run.report.summary()
        msg = figures(
            "broken upgrade (unvalidated HUP)",
            master_exit_code=layer.proc.returncode,
            master_exited_after_s=round(halted_s, 3),
            **report,
        )
        assert halted, msg
        # The app stops a worker that cannot load its model with exit code 4 (APP_LOAD_ERROR) and one
        # line naming the file; gunicorn halts on it. With two workers, when the second failed one is
        # reaped while the master is already halting, gunicorn 27 raises its HaltServer again, with its
        # own traceback, and exits 1: that traceback is gunicorn's, after our line.
        assert layer.proc.returncode != 0, msg
        log = layer.log()
        assert "App failed to load." in log and f"MODEL_PATH: {fresh_model}" in log, msg
        assert report["failed"] > 0 and not run.report.outcomes[-1].ok, msg  # every client is refused from then on


@pytest.mark.parametrize(
    ("preload", "expected"),
    [("0", "2"), ("1", "1")],
    ids=["hup-loads-version-2", "preload-hup-keeps-version-1"],
)
def test_hup_upgrade_under_load(fresh_model, model_v2, golden, preload, expected):
    """HUP replaces every worker with zero failed requests; with preload_app they keep the old model."""
    # gunicorn stops the old workers as soon as it has forked the new ones, which then load the app
    # and the model: requests queue meanwhile, for seconds on a busy machine. The claim is that none
    # is lost (the stall is the scorecard's figure), so the clients wait as long as a browser would.
    with GunicornHUP(fresh_model, env={"GUNICORN_PRELOAD": preload}) as layer:
        before = layer.workers()
        with LoadRun(layer.base_url, clients=CLIENTS, max_seconds=90, timeout=30) as run:
            run.warm_up(timeout=10)
            layer.upgrade(model_v2)
            layer.wait_workers(len(before), timeout=60, exclude=set(before))
            old_gone = wait_until(lambda: not set(layer.workers()) & set(before), 60)
            seen = run.count()
            run.settle(SETTLE)
            since = [o.version for o in run.report.outcomes[seen:] if o.ok]
        version, problems = golden_problems(layer, golden)
        report = run.report.summary()
        msg = figures(
            f"HUP upgrade (GUNICORN_PRELOAD={preload})",
            old_workers_gone=old_gone,
            serving_after=version,
            versions_after_reload=sorted(set(since)),
            slowest_request_s=round(max(o.end - o.start for o in run.report.outcomes), 3),
            **report,
        )
        assert old_gone, msg
        assert report["failed"] == 0, msg
        assert set(since) == {expected} and version == expected, msg
        assert bool(problems) == (expected == "2"), f"{msg}; {problems[:3]}"  # golden = version 1


@pytest.mark.parametrize("preload", ["0", "1"], ids=["binary-upgrade", "binary-upgrade-preload"])
def test_binary_upgrade_under_load_never_stops_answering(fresh_model, model_v2, golden, preload):
    """USR2: a new master's workers load version 2 while the old workers serve; gunicorn.conf.py's hook stops
    the old master once they are ready. No request fails, no wait is longer than an ordinary one, and with
    preload_app too the new master loads version 2 (a HUP would keep version 1: the test above)."""
    with Gunicorn(fresh_model, env={"GUNICORN_PRELOAD": preload}) as layer:
        old_master, old_workers = layer.master(), layer.wait_workers(len(os.sched_getaffinity(0)))
        with LoadRun(layer.base_url, clients=CLIENTS, max_seconds=90, timeout=30) as run:
            run.warm_up(timeout=10)
            time.sleep(3)  # ordinary load: the yardstick for the wait during the upgrade
            upgrade_at = time.monotonic()
            command = layer.upgrade(model_v2)  # returns once the old master is gone
            took = time.monotonic() - upgrade_at
            seen = run.count()
            run.settle(SETTLE)
            since = [o.version for o in run.report.outcomes[seen:] if o.ok]
        version, problems = golden_problems(layer, golden)
        report = run.report.summary()
        ordinary, stall = run.report.slowest(until=upgrade_at), run.report.longest_stall(since=upgrade_at)
        msg = figures(f"binary upgrade (GUNICORN_PRELOAD={preload})", command=command, upgrade_s=round(took, 3),
                      ordinary_slowest_s=round(ordinary, 3), stall_s=round(stall, 3), **report)  # fmt: skip
        assert layer.master() != old_master and pid_in(layer.pidfile) == layer.master(), msg
        assert not Path(f"{layer.pidfile}.2").exists(), msg  # the new master took the PID file over
        assert not set(layer.workers()) & set(old_workers) and len(layer.workers()) == len(old_workers), msg
        assert "binary upgrade: every new worker is ready, stopping the old master" in layer.log(), msg
        assert report["failed"] == 0, msg
        # No wait longer than the slowest request of ordinary load. A gap between answers also holds the
        # clients' own time between requests: one scheduler tick (10 ms) is within what the two can tell apart.
        assert 0 < stall <= ordinary + 0.01, msg
        assert set(since) == {"2"} and version == "2" and problems, msg  # golden = version 1
        assert layer.stop() == layer.proc.UNKNOWN  # the adopted master stops on SIGTERM like the first


@pytest.mark.parametrize("kind", ["broken", "wrong"])
def test_a_binary_upgrade_to_a_bad_model_gives_up_and_the_old_master_serves_on(fresh_model, broken_model, iris,
                                                                                tmp_path, kind):  # fmt: skip
    """The way back is built in: copied into place unverified, a model no new worker can load halts the new
    master ("Worker failed to boot"), and one that fails a canary makes its worker stop the new master; either
    way the old master never got its SIGTERM and serves version 1 on, with no failed request."""
    bad = broken_model if kind == "broken" else wrong_model(tmp_path / "wrong")
    with Gunicorn(fresh_model) as layer:
        old_master, old_workers = layer.master(), layer.workers()
        with LoadRun(layer.base_url, clients=CLIENTS, max_seconds=90, timeout=30) as run:
            run.warm_up(timeout=10)
            shutil.copyfile(bad, fresh_model)  # no verification, the mistake under study
            shutil.copyfile(iris.metadata_path(bad), iris.metadata_path(fresh_model))
            with pytest.raises(LayerError, match="gave up") as gave_up:
                layer.reload()
            run.settle(SETTLE)
        report = run.report.summary()
        msg = figures(f"binary upgrade to a {kind} model", **report)
        assert layer.master() == old_master and layer.workers() == old_workers, f"{msg}; {gave_up.value}"
        assert not Path(f"{layer.pidfile}.2").exists(), msg  # the new master is gone, its PID file with it
        assert report["failed"] == 0 and set(report["versions"]) == {"1"} and report["wrong"] == 0, msg


def test_sigterm_finishes_the_request_in_flight(fresh_model):
    graceful_timeout = 20  # gunicorn.conf.py default (GUNICORN_GRACEFUL_TIMEOUT)
    with Gunicorn(fresh_model, **FAILURE_APP) as layer:
        with LoadRun(layer.base_url, clients=2, max_seconds=30) as run:
            run.warm_up(timeout=10)
            slow = send_in_background("GET", layer.base_url + "/_test/sleep?seconds=2", timeout=30)
            # a worker logs this on entry: the request is in flight before the signal
            assert wait_until(lambda: "test endpoint: sleeping" in layer.log(), 10), "the slow request never started"
            term_at = time.monotonic()
            code = layer.stop(timeout=graceful_timeout + 10)
            stopped_s = time.monotonic() - term_at
        outcome = slow.result(30)
        msg = figures(
            "SIGTERM",
            slow_request=outcome.detail,
            answered_after_sigterm_s=round(outcome.end - term_at, 3),
            master_exit_code=code,
            master_exited_after_s=round(stopped_s, 3),
            load_during_shutdown=run.report.summary(),
        )
        assert outcome.ok and outcome.end > term_at, msg
        assert code == 0, msg
        assert stopped_s < graceful_timeout, msg


WHOLE = "must be a whole number of at least 1, got"
# An operator's setting -> the line that must name it (gunicorn.conf.py checks its own before binding;
# the app checks MAX_ROWS and the model as each worker loads it).
BAD_SETTINGS = {
    "GUNICORN_TIMEOUT=abc": f"GUNICORN_TIMEOUT {WHOLE} 'abc'",
    "GUNICORN_GRACEFUL_TIMEOUT=-1": f"GUNICORN_GRACEFUL_TIMEOUT {WHOLE} '-1'",
    "GUNICORN_MAX_REQUESTS=": f"GUNICORN_MAX_REQUESTS {WHOLE} ''",
    "MAX_ROWS=lots": f"MAX_ROWS {WHOLE} 'lots'",
    "PORT=abc": "PORT must be a whole number from 1 to 65535, got 'abc'",
    "PORT=99999": "PORT must be a whole number from 1 to 65535, got '99999'",
    "HOST=no-such-host.invalid": "HOST must be an address or a name this machine resolves, got 'no-such-host.invalid'",
    "GUNICORN_LOGLEVEL=loud": "GUNICORN_LOGLEVEL must be one of debug, info, warning, error, critical, got 'loud'",
    "GUNICORN_PRELOAD=maybe": "GUNICORN_PRELOAD must be one of 0, 1, got 'maybe'",
    "MODEL_PATH=/nonexistent/iris.joblib": "MODEL_PATH: no model at /nonexistent/iris.joblib (train one with: ",
}


@pytest.mark.parametrize("setting", BAD_SETTINGS)
def test_a_bad_setting_stops_gunicorn_with_one_line_naming_it(fresh_model, setting):
    """An operator's typo: gunicorn stops at once, says which setting and why, and shows no traceback."""
    name, value = setting.split("=", 1)
    # One worker: with two, both fail to boot and gunicorn 27's arbiter may print its own traceback
    # while it halts on the second (after our line); that one is gunicorn's.
    layer = Gunicorn(fresh_model, env={name: value, "WEB_CONCURRENCY": "1"})
    with pytest.raises(LayerError) as failed:
        layer.start(timeout=30)
    log = layer.log()
    assert BAD_SETTINGS[setting] in log, log[-2000:]
    assert "Traceback" not in log, log[-2000:]
    assert layer.proc.returncode in (1, 4), f"exit code {layer.proc.returncode}; {failed.value}"


@pytest.mark.parametrize("value", ["abc", "0", ""])
def test_make_stage_3_refuses_a_bad_web_concurrency_in_one_line(value):
    """gunicorn reads WEB_CONCURRENCY before gunicorn.conf.py, so `make stage-3` checks it first:
    one line naming the setting, exit code 2, no traceback, nothing started."""
    env = {**os.environ, "WEB_CONCURRENCY": value, "PORT": str(free_port())}
    proc = subprocess.run(["make", "-s", "stage-3"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out
    assert f"error: WEB_CONCURRENCY must be a whole number of at least 1, got '{value}'" in out.splitlines(), out
