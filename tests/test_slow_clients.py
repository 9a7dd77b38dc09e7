"""Slow clients: connections that send headers and one byte of the body, then wait.

gunicorn's sync workers each wait with one such client, so as many slow
clients as workers stop stage 03 (the limit, asserted like the development
server's crash). nginx in front (`make stage-3 PROXY=1`, the stage-04 proxy
container, the stage-05 sidecar) reads requests completely before gunicorn
sees them: 50 slow clients leave the normal requests answered.

Every run is bounded: ``hold`` seconds of slow clients, paced normal clients
(one request per 0.1 s each, 2 s timeout), at most a few hundred requests.
Run with -s to print the figures of your machine.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.core import wait_until
from harness.kube import is_ready
from harness.kube import pods
from harness.kube import restarts
from harness.layers import Gunicorn
from harness.proxy import GunicornBehindNginx
from harness.proxy import ProxiedContainer
from harness.slowclients import SlowClients
from harness.slowclients import describe
from harness.slowclients import slow_clients

WORKERS = 2  # set explicitly: the limit is one slow client per sync worker, whatever the CPU count
HOLD = 6.0
CROWD = 50
ANSWERED = 0.95

needs_nginx = pytest.mark.skipif(
    os.environ.get("CI") != "true"  # CI installs both (.ci/run): a missing one must fail there
    and (not (shutil.which("nginx") or shutil.which("/usr/sbin/nginx")) or not shutil.which("envsubst")),
    reason="nginx and envsubst are not installed (Debian: apt-get install nginx-light gettext-base)",
)


def survives(result: dict) -> None:
    """The assertion the protected layers share: >= 95 % of normal requests answered meanwhile."""
    during = result["during"]
    assert result["slow_connected"] == CROWD, f"only {result['slow_connected']} slow connections were established"
    assert during["requests"] >= 10, f"too few normal requests to judge: {result}"
    assert during["answered_share"] >= ANSWERED, describe(result)


@pytest.mark.slow
def test_as_many_slow_clients_as_workers_stop_gunicorn_alone(fresh_model):
    """The limit: 2 slow clients hold both sync workers, and normal requests go unanswered while they wait."""
    with Gunicorn(fresh_model, env={"WEB_CONCURRENCY": str(WORKERS)}) as layer:
        result = slow_clients(layer, slow=WORKERS, hold=HOLD, timeline=None)
        after = layer.ready()
    print(f"\n03 gunicorn alone, {WORKERS} workers: {describe(result)}")
    during = result["during"]
    assert result["slow_connected"] == WORKERS
    assert during["requests"] >= 1
    assert during["answered_share"] <= 0.5, f"expected the workers to be held: {describe(result)}"
    assert result["impaired_s"] is not None and result["impaired_s"] >= HOLD / 2, describe(result)
    assert after, "once the slow clients leave, gunicorn answers again"


@pytest.mark.slow
def test_one_slow_client_fewer_than_workers_leaves_gunicorn_serving(fresh_model):
    """The limit is exactly the worker count: one slow client holds one worker, the other serves."""
    with Gunicorn(fresh_model, env={"WEB_CONCURRENCY": str(WORKERS)}) as layer:
        result = slow_clients(layer, slow=WORKERS - 1, hold=HOLD, timeline=None)
    print(f"\n03 gunicorn alone, {WORKERS} workers: {describe(result)}")
    assert result["during"]["answered_share"] >= ANSWERED, describe(result)


@needs_nginx
@pytest.mark.slow
def test_nginx_in_front_of_stage_03_keeps_answering_through_50_slow_clients(fresh_model):
    with GunicornBehindNginx(fresh_model, env={"WEB_CONCURRENCY": str(WORKERS)}) as layer:
        result = slow_clients(layer, slow=CROWD, hold=HOLD, timeline=None)
        assert layer.predict([{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}])
    print(f"\n03 gunicorn + nginx: {describe(result)}")
    survives(result)
    assert result["impaired_s"] == 0.0, describe(result)


@needs_nginx
@pytest.mark.slow
def test_the_proxy_script_stops_both_servers_and_cleans_up(fresh_model):
    """`make stage-3 PROXY=1` runs scripts/stage3_proxy.sh: SIGTERM to it stops nginx and gunicorn too."""
    layer = GunicornBehindNginx(fresh_model, env={"WEB_CONCURRENCY": "1"})
    layer.start()
    pids = layer.serving_pids()
    assert len(pids) >= 4, f"gunicorn master + worker and nginx master + worker: {pids}"
    layer.stop()
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert not alive, f"still running after the script was stopped: {alive}"


def _state(pid: int) -> str:
    """A process's state letter from /proc (Z for a zombie or a process already gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.slow
def test_slow_clients_really_are_held_open(fresh_model):
    """The generator is not vacuous: a server that waits for the body keeps every slow connection open."""
    with Gunicorn(fresh_model, env={"WEB_CONCURRENCY": "1"}) as layer:
        port = int(layer.base_url.rsplit(":", 1)[1])
        with SlowClients("127.0.0.1", port, 3) as trickle:
            assert trickle.connected == 3
            assert trickle.closed_by_server() == 0


@pytest.mark.docker
@pytest.mark.slow
def test_stage_04_with_its_proxy_container_keeps_answering_through_50_slow_clients(model_v1, stage4_image):
    with ProxiedContainer(model_v1, image=stage4_image) as layer:
        result = slow_clients(layer, slow=CROWD, hold=HOLD, timeline=None)
    print(f"\n04 container + nginx: {describe(result)}")
    survives(result)


@pytest.mark.cluster
@pytest.mark.slow
def test_stage_05_with_its_nginx_sidecar_keeps_answering_through_50_slow_clients(cluster):
    # An earlier test may have just restarted pods: start from every pod ready, and compare with that.
    assert wait_until(cluster.at_full_strength, timeout=120, interval=1), "stage 05 is not at full strength"
    before = pod_states()
    result = slow_clients(cluster, slow=CROWD, hold=HOLD, timeline=None)
    print(f"\n{cluster.name}: {describe(result)}")
    survives(result)
    assert pod_states() == before, "the slow clients restarted a pod or took it out of the Service"


def pod_states() -> dict[str, tuple[bool, int]]:
    """Each stage-05 pod's readiness and container restarts."""
    return {p["metadata"]["name"]: (is_ready(p), restarts(p)) for p in pods()}
