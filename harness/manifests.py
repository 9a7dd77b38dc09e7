"""Stage 05's manifests read offline, the way the cluster reads them: rendered by the kustomize built into kubectl.

``docker_run_args`` turns the Deployment's container spec into the equivalent
``docker run``, so the stage-04 image can be checked against the manifest
without a cluster; ``run_probe`` and ``terminate_like_kubelet`` do what the
kubelet would do to it.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
import yaml

from harness.container import docker
from harness.core import LOOPBACK
from harness.core import STAGES
from harness.core import LayerError
from harness.core import free_port
from harness.core import wait_ready
from harness.diff import setting_lines
from harness.kube import K8S
from harness.kube import KUBERNETES_VERSION
from harness.kube import kubectl


def render(overlay: str = "kind", k8s: Path = K8S) -> list[dict[str, Any]]:
    """Every object of ``k8s/<overlay>`` as kustomize renders it, in order (``k8s``: stage 05's, or a copy's)."""
    return [doc for doc in yaml.safe_load_all(kubectl("kustomize", str(k8s / overlay))) if doc]


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
    return {str(p.relative_to(STAGES[5])): setting_lines(p) for p in files}


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
