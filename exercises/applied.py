"""Stage 05's checks on the cluster: a learner's manifests rendered with the images already deployed, applied,
and the cluster put back as the check found it.

The check never builds: every container keeps the image stage 05 runs now
(`make stage-5` deployed it). Putting back: the Deployment rolled back to the
revision it had, the HPA given its spec again, ConfigMaps the apply created deleted.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exercises.common import CannotCheck
from exercises.common import Fail
from exercises.common import last_line
from harness import manifests
from harness.core import LOOPBACK
from harness.core import LayerError
from harness.kube import DEPLOYMENT
from harness.kube import HOST_PORT
from harness.kube import NAMESPACE
from harness.kube import cluster_reachable
from harness.kube import flavour
from harness.kube import kubectl
from harness.load import LoadRun

# Stage 05 answers through the Service on the cluster's own port (kind's port mapping, or the local
# cluster's node port), not on one the check chooses.
CLUSTER_URL = f"http://{LOOPBACK}:{HOST_PORT}"
REVISION = "deployment.kubernetes.io/revision"
ROLLOUT_S = 240  # 05.1, 05.2, 05.5: how long the learner's rollout may take to finish (a longer one is a FAIL)


def require_cluster() -> None:
    """CannotCheck, with the reason, when no cluster answers."""
    reachable, reason = cluster_reachable()
    if not reachable:
        raise CannotCheck(f"needs a Kubernetes cluster: {reason}")


def render(folder: Path, images: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The folder's k8s overlay for this cluster (harness.kube.flavour), each container's image from ``images``.

    ``images`` maps container names to the images already deployed (server, and
    proxy, the nginx sidecar). An init container that uses the server's image
    (iris-serving) gets the deployed server image too.
    """
    overlay = flavour()
    if not (folder / "k8s" / overlay).is_dir():
        raise Fail(f"no {folder / 'k8s' / overlay}", "the stage-05 manifests")
    try:
        objects = manifests.render(overlay, k8s=folder / "k8s")
    except LayerError as exc:
        raise Fail(f"kustomize failing: {last_line(str(exc))}", "the overlay to render") from None
    for obj in objects if images else []:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            c["image"] = images.get(c["name"], c.get("image"))
        for c in spec.get("initContainers", []):
            if c.get("image", "").split("@")[0].rsplit(":", 1)[0].endswith("iris-serving") and "server" in images:
                c["image"] = images["server"]
    return objects


def deployed_images(deployment: dict[str, Any]) -> dict[str, str]:
    """Container name -> image of a Deployment as the cluster runs it."""
    return {c["name"]: c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}


def live(kind: str, name: str = DEPLOYMENT) -> dict[str, Any]:
    """One object of the namespace as the API server has it now."""
    return json.loads(kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json", timeout=30))


def configmaps() -> set[str]:
    """The names of the namespace's ConfigMaps now."""
    return set(kubectl("get", "configmaps", "-n", NAMESPACE, "-o", "name").split())


def rollout(timeout: int = ROLLOUT_S) -> None:
    """Wait for the Deployment's rollout, bounded; a stuck rollout is a Fail."""
    status = ("rollout", "status", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE, f"--timeout={timeout}s")
    try:
        kubectl(*status, timeout=timeout + 30)
    except LayerError as exc:
        raise Fail(
            f"the rollout not finishing: {last_line(str(exc))}", f"a finished rollout within {timeout} s"
        ) from None


@contextlib.contextmanager
def applied(folder: Path, load: LoadRun | None = None) -> Iterator[dict[str, Any]]:
    """Apply the folder's manifests with the images already deployed; put the cluster back afterwards.

    ``load``, when given, starts just before the apply and stops when the body
    ends, before the cluster is put back (whose own rollout is not the learner's).
    Yields the images found deployed and the objects applied.
    """
    require_cluster()
    try:
        deployment = live("deployment")
    except LayerError:
        raise Fail(
            f"no deployment/{DEPLOYMENT} in namespace {NAMESPACE}", "stage 05 deployed: run make stage-5"
        ) from None
    images = deployed_images(deployment)
    objects = render(folder, images)
    problems = manifests.validate(objects)
    if problems:
        raise Fail(f"an invalid manifest ({problems[0]})", "manifests the API server accepts")
    revision = deployment["metadata"]["annotations"].get(REVISION)
    with contextlib.ExitStack() as stack:
        stack.callback(put_back, revision, live("hpa")["spec"], configmaps())
        if load:
            stack.enter_context(load)  # exits first: the load stops before the cluster is put back
        try:
            kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        except LayerError as exc:
            raise Fail(f"kubectl apply refusing your manifests: {last_line(str(exc))}", "them applied") from None
        yield {"images": images, "objects": objects}


def put_back(revision: str | None, hpa_spec: dict[str, Any], found: set[str]) -> None:
    """Roll the Deployment back to ``revision``, give the HPA ``hpa_spec`` again, delete ConfigMaps not in ``found``."""
    if revision and live("deployment")["metadata"]["annotations"].get(REVISION) != revision:
        kubectl(
            "rollout", "undo", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE, f"--to-revision={revision}", check=False
        )
        with contextlib.suppress(Fail):
            rollout()
    if live("hpa")["spec"] != hpa_spec:
        patch = json.dumps({"spec": hpa_spec})
        kubectl("patch", "hpa", DEPLOYMENT, "-n", NAMESPACE, "--type=merge", "-p", patch, check=False)
    for extra in configmaps() - found:
        kubectl("delete", "-n", NAMESPACE, extra, "--ignore-not-found", check=False)
