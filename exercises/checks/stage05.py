"""Stage 05's checks: the folder's manifests applied to the cluster with the images already deployed, verified
through the Service, and the cluster put back afterwards (exercises.applied)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from exercises.applied import CLUSTER_URL
from exercises.applied import applied
from exercises.applied import deployed_images
from exercises.applied import live
from exercises.applied import render
from exercises.applied import require_cluster
from exercises.applied import rollout
from exercises.checks.stage04 import Once
from exercises.checks.stage04 import built_image
from exercises.common import Fail
from exercises.common import answers
from exercises.common import post
from exercises.common import rows
from exercises.common import serving
from exercises.common import train
from harness import decide
from harness import releases
from harness.core import LayerError
from harness.core import wait_until
from harness.kube import wait_old_pods_gone
from harness.load import LoadRun

ROW_LIMIT = 100  # 05.1: MAX_ROWS asked for in server.env: one row more through the Service gets a 413
SETTLED_413S = 5  # 05.1: this many 413s in a row through the Service: no old pod answers any more
SETTLE_S = 60  # 05.1: how long after the rollout every pod may take to refuse one row over the limit
LOAD_CLIENTS = 2  # 05.2, 05.3: clients sending requests in a loop throughout the release
LOAD_LIMIT_S = 300  # 05.2: the load stops after this long at the latest, finished rollout or not
OBSERVE_S = 3  # 05.3: how long the bad release at stage 04 runs under load before it is rolled back
METRICS_S = 120  # 05.5: how long the HPA may take to report a current value for cpu and memory
IDLE_REPLICAS = 2  # 05.5: the most pods the HPA may want at idle (the Deployment's replicas)


def check_05_1(folder: Path) -> None:
    """A config change without a rebuild: MAX_ROWS=ROW_LIMIT (100) in server.env reaches the pods, same image."""
    require_cluster()
    configs = [o for o in render(folder) if o["kind"] == "ConfigMap" and "MAX_ROWS" in o.get("data", {})]
    values = ", ".join(c["data"]["MAX_ROWS"] for c in configs) or "nothing"
    if values != str(ROW_LIMIT):  # no need to ask the cluster yet
        raise Fail(f"MAX_ROWS={values} in the ConfigMap of your k8s/", f"MAX_ROWS={ROW_LIMIT} in server.env")
    with applied(folder) as state:
        rollout()
        images = deployed_images(live("deployment"))
        if images != state["images"]:
            raise Fail(f"images {images}", f"the images already deployed, {state['images']}: no rebuild")
        statuses: list[int] = []

        def settled() -> bool:  # SETTLED_413S in a row: no old pod answers any more
            try:
                statuses.append(post(f"{CLUSTER_URL}/predict", rows(ROW_LIMIT + 1)).status_code)
            except Fail:
                statuses.append(0)  # no answer: counts as not settled
            return statuses[-SETTLED_413S:] == [413] * SETTLED_413S

        if not wait_until(settled, SETTLE_S, interval=0.2):
            raise Fail(
                f"HTTP {statuses[-1]} for {ROW_LIMIT + 1} rows through the Service",
                f"413 from every pod: MAX_ROWS={ROW_LIMIT}",
            )
        if post(f"{CLUSTER_URL}/predict", rows(ROW_LIMIT)).status_code != 200:
            raise Fail(f"{ROW_LIMIT} rows refused", f"200 for {ROW_LIMIT} rows")


def check_05_2(folder: Path) -> None:
    """Model version 2 rolled out with no rebuild (an init container trains it) and zero failed requests."""
    load = LoadRun(CLUSTER_URL, clients=LOAD_CLIENTS, max_seconds=LOAD_LIMIT_S, max_requests=200_000)
    with applied(folder, load=load):
        rollout()
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


def check_05_5(folder: Path) -> None:
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

        if not wait_until(measured, METRICS_S, interval=3):
            raise Fail(
                f"the HPA's current metrics {current.get('currentMetrics')} after {METRICS_S} s",
                "a current value for cpu and memory (is metrics-server running? kubectl top pods)",
            )
        if current.get("desiredReplicas", 0) > IDLE_REPLICAS:
            raise Fail(
                f"{current['desiredReplicas']} pods wanted at idle",
                f"at most {IDLE_REPLICAS}: a memory target idle pods stay under",
            )


def check_05_3(folder: Path) -> None:
    """Question: a model that cannot load, released under load at stage 04 and at stage 05. Did requests fail at
    each, which field of the Deployment marks the stuck rollout failed, and which command goes back?

    Stage 04's answer is measured (the folder's image, the same release); stage 05's follows from the folder's
    Deployment (a readiness probe, and maxUnavailable 0: the old pods serve until a new one is ready), which
    tests/test_kubernetes_cluster.py measures on a cluster.
    """
    given = answers(folder, "05.3", ("failed_at_04", "failed_at_05", "deadline_field", "way_back"))
    (deployment,) = [o for o in render(folder) if o["kind"] == "Deployment"]
    spec = deployment["spec"]
    field = str(given["deadline_field"]).strip().rsplit(".", 1)[-1]  # spec.progressDeadlineSeconds is fine too
    if field != "progressDeadlineSeconds":  # the only one: any other field of the spec answered this before
        where = "a field of your Deployment's spec, but" if field in spec else "not a field of your Deployment's spec,"
        raise Fail(f"deadline_field = {given['deadline_field']!r}, {where} not the deadline",
                   "the field after which `kubectl rollout status` reports the rollout failed")  # fmt: skip
    gated = spec["strategy"].get("rollingUpdate", {}).get("maxUnavailable") == 0 and all(
        "readinessProbe" in c for c in spec["template"]["spec"]["containers"]
    )
    if given["failed_at_05"] is not (not gated):
        raise Fail(f"failed_at_05 = {given['failed_at_05']!r}", "what `harness.releases broken --stage 5` printed")
    way_back = " ".join(str(given["way_back"]).split())
    if "rollout undo" not in way_back or "iris" not in way_back:
        raise Fail(f"way_back = {given['way_back']!r}", "the kubectl command that restores the previous ReplicaSet")
    with built_image(folder, "05.3") as tag, tempfile.TemporaryDirectory(prefix="ex-05.3-") as tmp:
        with serving(Once(train(folder, Path(tmp) / "v1" / "iris.joblib"), image=tag, folder=folder)) as layer:
            release = releases.bad_release(layer, "broken", Path(tmp), clients=LOAD_CLIENTS, observe=OBSERVE_S)
            failed = release["failed"] > 0
    if given["failed_at_04"] is not failed:
        raise Fail(f"failed_at_04 = {given['failed_at_04']!r}", "what `harness.releases broken --stage 4` printed")


#: 05.4's service, as the exercise describes it (harness.decide's terms)
CLINIC = decide.Situation(
    "a clinic's triage API: no failed request in the weekly model release, a crash heals without a person, "
    "300 requests/s at the peak, a steady load, and the hospital's platform team runs a cluster",
    failed_ok=False, max_stall_s=2.0, recover_alone=True, peak_rps=300, load_varies=False, cluster_team=True,
)  # fmt: skip


def check_05_4(folder: Path) -> None:
    """Question: which layer should the clinic run, and which constraint rules out each cheaper layer, according
    to the committed figures (results/scorecard.json, read by harness.decide as the reader's run reads them)?"""
    given = answers(folder, "05.4", ("layer", "rules_out_03", "rules_out_04"))
    decision = decide.decide(CLINIC, decide.load())
    by_number = {name.split()[0]: name for name in decision["checks"]}  # "05" -> "05 Kubernetes (local)"
    chosen = by_number.get(str(given["layer"]).strip().split()[0].zfill(2))
    if chosen is None:
        raise Fail(f"layer = {given['layer']!r}", f"one of {', '.join(by_number)}")
    unmet = [c for c in decision["checks"][chosen] if not c["met"]]
    if unmet:
        raise Fail(f"layer = {given['layer']!r} fails \"{unmet[0]['what']}\" ({unmet[0]['because']})",
                   "a layer that meets every constraint")  # fmt: skip
    if chosen != decision["answer"]:
        raise Fail(f"layer = {given['layer']!r}", f"the cheapest layer that meets them: {decision['answer']} does")
    for number in ("03", "04"):
        if number not in by_number or by_number[number] == chosen:
            continue
        said = " ".join(str(given[f"rules_out_{number}"]).lower().split())
        fails = [c["what"] for c in decision["checks"][by_number[number]] if not c["met"]]
        if said not in [f.lower() for f in fails]:
            raise Fail(f"rules_out_{number} = {given[f'rules_out_{number}']!r}",
                       f"one of the constraints stage {number} fails: `python -m harness.decide` with the clinic's "
                       "answers lists them")  # fmt: skip
