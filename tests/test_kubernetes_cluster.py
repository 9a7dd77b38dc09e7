"""Stage 05 on a real cluster (kind): what Kubernetes adds, measured under load.

These run where a cluster answers (a laptop with kind, the hosted CI's kind
job: `make stage-5` then `pytest -m cluster`) and skip with the reason
elsewhere. Requests go to the Service's NodePort on 127.0.0.1 (published by
kind), so the Service's load balancing is part of every measurement.
"""

from __future__ import annotations

import json
import time

import pytest

from harness.cluster import DEPLOYMENT
from harness.cluster import NAMESPACE
from harness.cluster import build_model_image
from harness.cluster import kubectl
from harness.cluster import ready_endpoints
from harness.golden import mismatches
from harness.load import LoadRun
from harness.load import wait_until

# A rollout or the HPA's reaction takes minutes, not the suite's default 300 s.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def deployment_status() -> dict:
    return json.loads(kubectl("get", "deployment", DEPLOYMENT, "-n", NAMESPACE, "-o", "json"))["status"]


def test_rollout_completes_and_serves_through_the_service(cluster, golden):
    status = deployment_status()
    assert status.get("readyReplicas", 0) >= 2, status
    assert ready_endpoints() >= 2
    assert mismatches(cluster.predict(golden["inputs"])["predictions"], golden) == []


def test_deleting_a_pod_under_load_loses_no_request(cluster):
    with LoadRun(cluster.base_url, clients=4, max_seconds=120) as run:
        assert run.wait_for(lambda r: r.total >= 50, timeout=30), "load did not start"
        deleted = cluster.delete_pod(wait=True)  # preStop, SIGTERM, graceful exit
        cluster.scale(2)  # waits until the replacement is ready
        before = run.count()
        run.wait_for(lambda r: r.total >= before + 50, timeout=30)
    summary = run.report.summary()
    print(f"\ndeleted {deleted} under load: {summary}")
    assert summary["failed"] == 0, summary


def test_rolling_update_to_model_v2_under_load_loses_no_request(cluster, model_v2, stage4_image):
    image = build_model_image(stage4_image, model_v2, f"iris-serving:v2-{int(time.time())}")
    with LoadRun(cluster.base_url, clients=4, max_seconds=300) as run:
        assert run.wait_for(lambda r: r.total >= 50, timeout=30), "load did not start"
        started = time.monotonic()
        cluster.rollout(image)  # kind load, apply with the new tag, wait for the rollout
        rollout_s = time.monotonic() - started
        before = run.count()
        run.wait_for(lambda r: r.total >= before + 50, timeout=30)
    summary = run.report.summary()
    print(f"\nrolling update to v2 in {rollout_s:.1f} s under load: {summary}")
    assert summary["failed"] == 0, summary
    assert run.report.last_version() == "2", summary
    assert {"1", "2"} <= summary["versions"].keys(), "both versions answered during the rollout"


def test_scaling_to_three_replicas_adds_a_ready_endpoint(cluster):
    started = time.monotonic()
    cluster.scale(3)
    took = time.monotonic() - started
    try:
        assert wait_until(lambda: ready_endpoints() == 3, timeout=30), f"endpoints: {ready_endpoints()}"
        print(f"\nscaled 2 -> 3 ready replicas in {took:.1f} s")
    finally:
        cluster.scale(2)


def test_hpa_adds_pods_under_cpu_load(cluster):
    """Report how the HPA reacts: metrics-server needs a minute before the first CPU figures."""

    def hpa() -> dict:
        return json.loads(kubectl("get", "hpa", DEPLOYMENT, "-n", NAMESPACE, "-o", "json"))

    has_metrics = wait_until(lambda: hpa()["status"].get("currentMetrics"), timeout=180, interval=5)
    if not has_metrics:
        pytest.fail(f"the HPA got no CPU metrics in 180 s (is metrics-server running?): {hpa()['status']}")
    started = time.monotonic()
    with LoadRun(cluster.base_url, clients=8, max_seconds=240) as run:
        scaled = wait_until(lambda: hpa()["status"].get("desiredReplicas", 0) > 2, timeout=200, interval=5)
        took = time.monotonic() - started
    status = hpa()["status"]
    print(
        f"\nHPA under load: desired {status.get('desiredReplicas')} after {took:.0f} s, {status.get('currentMetrics')}"
    )
    print(f"load meanwhile: {run.report.summary()}")
    assert scaled, f"no scale-up within {took:.0f} s: {status}"
