"""Stage 05's checks: the folder's manifests applied to the cluster with the images already deployed, verified
through the Service, and the cluster put back afterwards (exercises.applied)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exercises.applied import CLUSTER_URL
from exercises.applied import applied
from exercises.applied import deployed_images
from exercises.applied import live
from exercises.applied import render
from exercises.applied import require_cluster
from exercises.applied import rollout
from exercises.common import Fail
from exercises.common import post
from exercises.common import rows
from harness.core import LayerError
from harness.core import wait_until
from harness.kube import wait_old_pods_gone
from harness.load import LoadRun


def check_05_1(folder: Path) -> None:
    """A config change without a rebuild: MAX_ROWS=100 in server.env reaches the pods, same image."""
    require_cluster()
    configs = [o for o in render(folder) if o["kind"] == "ConfigMap" and "MAX_ROWS" in o.get("data", {})]
    values = ", ".join(c["data"]["MAX_ROWS"] for c in configs) or "nothing"
    if values != "100":  # no need to ask the cluster yet
        raise Fail(f"MAX_ROWS={values} in the ConfigMap of your k8s/", "MAX_ROWS=100 in server.env")
    with applied(folder) as state:
        rollout()
        images = deployed_images(live("deployment"))
        if images != state["images"]:
            raise Fail(f"images {images}", f"the images already deployed, {state['images']}: no rebuild")
        statuses: list[int] = []

        def settled() -> bool:  # five 413s in a row: no old pod answers any more
            try:
                statuses.append(post(f"{CLUSTER_URL}/predict", rows(101)).status_code)
            except Fail:
                statuses.append(0)  # no answer: counts as not settled
            return statuses[-5:] == [413] * 5

        if not wait_until(settled, 60, interval=0.2):
            raise Fail(f"HTTP {statuses[-1]} for 101 rows through the Service", "413 from every pod: MAX_ROWS=100")
        if post(f"{CLUSTER_URL}/predict", rows(100)).status_code != 200:
            raise Fail("100 rows refused", "200 for 100 rows")


def check_05_2(folder: Path) -> None:
    """Model version 2 rolled out with no rebuild (an init container trains it) and zero failed requests."""
    load = LoadRun(CLUSTER_URL, clients=2, max_seconds=300, max_requests=200_000)
    with applied(folder, load=load):
        rollout(240)
        try:  # the last old pod serves on through its preStop sleep: its requests count too
            wait_old_pods_gone()
        except LayerError as exc:
            raise Fail(str(exc), "the old pods gone after the rollout") from None
        versions = {post(f"{CLUSTER_URL}/predict", rows(1)).json().get("model_version") for _ in range(10)}
    report = load.report
    if report.failed:
        raise Fail(f"{report.failed} of {report.total} requests failing in the rollout ({report.failure_kinds()})", "0")
    if versions != {"2"}:
        raise Fail(f"model versions {sorted(versions)} after the rollout", "every pod answering version 2")


def check_05_3(folder: Path) -> None:
    """The HPA scales on memory as well as CPU, and reads a current value for both."""
    hpa = next((o for o in render(folder) if o["kind"] == "HorizontalPodAutoscaler"), None)
    metrics = {m.get("resource", {}).get("name") for m in (hpa or {}).get("spec", {}).get("metrics", [])}
    if metrics != {"cpu", "memory"}:
        raise Fail(f"the HPA in your k8s/ scaling on {sorted(m for m in metrics if m)}", "cpu and memory")
    with applied(folder):
        rollout()
        current: dict[str, Any] = {}

        def measured() -> bool:
            status = live("hpa").get("status", {})
            current.update(status)
            names = {m.get("resource", {}).get("name") for m in status.get("currentMetrics") or []}
            return {"cpu", "memory"} <= names

        if not wait_until(measured, 120, interval=3):
            raise Fail(
                f"the HPA's current metrics {current.get('currentMetrics')} after 120 s",
                "a current value for cpu and memory (is metrics-server running? kubectl top pods)",
            )
        if current.get("desiredReplicas", 0) > 2:
            raise Fail(f"{current['desiredReplicas']} pods wanted at idle", "2: a memory target idle pods stay under")
