"""Stage 05 as a Layer: the stage-04 image as a Deployment on a real cluster, and what the cluster itself costs.

``Cluster`` drives the cluster through the script `make stage-5` runs:
05_kubernetes/kind.sh on kind, or scripts/local-cluster/cluster.sh on the
local cluster (harness.kube says which and how to reach it). The manifests
read offline are harness.manifests; the autoscaling experiment is in
harness.scenarios with the others.

    python -m harness.cluster image   # build (or reuse) the stage-04 image, print its tag

(Past 400 lines: the Cluster layer keeps, next to it, the measurements that need its internals
(the control plane's cost, the images it bakes a model into); the scaling experiments went to
harness.capacity, the manifests' offline checks to harness.manifests.)
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
from pathlib import Path
from typing import Any

import yaml

from harness import logreader
from harness import podwindow
from harness.container import build_image
from harness.container import docker
from harness.container import image_exists
from harness.container import image_self_contained
from harness.container import image_size
from harness.container import print_built
from harness.core import Crashed
from harness.core import Layer
from harness.core import LayerError
from harness.core import Refused
from harness.core import children
from harness.core import cpu_seconds
from harness.core import damage
from harness.core import kill
from harness.core import model_module
from harness.core import process_memory
from harness.core import procfs
from harness.core import signal_gunicorn
from harness.core import train_model
from harness.core import wait_ready
from harness.kube import CLUSTER_NAME
from harness.kube import DEPLOYMENT
from harness.kube import HOST_PORT
from harness.kube import K8S
from harness.kube import KIND_SCRIPT
from harness.kube import LOCAL_SCRIPT
from harness.kube import NAMESPACE
from harness.kube import cluster_env
from harness.kube import cluster_reachable
from harness.kube import container_pids
from harness.kube import deployed_image
from harness.kube import flavour
from harness.kube import is_ready
from harness.kube import kubectl
from harness.kube import pods
from harness.kube import ready_endpoints
from harness.kube import restarts
from harness.kube import wait_old_pods_gone
from harness.logreader import parse_time
from harness.manifests import config_lines

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
                if procfs(pid).exists():
                    found[name] = pid
        return found
    for proc in procfs().glob("[0-9]*"):  # kind: the node's processes are visible from the host
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


def build_model_image(base_image: str, model: Path, tag: str | None = None) -> str:
    """A new image: ``base_image`` with ``model`` (and its metadata) in place of the baked-in one.

    The model travels inside an immutable image, so an upgrade is a rolling
    update to a new tag. Where the model goes, the image's own model.py says.
    The tag (by default) is a hash of the base image's tag and the two files:
    the same model on the same image is built once.
    """
    if tag is None:
        digest = hashlib.sha256(base_image.encode())
        for path in (model, model_module().metadata_path(model)):
            digest.update(Path(path).read_bytes())
        tag = f"iris-serving:model-{digest.hexdigest()[:12]}"
    if image_exists(tag):
        return tag
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


#: pod events that say nothing about the pod's health: the local cluster runs no cluster DNS, so the kubelet
#: warns about every new pod (scripts/local-cluster)
UNRELATED = {"MissingClusterDNS"}


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

    stage, name = 5, "05 Kubernetes"  # on start: "05 Kubernetes (kind)" or "(local)"
    upgrade_mechanism = "new image tag, rolling update (maxSurge 1, maxUnavailable 0)"
    release_mechanism = "kubectl apply -k (new image, or server.env): a rolling update that waits for readiness"
    crash_targets = ("server", "worker", "pod")
    poll_interval = 0.5  # each look is a few API calls
    behind_proxy = True  # nginx is a sidecar in every pod (k8s/base/deployment.yaml)
    path = "nginx sidecar, NodePort Service"
    needs = "cluster"
    shared = True  # one deployment serves a test session: the tests' ``cluster`` fixture
    window = {
        "logs": "`kubectl -n iris-serving logs -l app.kubernetes.io/name=iris-serving -c server --prefix`: every "
        "pod's JSON lines, each prefixed with its pod; a deleted pod's logs go with it",
        "health": "probes: a failing readiness probe takes the pod out of the Service, a failing liveness probe "
        "restarts its container; `kubectl get events` and `kubectl describe pod` say which and why",
        "metrics": "metrics-server: `kubectl top pods` (CPU and memory, what the autoscaler reads); each pod's "
        "/metrics for a Prometheus to scrape (none is installed here)",
    }

    configuration = ("k8s/base/*.yaml", "k8s/base/*.env")
    concepts = (
        "image (loaded into the node: no registry)", "Pod", "Deployment and its ReplicaSets",
        "rolling update (maxSurge, maxUnavailable)", "Service (NodePort) and its EndpointSlices",
        "startup, readiness and liveness probes", "ConfigMap (configMapGenerator)", "kustomize", "Namespace",
        "NetworkPolicy", "PodDisruptionBudget", "HorizontalPodAutoscaler and metrics-server",
        "resource requests and limits", "securityContext", "preStop and the grace period", "sidecar container",
        "events", "node", "kubectl",
    )  # fmt: skip

    def __init__(self, model_path: Path | None = None, *, image: str | None = None):
        """``model_path`` None serves the model baked into ``image`` (default: the stage-04 image); a path
        is baked into an image of its own on start. The port is the Service's, 8000; the app and its
        settings are the image's and k8s/'s (server.env)."""
        super().__init__(model_path, HOST_PORT)
        self.image = image or os.environ.get("IMAGE", "")
        self.flavour = flavour()
        self.name = f"05 Kubernetes ({self.flavour})"
        self._found = ""  # the image stage 05 ran before start, "" when it was not deployed
        self._images: list[str] = []  # the images start and upgrade built

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return cluster_reachable()

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
            self.image = self._built(build_model_image(self.image, self.model_path))
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
        for tag in self._images:  # what start and upgrade built: the engine keeps no tag per run
            if tag != self._found:
                docker("rmi", tag, check=False)
        self._images = []

    def _built(self, tag: str) -> str:
        """Remember an image this layer built (``stop`` removes it); return its tag."""
        self._images.append(tag)
        return tag

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

    def crash(self, target: str = "server", sig: int = signal.SIGKILL) -> str:
        """In the oldest pod: SIGKILL of gunicorn's master (the container's PID 1, "server") or of one
        worker ("worker"), or the whole pod deleted with no grace period ("pod")."""
        self._check_target(target)
        pod, pids = self.crash_victim()
        name, pid1 = pod["metadata"]["name"], pids[0]
        workers = children(pid1)
        self.crashed = Crashed(target, workers, pod=name, restarts=restarts(pod))
        if target == "pod":
            kubectl("delete", "pod", "-n", NAMESPACE, name, "--grace-period=0", "--force", "--wait=false")
            return f"kubectl delete pod -n {NAMESPACE} {name} --grace-period=0 --force"
        self.signalled, role = signal_gunicorn(pid1, workers, target, sig)
        return f"{kill(sig)} {' '.join(map(str, self.signalled))}    # host PIDs of gunicorn's {role} in {name}"

    def crash_loop(self) -> str:
        """The model file lives in the image here, so a damaged one arrives the way any model does: in a new
        image, rolled out (``release``). The new pod's server exits at start, again and again; the rolling
        update stops at its progress deadline (Refused) and the old pods serve on. ``repair`` rolls back."""
        damaged = train_model(Path(tempfile.mkdtemp(prefix="crash-loop-")), version="3")
        damage(damaged)
        return self.release(model=damaged)

    def repair(self) -> str:
        return self.rollback()

    def operator_signals(self, since: float) -> list[dict[str, Any]]:
        """The namespace's Warning events about pods since ``since`` (a probe failing, a container backing off)
        and every pod's server log lines at WARNING or worse (the previous container's too, where it restarted)."""
        found = []
        events = json.loads(kubectl("get", "events", "-n", NAMESPACE, "-o", "json", check=False) or "{}")
        for event in events.get("items", []):
            at = parse_time(event.get("eventTime") or event.get("lastTimestamp") or "")
            about_a_pod = event["involvedObject"].get("kind") == "Pod" and event.get("reason") not in UNRELATED
            if event.get("type") == "Warning" and about_a_pod and at is not None and at >= int(since):
                found.append({"at_s": round(max(at - since, 0.0), 3),
                              "source": f"kubectl get events ({event['involvedObject'].get('name', '?')})",
                              "text": f"{event.get('reason')}: {event.get('message', '')}".strip()})  # fmt: skip
        after = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
        for pod in pods():
            name = pod["metadata"]["name"]
            for previous in ([], ["--previous"]) if restarts(pod) else ([],):
                text = kubectl("logs", "-n", NAMESPACE, name, "-c", "server", f"--since-time={after}", *previous,
                               check=False)  # fmt: skip
                found += logreader.signals(text, since, source=f"kubectl logs {name}")
        return found

    def crash_victim(self, timeout: float = 30.0) -> tuple[dict[str, Any], list[int]]:
        """The serving pod restarted least (the oldest of those) and its server container's host PIDs, once the
        API reports the container that runs now (a container just restarted can be reported before its new ID
        is). Least restarted: the kubelet delays each further restart of a container (CrashLoopBackOff)."""
        deadline = time.monotonic() + timeout
        while True:
            pod = min(self.serving_pods(), key=restarts)  # serving_pods is oldest first; min keeps the first
            pids = container_pids(pod)
            if pids:
                return pod, pids
            if time.monotonic() > deadline:
                raise LayerError(f"{self.name}: pod {pod['metadata']['name']} has no running server container")
            time.sleep(0.2)

    def recovered(self) -> bool:
        """The pod replaced, its container restarted or its worker replaced, and the Service at full strength."""
        crashed = self.crashed
        pod = next((p for p in pods() if p["metadata"]["name"] == crashed.pod), None)
        if crashed.target == "pod":
            replaced = pod is None
        elif crashed.target == "server":
            replaced = pod is None or restarts(pod) > crashed.restarts
        else:
            pids = container_pids(pod) if pod else []
            replaced = bool(pids) and bool(crashed.fresh(children(pids[0])))
        return replaced and self.at_full_strength()

    def crash_steps(self) -> dict[str, Any]:
        """A pod's death five times: when the pod turned unready, when kube-proxy's rules forgot it, and the
        requests that failed meanwhile (harness.podwindow)."""
        return podwindow.repeat(self)

    def scale(self, replicas: int | None) -> str:
        """Raise the autoscaler's floor to ``replicas`` (None: the manifests' floor again). With an HPA, that is
        how capacity is added: `kubectl scale` would be undone by the HPA at its next look."""
        hpa = yaml.safe_load((K8S / "base" / "hpa.yaml").read_text())["spec"]
        floor = replicas or hpa["minReplicas"]
        patch = json.dumps({"spec": {"minReplicas": floor, "maxReplicas": max(floor, hpa["maxReplicas"])}})
        kubectl("patch", "hpa", DEPLOYMENT, "-n", NAMESPACE, "--type=merge", "--patch", patch)
        return f"kubectl patch hpa {DEPLOYMENT} -n {NAMESPACE} --type=merge --patch '{patch}'"

    def serving_instances(self) -> list[str]:
        return [p["metadata"]["name"] for p in self.serving_pods()]

    def instance_log(self, instance: str) -> str:
        return kubectl("logs", "-n", NAMESPACE, instance, "-c", "server", check=False)

    def delete_pod(self, wait: bool = True) -> str:
        """Delete one pod gracefully (preStop, SIGTERM, grace period); return its name."""
        name = self.serving_pods()[0]["metadata"]["name"]
        kubectl("delete", "pod", "-n", NAMESPACE, name, f"--wait={str(wait).lower()}", timeout=120)
        return name

    def upgrade(self, new_model: Path) -> str:
        image = self._built(build_model_image(self.image, Path(new_model)))
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

    def release(self, model: Path | None = None, settings: dict[str, str] | None = None) -> str:
        """A new image with ``model`` and/or ``settings`` merged into server.env, applied as a reader would
        (`kubectl apply -k`), then `kubectl rollout status`: Refused when the rollout stops at its
        progress deadline because no new pod became ready (the old pods serve on)."""
        image = self._built(build_model_image(self.image, Path(model))) if model else self.deployed("server")
        self.previous = True  # `kubectl rollout undo` knows what ran before
        command = (f"docker build (FROM {self.image} + the new model) -t {image}; " if model else "") + (
            f"server.env += {' '.join(f'{k}={v}' for k, v in (settings or {}).items())}; " if settings else ""
        )
        self.apply(image, settings, command=command + "kubectl apply -k ...; kubectl rollout status ...")
        return command + "kubectl apply -k ...; kubectl rollout status deployment/iris -n iris-serving"

    def rollback(self) -> str:
        """`kubectl rollout undo`: the Deployment's previous pod template (image, ConfigMap name) again."""
        if self.previous is None:
            return ""
        self.previous = None
        kubectl("rollout", "undo", "deployment", DEPLOYMENT, "-n", NAMESPACE)
        self.rolled_out()
        return f"kubectl rollout undo deployment/{DEPLOYMENT} -n {NAMESPACE}"

    def deployed(self, container: str) -> str:
        """The image the Deployment's ``container`` ("server" or "proxy") runs now."""
        spec = json.loads(kubectl("get", "deployment", DEPLOYMENT, "-n", NAMESPACE, "-o", "json"))
        return next(c["image"] for c in spec["spec"]["template"]["spec"]["containers"] if c["name"] == container)

    def apply(self, image: str, settings: dict[str, str] | None = None, command: str = "kubectl apply -k") -> None:
        """Apply stage 05 with ``image`` and ``settings`` merged into server.env, and wait for the rollout.

        What a reader does to change a setting: edit server.env and `kubectl
        apply -k`. The configMapGenerator gives the ConfigMap a new name (a
        hash of its content), so the pod template changes and the pods roll.
        The sidecar keeps its image. Refused (with ``command``) when the
        rollout exceeds its progress deadline.
        """
        self.load(image)
        proxy = self.deployed("proxy")
        with tempfile.TemporaryDirectory() as folder:
            lines = [f"resources: [{os.path.relpath(K8S / self.flavour, folder)}]", "images:"]
            for name, tag in (("iris-serving", image), ("iris-proxy", proxy)):
                lines += [f"  - name: {name}", f"    newTag: {tag.split(':', 1)[1]}"]
            if settings:
                Path(folder, "settings.env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
                lines += [
                    "configMapGenerator:",
                    "  - name: iris-config",
                    "    behavior: merge",
                    "    envs: [settings.env]",
                ]
            Path(folder, "kustomization.yaml").write_text("\n".join(lines) + "\n")
            kubectl("apply", "-k", folder, timeout=60)
        try:
            self.rolled_out()
        except LayerError as exc:
            if "exceeded its progress deadline" in str(exc):
                raise Refused(f"kubectl rollout status: {str(exc).rsplit('error: ', 1)[-1]}", command) from None
            raise

    @staticmethod
    def rolled_out() -> None:
        """`kubectl rollout status` (it fails at the Deployment's progress deadline), then wait for the old
        pods to finish their preStop sleep and go."""
        kubectl("rollout", "status", "deployment", DEPLOYMENT, "-n", NAMESPACE, "--timeout=240s", timeout=270)
        wait_old_pods_gone()

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
