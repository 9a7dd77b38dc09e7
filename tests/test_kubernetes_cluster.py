"""Stage 05 on a real cluster: what Kubernetes adds, measured under load.

These run wherever a cluster answers: the local cluster `.ci/run` starts
(`make cluster-up`), or kind (`make stage-5`). Without one they skip with the
reason, and under CI=true they fail. Requests go to the Service's NodePort on
127.0.0.1:8000, so the Service's load balancing is part of every measurement.
Each test prints its figures (run with -s to see them).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests

from harness import podwindow
from harness import releases
from harness import scenarios
from harness.cluster import Cluster
from harness.cluster import build_model_image
from harness.container import docker
from harness.container import image_exists
from harness.core import Refused
from harness.core import wait_until
from harness.golden import mismatches
from harness.kube import DEPLOYMENT
from harness.kube import NAMESPACE
from harness.kube import cluster_env
from harness.kube import is_ready
from harness.kube import kubectl
from harness.kube import kubectl_path
from harness.kube import pods
from harness.kube import ready_endpoints
from harness.kube import restarts
from harness.load import EXAMPLE_ROW
from harness.load import LoadRun
from harness.scenarios import autoscale

# A rollout or the HPA's reaction takes minutes, not the suite's default 300 s.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def deployment() -> dict:
    return json.loads(kubectl("get", "deployment", DEPLOYMENT, "-n", NAMESPACE, "-o", "json"))


def ready_pods() -> list[dict]:
    return [p for p in pods() if is_ready(p)]


def image_of(pod: dict) -> str:
    return pod["spec"]["containers"][0]["image"]


def versions_answering(base_url: str, requests_count: int = 20) -> set[str]:
    """The model versions that answer ``requests_count`` fresh requests through the Service."""
    seen = set()
    for _ in range(requests_count):
        answer = requests.post(f"{base_url}/predict", json={"instances": [EXAMPLE_ROW]}, timeout=10)
        answer.raise_for_status()
        seen.add(answer.json()["model_version"])
    return seen


@contextlib.contextmanager
def overlay(cluster: Cluster, image: str, server_env: dict[str, str], restore: str | None = None) -> Iterator[None]:
    """Stage 05 with ``image`` and ``server_env`` merged into server.env (Cluster.apply), then server.env as
    committed with the image ``restore`` (default: ``image``)."""
    cluster.apply(image, server_env)
    try:
        yield
    finally:
        cluster.apply(restore or image)


def serving_replica_sets() -> set[str]:
    """The ReplicaSets (by pod-template-hash) whose pods are ready."""
    return {p["metadata"]["labels"]["pod-template-hash"] for p in ready_pods()}


@pytest.mark.parametrize("kind", ["broken", "wrong"])
def test_a_rollout_to_a_bad_model_stops_and_rollout_undo_restores_the_previous_replica_set(cluster, kind, tmp_path):
    """A model that cannot load, or one that loads and names the wrong species (not ready: the canary check):
    the new pod never becomes ready, maxUnavailable 0 keeps the old pods serving, the rollout fails at its
    progress deadline, and `kubectl rollout undo` goes back to the previous ReplicaSet."""
    before, old = serving_replica_sets(), versions_answering(cluster.base_url)
    deadline = deployment()["spec"]["progressDeadlineSeconds"]
    report = releases.bad_release(cluster, kind, tmp_path, clients=2, observe=5)
    figures = {k: report[k] for k in ("failed", "requests", "longest_stall_s", "wrong", "release_s", "rollback_s",
                                      "answers_again_s", "refused_because")}  # fmt: skip
    print(f"\nbad release ({kind}) at stage 05, progress deadline {deadline} s: {figures}")
    assert report["refused"] and "exceeded its progress deadline" in report["refused_because"], figures
    assert report["failed"] == 0 and report["wrong"] == 0, f"the old pods answered every request: {figures}"
    assert report["release_s"] >= deadline, figures
    assert serving_replica_sets() == before and versions_answering(cluster.base_url) == old


def test_a_bad_configmap_value_keeps_the_new_pod_unready_with_one_line_while_the_old_pods_serve(cluster):
    """MODEL_PATH naming no file, through server.env: the new pod's server exits with one line (in its log;
    its restarts in the events), the rollout fails at its deadline, the old pods serve throughout."""
    before = serving_replica_sets()
    with LoadRun(cluster.base_url, clients=2, max_seconds=400) as run:
        with pytest.raises(Refused, match="exceeded its progress deadline"):
            cluster.release(settings={"MODEL_PATH": releases.MISSING_MODEL})
        stuck = next(p["metadata"]["name"] for p in pods() if not is_ready(p))  # (the HPA may have added more)
        logs = "".join(kubectl("logs", "-n", NAMESPACE, stuck, "-c", "server", *flag, check=False)
                       for flag in ((), ("--previous",)))  # fmt: skip
        events = kubectl("get", "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={stuck}")
        cluster.rollback()
    summary = run.report.summary()
    print(f"\nbad ConfigMap value: {stuck} never ready; log: {logs.strip()[-300:]}; meanwhile: {summary}")
    line = f"MODEL_PATH: no model at {releases.MISSING_MODEL} (train one with: python model.py train)"
    assert line in logs and "Traceback" not in logs, logs
    assert "Back-off restarting failed container" in events, events
    assert summary["failed"] == 0 and summary["ok"] > 0, summary
    assert serving_replica_sets() == before


def test_rollout_completes_and_serves_through_the_service(cluster, golden):
    status = deployment()["status"]
    assert status.get("readyReplicas", 0) >= 2, status
    assert ready_endpoints() >= 2
    assert mismatches(cluster.predict(golden["inputs"])["predictions"], golden) == []
    print("\n" + kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide"))


def test_restricted_pod_security_rejects_a_privileged_pod(cluster):
    """The namespace enforces the "restricted" standard: the API server refuses the pod itself."""
    image = image_of(ready_pods()[0])
    proc = subprocess.run(
        [kubectl_path(), "run", "privileged-probe", "-n", NAMESPACE, f"--image={image}", "--restart=Never",
         "--privileged", "--dry-run=server", "--command", "--", "true"],
        capture_output=True, text=True, timeout=60, env=cluster_env(),
    )  # fmt: skip
    print(f"\nkubectl run --privileged: {proc.stderr.strip()}")
    assert proc.returncode != 0, proc.stdout
    assert "violates PodSecurity" in proc.stderr and "restricted" in proc.stderr, proc.stderr


@contextlib.contextmanager
def scale_down_window(seconds: int) -> Iterator[int]:
    """The HPA's quiet window before it removes pods, shortened for one test; yields the shipped one."""
    shipped = scenarios.hpa_status()["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]

    def patch(value: int) -> None:
        behavior = {"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": value}}}}
        kubectl("patch", "hpa", DEPLOYMENT, "-n", NAMESPACE, "--type", "merge", "-p", json.dumps(behavior))

    patch(seconds)
    try:
        yield shipped
    finally:
        patch(shipped)


# First of the tests that load the pods: it must start at the HPA's minimum, and the later loads
# would leave extra pods that take a quiet minute to go.
def test_hpa_adds_ready_pods_under_cpu_load_and_removes_them_after(cluster):
    # What is asserted is that the added pods go once the load stops, not the length of the quiet
    # window (hpa.yaml's minute, which notebook 05 shows): the test waits 10 s of it instead.
    with scale_down_window(10) as shipped:
        result = autoscale(cluster.base_url, hold=0)  # holding the peak is nb05's to show
    assert scenarios.hpa_status()["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == shipped
    pods_over_time = list(zip(result["timeline"]["t_s"], result["timeline"]["ready"], strict=True))
    print(
        f"\nHPA: {result['peak_ready']} ready pods (from {result['floor']}), the first added one Ready"
        f" {result['scaled_up_s']} s into the load ({result['load']['requests']} requests,"
        f" {result['load']['failed']} failed); back to {result['floor']} pods {result['scaled_down_after_s']} s"
        f" after the load stopped\nready pods over time (s, pods): {pods_over_time}"
    )
    assert result["scaled_up"], f"no pod beyond {result['floor']} became Ready: {result['timeline']}"
    assert result["scaled_down"], f"not back to {result['floor']} pods: {result['timeline']}"


# What each of Cluster.crash_targets kills in one pod, and what repairs it.
REPAIRED_BY = {
    "server": "the kubelet restarts the container",  # SIGKILL of gunicorn's master, the container's PID 1
    "worker": "gunicorn's master replaces it",  # SIGKILL of one worker
    "pod": "the Deployment creates a new pod",  # deleted with no grace period: its processes die at once
}


@pytest.mark.parametrize("target", REPAIRED_BY)
def test_a_crash_in_one_pod_is_repaired_while_the_other_serves(cluster, target):
    """The same event as every layer's crash, inside one pod; the Service never goes dark."""
    report = scenarios.crash(cluster, target)
    print(f"\n{target} crash under load ({REPAIRED_BY[target]}): {report}")
    assert report["recovered"], f"not back at full strength within {report['observed_s']} s: {REPAIRED_BY[target]}?"
    assert report["longest_stall_s"] < report["observed_s"], report


def test_a_dead_gunicorn_costs_less_than_a_second_of_its_pods_share_every_time(cluster):
    """The pod's nginx answers 502 and closes each connection to a dead gunicorn, so the clients' next requests
    take new connections, which kube-proxy sends to the live pod once the dead one is not Ready: each repetition
    fails fewer requests than that pod served in one second before the kill (harness.podwindow)."""
    steps = podwindow.repeat(cluster, times=2)
    print(f"\npod death, step by step: {steps['summary']}")
    for run in steps["runs"]:
        assert run["pods_serving"] >= 2 and run["failed"] <= run["pod_share_per_s"], run
        assert set(run["failure_kinds"]) <= {"502"}, run  # the sidecar answers; no connection is refused
        assert run["pod_unready_s"] is not None and run["pod_unready_s"] < 10, run


def test_the_crash_targets_are_the_layers_own():
    assert tuple(REPAIRED_BY) == Cluster.crash_targets


def test_deleting_a_pod_gracefully_under_load_loses_no_request(cluster):
    with LoadRun(cluster.base_url, clients=4, max_seconds=120) as run:
        run.warm_up(timeout=30)
        deleted = cluster.delete_pod(wait=True)  # preStop, SIGTERM, graceful exit
        assert wait_until(cluster.at_full_strength, timeout=90, interval=0.5), "no replacement became ready"
        run.settle(50, timeout=30)
    summary = run.report.summary()
    print(f"\ndeleted {deleted} gracefully under load: {summary}")
    assert summary["failed"] == 0, summary


def test_rolling_update_to_model_v2_under_load_loses_no_request(cluster, model_v2, stage4_image):
    image = build_model_image(stage4_image, model_v2)
    try:
        with LoadRun(cluster.base_url, clients=4, max_seconds=300) as run:
            run.warm_up(timeout=30)
            started = time.monotonic()
            cluster.rollout(image)  # import the image, apply with its tag, wait for the rollout
            rollout_s = time.monotonic() - started
            run.settle(50, timeout=30)
        summary = run.report.summary()
        serving = ready_pods()
        new_tag = deployment()["spec"]["template"]["spec"]["containers"][0]["image"]
        answering = versions_answering(cluster.base_url)
    finally:
        cluster.rollout(stage4_image)  # version 1 again, for the tests after this one
        docker("rmi", image, check=False)  # no tag left behind per run
    assert not image_exists(image), f"{image} was left in the engine"
    print(
        f"\nrolling update to v2 in {rollout_s:.1f} s under load: {summary['failed']} failed of"
        f" {summary['requests']}, longest stall {summary['longest_stall_s']} s, slowest request"
        f" {summary['slowest_s']} s, versions answering {summary['versions']}"
    )
    assert summary["failed"] == 0, summary
    assert {"1", "2"} <= summary["versions"].keys(), "both versions answered during the rollout"
    assert len(serving) >= 2 and all(image_of(p) == new_tag for p in serving), [image_of(p) for p in serving]
    # cluster.rollout waited for the last old pod, which serves on through its preStop sleep
    # (that is what keeps the rollout lossless): then every answer came from version 2.
    assert answering == {"2"}, "every pod serves version 2 after the rollout"


def config_map_name() -> str:
    return deployment()["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"]


def test_a_server_env_change_rolls_out_without_rebuilding_the_image(cluster):
    """MAX_ROWS=5 in server.env, `kubectl apply -k`: new pods, same image, and the API enforces the new limit."""
    image = image_of(ready_pods()[0])
    before, config_before = {p["metadata"]["name"] for p in pods()}, config_map_name()
    started = time.monotonic()
    with overlay(cluster, image, {"MAX_ROWS": "5"}):
        rollout_s = time.monotonic() - started
        serving, config_after = ready_pods(), config_map_name()
        envs = [
            kubectl("exec", "-n", NAMESPACE, p["metadata"]["name"], "--", "python", "-c",
                    "import os; print(os.environ['MAX_ROWS'])").strip()
            for p in serving
        ]  # fmt: skip
        five = requests.post(f"{cluster.base_url}/predict", json={"instances": [EXAMPLE_ROW] * 5}, timeout=10)
        six = requests.post(f"{cluster.base_url}/predict", json={"instances": [EXAMPLE_ROW] * 6}, timeout=10)
    print(
        f"\nserver.env change: ConfigMap {config_before} -> {config_after}, same image, rolled out in {rollout_s:.1f} s"
    )
    assert config_after != config_before, "the generated ConfigMap name carries a content hash"
    assert {image_of(p) for p in serving} == {image}, "no new image"
    assert not before & {p["metadata"]["name"] for p in serving}, "every pod was replaced"
    assert envs == ["5"] * len(serving), envs
    assert (five.status_code, six.status_code) == (200, 413), six.text
    assert "the limit is 5" in six.json()["error"]


@pytest.fixture(scope="module")
def failure_pods(cluster, failure_image):
    """The pods serving the failure tests' image (the stage image + /_test/sleep), gunicorn's timeout at 300 s."""
    with overlay(cluster, failure_image, {"GUNICORN_TIMEOUT": "300"}, restore=image_of(ready_pods()[0])):
        yield failure_image


def test_the_liveness_probe_restarts_a_pod_whose_only_worker_hangs(cluster, failure_pods):
    """The worker is held by /_test/sleep inside one pod; gunicorn's own timeout (300 s here) is
    longer than the probe's patience, so it is the liveness probe that restarts the container."""
    pod = ready_pods()[0]
    name, restarts_before = pod["metadata"]["name"], restarts(pod)
    probe = pod["spec"]["containers"][0]["livenessProbe"]
    hold = subprocess.Popen(
        [kubectl_path(), "exec", "-n", NAMESPACE, name, "--", "python", "-c",
         "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/_test/sleep?seconds=280', timeout=300)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cluster_env(),
    )  # fmt: skip
    started = time.monotonic()
    try:
        with LoadRun(cluster.base_url, clients=2, max_seconds=200) as run:
            restarted = wait_until(
                lambda: any(p["metadata"]["name"] == name and restarts(p) > restarts_before for p in pods()),
                timeout=180, interval=1,
            )  # fmt: skip
            took = time.monotonic() - started
            assert wait_until(cluster.at_full_strength, timeout=90, interval=0.5)
    finally:
        hold.kill()
        hold.wait(10)
    summary = run.report.summary()
    events = kubectl("get", "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}")
    print(
        f"\nhung worker in {name}: restarted by the kubelet after {took:.0f} s (probe every"
        f" {probe['periodSeconds']} s, timeout {probe['timeoutSeconds']} s, 3 failures); meanwhile: {summary}"
    )
    assert restarted, f"no restart within 180 s:\n{events}"
    assert "Liveness probe failed" in events, events


def test_a_node_drain_evicts_no_more_than_the_disruption_budget_allows(cluster):
    """One node: an evicted pod cannot come back until the node is uncordoned, so the budget
    (maxUnavailable 1) must stop the drain after one eviction, and the Service keeps answering."""
    node = pods()[0]["spec"]["nodeName"]
    before = {p["metadata"]["name"] for p in ready_pods()}
    try:
        with LoadRun(cluster.base_url, clients=4, max_seconds=120) as run:
            run.warm_up(timeout=30)
            drain = subprocess.run(
                [kubectl_path(), "drain", node, "--pod-selector=app.kubernetes.io/name=iris-serving",
                 "--delete-emptydir-data", "--ignore-daemonsets", "--timeout=15s"],
                capture_output=True, text=True, timeout=120, env=cluster_env(),
            )  # fmt: skip
            remaining = {p["metadata"]["name"] for p in ready_pods()}
    finally:
        kubectl("uncordon", node)
    evicted = before - remaining
    summary = run.report.summary()
    print(f"\ndrain of {node}: evicted {sorted(evicted)} of {sorted(before)}; load meanwhile: {summary}")
    assert drain.returncode != 0, "the drain should have been stopped by the budget"
    assert "disruption budget" in drain.stdout + drain.stderr, drain.stdout + drain.stderr
    assert len(evicted) == 1, (before, remaining)
    assert summary["failed"] == 0, summary
    assert wait_until(cluster.at_full_strength, timeout=120, interval=1), "pods did not come back after uncordon"
