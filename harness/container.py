"""Stage 04: the serving layer as a Docker container, behind the same Layer interface.

The image is built from 04_container/ exactly as `make stage-4` builds it and
tagged by the content of the files it is built from, so an unchanged stage is
never rebuilt. A test model is bind-mounted read-only and selected with
MODEL_PATH, so one image serves version 1 or version 2.

    python -m harness.container check          # is a Docker engine answering? (one line)
    python -m harness.container tag            # the image tag for the current files
    python -m harness.container predict PORT   # wait until ready, print one prediction

(Past 400 lines: the Container layer and the image it runs, built and tagged here: the proxy,
Compose and the cluster layers reuse both, so they stay together.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from harness.core import APP
from harness.core import HOST_PATH
from harness.core import LOOPBACK
from harness.core import ROOT
from harness.core import STAGES
from harness.core import Crashed
from harness.core import Layer
from harness.core import LayerError
from harness.core import children
from harness.core import kill
from harness.core import namespace_pid
from harness.core import process_memory
from harness.core import procfs
from harness.core import signal_gunicorn
from harness.core import wait_ready
from harness.golden import load_golden
from harness.logreader import parse_time

IMAGE_NAME = "iris-serving"
BASE_IMAGE = "python:3.11-slim"
PROXY_BASE_IMAGE = "python:3.11-slim-bookworm"  # proxy.Dockerfile pins Debian 12 packages
# What the Dockerfile copies; the tag is a hash of these, so it changes exactly
# when the image would.
IMAGE_INPUTS = (
    "Dockerfile", ".dockerignore", "requirements.txt", "model.py",
    "app.py", "inputs.py", "logs.py", "metrics.py", "v2.py", "openapi.json", "gunicorn.conf.py",
)  # fmt: skip
CONTAINER_PORT = 8000
MODEL_DIR = "/models"  # where a bind-mounted artifact appears inside the container
BASE_IMAGE_SCRIPT = ROOT / "scripts" / "build_base_image.sh"


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    """Run one docker CLI command; a failure raises LayerError with docker's own message."""
    try:
        result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise LayerError("the docker command is not installed") from None
    except subprocess.TimeoutExpired:
        raise LayerError(f"docker {args[0]} did not finish within {timeout:.0f} s") from None
    if check and result.returncode != 0:
        raise LayerError(f"docker {' '.join(args[:2])} failed: {(result.stderr or result.stdout).strip()[-2000:]}")
    return result


def docker_available() -> tuple[bool, str]:
    """Whether a Docker engine answers; the reason is one readable line either way (Container.available)."""
    try:
        result = docker("version", "--format", "{{.Server.Version}}", timeout=15, check=False)
    except LayerError as exc:
        return False, str(exc)
    if result.returncode != 0:
        lines = (result.stderr or "no answer").strip().splitlines()
        return False, f"the Docker engine is not running ({lines[-1] if lines else 'no answer'})"
    return True, f"Docker engine {result.stdout.strip()}"


def content_tag(name: str, inputs: tuple[str, ...], folder: Path = STAGES[4]) -> str:
    """``name``:<first 12 hex of the SHA-256 of the ``inputs`` in ``folder``>: a tag that changes exactly
    when the image built from them would."""
    digest = hashlib.sha256()
    for file in inputs:
        digest.update((folder / file).read_bytes())
    return f"{name}:{digest.hexdigest()[:12]}"


def image_tag(folder: Path = STAGES[4]) -> str:
    """The stage-04 image's tag for the files in ``folder`` (the stage's own by default)."""
    return content_tag(IMAGE_NAME, IMAGE_INPUTS, folder)


def image_exists(tag: str) -> bool:
    """Whether the engine has an image with this tag."""
    return docker("image", "inspect", tag, check=False).returncode == 0


def image_size(tag: str) -> int:
    """Size of an image in bytes, its base layers included (what `docker images` shows)."""
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)


def image_config(tag: str) -> dict:
    """The image's configuration: User, Cmd, Env, Healthcheck, Labels, ..."""
    return json.loads(docker("image", "inspect", "--format", "{{json .Config}}", tag).stdout)


def image_self_contained(image: str) -> dict[str, Any]:
    """Whether ``image`` carries its own Python and packages: run its interpreter with the host's .venv off PATH."""
    probe = "import sys, sklearn, flask, gunicorn; print(sys.executable, sys.version.split()[0], sklearn.__version__)"
    out = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", probe],
        env={"PATH": HOST_PATH, **{k: v for k, v in os.environ.items() if k.startswith("DOCKER_")}},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if out.returncode != 0:
        return {"self_contained": False, "why": f"the image's own Python failed: {out.stderr.strip()[-300:]}"}
    executable, version, sklearn = out.stdout.split()
    return {
        "self_contained": True,
        "why": f"the host needs only a container runtime: the image runs {executable} (Python {version}, "
        f"scikit-learn {sklearn}) with the host's .venv off PATH",
    }


def print_built(build: Callable[[], str], what: str) -> int:
    """A command line's "build (or reuse) an image, print its tag": 0, or 1 with a one-line error."""
    try:
        print(build())
    except LayerError as exc:
        print(f"cannot build {what}: {exc}", file=sys.stderr)
        return 1
    return 0


def ensure_base_image() -> None:
    """Make sure the base images exist: pulled, or the stand-in built (scripts/build_base_image.sh)."""
    if not (image_exists(BASE_IMAGE) and image_exists(PROXY_BASE_IMAGE)):
        result = subprocess.run(["bash", str(BASE_IMAGE_SCRIPT)], capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise LayerError(f"no {BASE_IMAGE} and building the stand-in failed:\n{result.stderr[-2000:]}")


def build(tag: str, folder: Path = STAGES[4], dockerfile: str = "Dockerfile", timeout: float = 900) -> str:
    """Build ``folder``'s ``dockerfile`` as ``tag`` unless the engine has that tag already; return the tag."""
    if not image_exists(tag):
        ensure_base_image()
        # --force-rm: a failed step's container goes too (the classic builder keeps it; BuildKit keeps none)
        docker("build", "--quiet", "--force-rm", "--file", str(folder / dockerfile), "--tag", tag, str(folder),
               timeout=timeout)  # fmt: skip
    return tag


def build_image(tag: str | None = None, folder: Path = STAGES[4], timeout: float = 900) -> str:
    """Build the stage-04 image from ``folder`` (once: an existing tag is reused) and return its tag."""
    return build(tag or image_tag(folder), folder, timeout=timeout)


class Container(Layer):
    """Stage 04: the image run with `docker run --restart on-failure`, published on 127.0.0.1 only."""

    stage, name = 4, "04 container"
    window = {
        "logs": "`docker logs --follow <container>`: Docker keeps what the container writes (JSON lines), until "
        "the container is removed",
        "health": "the image's HEALTHCHECK: `docker ps` shows (unhealthy) after 3 failed checks 10 s apart, and "
        "Docker does nothing about it; the restart policy restarts a container whose server exits",
        "metrics": "`docker stats` (CPU, memory, network per container); GET /metrics through the published "
        "port; nothing collects them",
    }
    upgrade_mechanism = "stop the old container, start a new one with the new model"
    release_mechanism = "stop the old container, run a new one (new model mounted, or --env): nothing checks it"
    crash_targets = ("server", "worker")
    restart_policy = "on-failure"
    path = "published port"
    needs = "docker"

    def __init__(self, *args: Any, image: str | None = None, run_args: tuple[str, ...] = (), network: str = "publish",
                 **kwargs: Any):  # fmt: skip
        """Layer's arguments; ``model_path`` None serves the model baked into the image; ``run_args`` go to
        `docker run`.

        ``network="publish"`` (what `make stage-4` does) publishes the port on
        127.0.0.1 through Docker's port proxy; ``"host"`` shares the host's
        network (no proxy, listening on 127.0.0.1 only), to measure what the
        proxy costs. An ``app`` other than the stage's own replaces the image's
        command. ``folder`` is what the image is built from when ``image`` is None.
        """
        super().__init__(*args, **kwargs)
        self.image = image
        self.run_args = tuple(run_args)
        self.network = network
        self.container: str | None = None
        self.exit_code: int | None = None

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return docker_available()

    def network_args(self) -> list[str]:
        """How the server's container is reached: its port published on 127.0.0.1, or the host's network."""
        if self.network == "host":
            return ["--network", "host", "--env", f"HOST={LOOPBACK}", "--env", f"PORT={self.port}"]
        return ["--publish", f"{LOOPBACK}:{self.port}:{CONTAINER_PORT}"]

    def run_command(self) -> list[str]:
        """The `docker run` arguments, the same as `make stage-4` uses plus this test's model and name."""
        args = ["run", "--detach", "--name", self.container, "--restart", self.restart_policy, *self.network_args()]
        if self.model_path:
            # Mount the two files, not their directory: pytest's temp dirs are
            # private to root (0700) and the container user is 10001.
            model = self.model_path.resolve()
            for path in (model, model.with_suffix(".json")):
                args += ["--volume", f"{path}:{MODEL_DIR}/{path.name}:ro"]
            args += ["--env", f"MODEL_PATH={MODEL_DIR}/{model.name}"]
        for key, value in self.extra_env.items():
            args += ["--env", f"{key}={value}"]
        command = [] if self.app == APP else ["gunicorn", "-c", "gunicorn.conf.py", self.app]
        return [*args, *self.run_args, self.image, *command]

    def launch(self) -> None:
        """Build what is missing and run the container(s), named afresh; ``start`` then waits until ready."""
        self.image = self.image or build_image(folder=self.folder)
        self.container = f"iris-test-{uuid.uuid4().hex[:12]}"
        docker(*self.run_command())  # a failed run can leave a created container behind: stop() removes it

    def start(self, timeout: float = 120.0) -> float:
        """Launch, then wait until ready; a busy machine may take a minute to import scikit-learn."""
        self.exit_code = None
        started = time.monotonic()
        try:
            self.launch()
            wait_ready(f"{self.base_url}/v2/health/ready", timeout, alive=self.running)
        except LayerError as exc:
            log = self.log()
            self.stop()
            raise LayerError(f"{self.name}: {exc}; log:\n{log[-2000:]}") from None
        return time.monotonic() - started

    def inspect(self) -> dict:
        """`docker inspect` of the running container (State, Config, HostConfig, ...)."""
        return json.loads(docker("inspect", self.container).stdout)[0]

    def running(self) -> bool:
        """Whether the container is running or about to be restarted by its policy."""
        state = self.inspect()["State"]
        return state["Running"] or state["Restarting"] or state["Status"] == "created"

    def stop(self, timeout: float = 30.0) -> int | None:
        """`docker stop` (SIGTERM, then SIGKILL after ``timeout`` s), remove it, return its exit code."""
        if self.container is None:
            return self.exit_code
        try:
            docker("stop", "--time", str(int(timeout)), self.container, timeout=timeout + 30, check=False)
            result = docker("inspect", "--format", "{{.State.ExitCode}}", self.container, check=False)
            if result.returncode == 0:
                self.exit_code = int(result.stdout)
        finally:
            docker("rm", "--force", self.container, check=False)
            self.container = None
        return self.exit_code

    def log(self) -> str:
        """What the container wrote to stdout and stderr so far."""
        result = docker("logs", self.container, check=False)
        return result.stdout + result.stderr

    def pid1(self) -> int:
        """Host PID of the container's PID 1 (the gunicorn master)."""
        pid = self.inspect()["State"]["Pid"]
        if not pid:
            raise LayerError(f"container {self.container} is not running")
        return pid

    def restart_count(self) -> int:
        """How often the restart policy has restarted this container."""
        return self.inspect()["RestartCount"]

    def operator_signals(self, since: float) -> list[dict[str, Any]]:
        """The container's log lines at WARNING or worse, and what `docker ps` and `docker inspect` say: a
        restart by its policy since ``since`` (when, the exit code before it), a restart under way, unhealthy."""
        found = super().operator_signals(since)
        state = self.inspect()["State"]
        started = parse_time(state.get("StartedAt", ""))
        if self.restart_count() and started and started >= since:
            found.append({"at_s": round(started - since, 3), "source": "docker inspect",
                          "text": f"restarted by its policy ({self.restart_count()} restarts)"})  # fmt: skip
        now = round(time.time() - since, 3)
        if state.get("Restarting"):
            found.append({"at_s": now, "source": "docker ps", "text": f"Restarting ({state.get('ExitCode')})"})
        if state.get("Health", {}).get("Status") == "unhealthy":
            found.append({"at_s": now, "source": "docker ps", "text": "(unhealthy)"})
        return found

    def crash(self, target: str = "server", sig: int = signal.SIGKILL) -> str:
        """SIGKILL PID 1, gunicorn's master ("server"), or one of its workers, from the host (``sig`` SIGSTOP:
        the worker, or the master and every worker, stop answering and stay).

        (`docker kill` would count as a manual stop: no restart.) The restart
        policy restarts a container whose PID 1 died; the master replaces a worker.
        """
        self._check_target(target)
        pid1 = self.pid1()
        workers = children(pid1)
        self.crashed = Crashed(target, workers)
        self.signalled, role = signal_gunicorn(pid1, workers, target, sig)
        return f"{kill(sig)} {' '.join(map(str, self.signalled))}    # host PIDs of the container's gunicorn {role}"

    def recovered(self) -> bool:
        """As many workers as before the crash, the new ones booted, and ready."""
        state = self.inspect()["State"]
        if not state["Running"] or not state["Pid"]:
            return False
        now = children(state["Pid"])
        before = self.crashed.workers if self.crashed else []
        fresh = [p for p in now if p not in before]
        log = self.log()  # a worker logs its PID (inside the container) once it has loaded the model
        return (
            len(now) >= len(before)
            and bool(fresh)
            and all(f"(pid {namespace_pid(p)})" in log for p in fresh)
            and self.ready()
        )

    def upgrade(self, new_model: Path) -> str:
        """Replace the container by one serving ``new_model``: stop old, start new (downtime in between)."""
        old = self.container
        self.stop()
        self.model_path = Path(new_model)
        self.start()
        return f"docker stop {old} && docker run ... {self.image} (with the new model mounted)"

    def release(self, model: Path | None = None, settings: dict[str, str] | None = None) -> str:
        """Stop the container, run one with ``model`` mounted and ``settings`` as `--env`. Nothing checks the new
        one: one that cannot start is restarted by its policy, over and over; one that starts serves."""
        self.previous = (self.model_path, dict(self.extra_env))
        old = self.container
        self.stop()
        self.model_path = Path(model) if model else self.model_path
        self.extra_env.update(settings or {})
        self.launch()
        changes = [f"--env {k}={v}" for k, v in (settings or {}).items()] + (["--volume NEW:..."] if model else [])
        return f"docker stop {old} && docker run ... {' '.join(changes)} {self.image}"

    def rollback(self) -> str:
        """Stop the new container and run the previous model and settings again (downtime in between)."""
        if self.previous is None:
            return ""
        (self.model_path, self.extra_env), self.previous, new = self.previous, None, self.container
        self.stop()
        self.launch()
        return f"docker stop {new} && docker run ... {self.image}    # the previous model and settings"

    def self_contained(self) -> dict[str, Any]:
        return image_self_contained(self.image)

    def cost(self) -> dict[str, Any]:
        """The image (what every machine that runs this layer must download and store) and the engine's
        own processes (what it must run beside the container)."""
        return {"image_mib": round(image_size(self.image) / 2**20, 1), "engine": engine_memory()}

    def serving_pids(self) -> list[int]:
        pid = self.pid1()
        return [pid, *children(pid)]


def engine_memory() -> dict[str, Any]:
    """PSS of the Docker engine's processes: dockerd, its containerd, the containers' shims and port proxies
    (each names docker, or containerd's namespace for Docker, moby, on its command line; a Kubernetes
    node's own containerd does not)."""
    found: dict[str, float] = {}
    for proc in procfs().glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if command.split(" ", 1)[0].endswith("dockerd") or "docker" in command or "moby" in command:
                found[f"{(proc / 'comm').read_text().strip()} {proc.name}"] = process_memory(int(proc.name))["pss"]
        except (OSError, ValueError):  # ended meanwhile
            continue
    return {"processes": sorted(found), "pss_mib": round(sum(found.values()) / 2**20, 1)}


def predict_once(port: int) -> int:
    """Wait until the server on ``port`` is ready, print one prediction; a one-line error otherwise."""
    url = f"http://{LOOPBACK}:{port}"
    try:
        seconds = wait_ready(f"{url}/v2/health/ready", timeout=60)
    except LayerError as exc:
        print(f"error: {exc} (see: docker logs)", file=sys.stderr)
        return 1
    row = load_golden()["inputs"][0]
    try:
        answer = requests.post(f"{url}/predict", json={"instances": [row]}, timeout=10).json()
    except (requests.RequestException, ValueError) as exc:
        print(f"error: POST /predict failed: {exc} (see: docker logs)", file=sys.stderr)
        return 1
    print(f"ready after {seconds:.1f} s; POST /predict {json.dumps(row)}")
    print(json.dumps(answer))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: check | tag | predict PORT."""
    parser = argparse.ArgumentParser(prog="python -m harness.container", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="is a Docker engine answering? (one line)")
    commands.add_parser("tag", help="the image tag for the current files")
    predict = commands.add_parser("predict", help="wait until ready, print one prediction")
    predict.add_argument("port", type=int)
    args = parser.parse_args(argv)
    if args.command == "check":
        available, reason = docker_available()
        print(reason if available else f"error: {reason}", file=sys.stdout if available else sys.stderr)
        return 0 if available else 1
    if args.command == "tag":
        print(image_tag())
        return 0
    return predict_once(args.port)


if __name__ == "__main__":
    sys.exit(main())
