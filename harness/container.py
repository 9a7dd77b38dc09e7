"""Stage 04: the serving layer as a Docker container, behind the same Layer interface.

The image is built from 04_container/ exactly as `make stage-4` builds it and
tagged by the content of the files it is built from, so an unchanged stage is
never rebuilt. A test model is bind-mounted read-only and selected with
MODEL_PATH, so one image serves version 1 or version 2.

    python -m harness.container check          # is a Docker engine answering? (one line)
    python -m harness.container tag            # the image tag for the current files
    python -m harness.container predict PORT   # wait until ready, print one prediction
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from harness.golden import load_golden
from harness.layers import LOOPBACK
from harness.layers import ROOT
from harness.layers import STAGES
from harness.layers import Layer
from harness.layers import LayerError
from harness.layers import children
from harness.layers import wait_ready

IMAGE_NAME = "iris-serving"
BASE_IMAGE = "python:3.11-slim"
# What the Dockerfile copies; the tag is a hash of these, so it changes exactly
# when the image would.
IMAGE_INPUTS = (
    "Dockerfile", ".dockerignore", "requirements.txt", "model.py",
    "app.py", "inputs.py", "v2.py", "openapi.json", "gunicorn.conf.py",
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
    """Whether a Docker engine answers; the reason is one readable line either way."""
    try:
        result = docker("version", "--format", "{{.Server.Version}}", timeout=15, check=False)
    except LayerError as exc:
        return False, str(exc)
    if result.returncode != 0:
        lines = (result.stderr or "no answer").strip().splitlines()
        return False, f"the Docker engine is not running ({lines[-1] if lines else 'no answer'})"
    return True, f"Docker engine {result.stdout.strip()}"


def image_tag() -> str:
    """iris-serving:<first 12 hex of the SHA-256 of the files the image is built from>."""
    digest = hashlib.sha256()
    for name in IMAGE_INPUTS:
        digest.update((STAGES[4] / name).read_bytes())
    return f"{IMAGE_NAME}:{digest.hexdigest()[:12]}"


def image_exists(tag: str) -> bool:
    """Whether the engine has an image with this tag."""
    return docker("image", "inspect", tag, check=False).returncode == 0


def image_size(tag: str) -> int:
    """Size of an image in bytes, its base layers included (what `docker images` shows)."""
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)


def image_config(tag: str) -> dict:
    """The image's configuration: User, Cmd, Env, Healthcheck, Labels, ..."""
    return json.loads(docker("image", "inspect", "--format", "{{json .Config}}", tag).stdout)


def image_layers(tag: str) -> list[dict[str, Any]]:
    """The image's layers, oldest first: id, the instruction that made it, its size in bytes.

    A registry push or pull moves only the layers the other side lacks, so
    the sizes say what shipping an edit costs. ENV, CMD and the like add 0 bytes.
    """
    out = docker("history", "--human=false", "--no-trunc", "--format", "{{json .}}", tag).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [
        {"id": r["ID"], "created_by": r["CreatedBy"], "bytes": int(r["Size"]), "comment": r["Comment"]}
        for r in reversed(rows)
    ]


def dangling_images() -> set[str]:
    """IDs of untagged images (a multi-stage build leaves its builder stage as one)."""
    return set(docker("images", "--quiet", "--no-trunc", "--filter", "dangling=true").stdout.split())


def timed_build(context: Path, tag: str, no_cache: bool = False, timeout: float = 900) -> dict[str, Any]:
    """``docker build`` of ``context`` into ``tag``, timed: seconds, steps, steps served from the cache.

    ``no_cache`` is a cold build (every step runs: wheels downloaded and
    installed, model trained). ``left_behind`` lists the untagged images the
    build created (its builder stage): remove them and ``tag`` with
    ``remove_images`` when the build was only a measurement.
    """
    before = dangling_images()
    started = time.monotonic()
    out = docker("build", "--tag", tag, *(["--no-cache"] if no_cache else []), str(context), timeout=timeout).stdout
    seconds = time.monotonic() - started
    return {
        "seconds": round(seconds, 2),
        "steps": len(re.findall(r"^Step \d+/\d+ :", out, re.MULTILINE)),
        "cached_steps": out.count("---> Using cache"),
        "left_behind": sorted(dangling_images() - before),
    }


def remove_images(*refs: str) -> None:
    """``docker rmi`` each tag or ID given (only ones you created); a missing one is no error."""
    for ref in refs:
        docker("rmi", ref, check=False)


def engine_pids() -> dict[str, list[int]]:
    """Host PIDs of the Docker engine's daemons, by name (dockerd, containerd): the engine's own cost."""
    found: dict[str, list[int]] = {"dockerd": [], "containerd": []}
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:  # the process ended during the scan
            continue
        if name in found:
            found[name].append(int(comm.parent.name))
    return found


def ensure_base_image() -> None:
    """Make sure python:3.11-slim exists: pull it, or build the stand-in (scripts/build_base_image.sh)."""
    if not image_exists(BASE_IMAGE):
        result = subprocess.run(["bash", str(BASE_IMAGE_SCRIPT)], capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise LayerError(f"no {BASE_IMAGE} and building the stand-in failed:\n{result.stderr[-2000:]}")


def build_image(tag: str | None = None, timeout: float = 900) -> str:
    """Build the stage-04 image (once: an existing tag is reused) and return its tag."""
    tag = tag or image_tag()
    if not image_exists(tag):
        ensure_base_image()
        docker("build", "--quiet", "--tag", tag, str(STAGES[4]), timeout=timeout)
    return tag


class Container(Layer):
    """Stage 04: the image run with `docker run --restart on-failure`, published on 127.0.0.1 only."""

    stage, name = 4, "04 container"
    upgrade_mechanism = "stop the old container, start a new one with the new model"
    restart_policy = "on-failure"

    def __init__(
        self,
        model_path: Path | None = None,
        port: int | None = None,
        image: str | None = None,
        env: dict[str, str] | None = None,
        run_args: tuple[str, ...] = (),
        network: str = "publish",
    ):
        """``model_path`` None serves the model baked into the image; ``run_args`` go to `docker run`.

        ``network="publish"`` (what `make stage-4` does) publishes the port on
        127.0.0.1 through Docker's port proxy; ``"host"`` shares the host's
        network (no proxy, listening on 127.0.0.1 only), to measure what the
        proxy costs.
        """
        super().__init__(model_path or Path("/app/artifacts/iris.joblib"), port)
        self.mounted = model_path is not None
        self.image = image
        self.extra_env = env or {}
        self.run_args = tuple(run_args)
        self.network = network
        self.container: str | None = None
        self._killed = 0
        self.exit_code: int | None = None

    def run_command(self) -> list[str]:
        """The `docker run` arguments, the same as `make stage-4` uses plus this test's model and name."""
        args = ["run", "--detach", "--name", self.container, "--restart", self.restart_policy]
        if self.network == "host":
            args += ["--network", "host", "--env", f"HOST={LOOPBACK}", "--env", f"PORT={self.port}"]
        else:
            args += ["--publish", f"{LOOPBACK}:{self.port}:{CONTAINER_PORT}"]
        if self.mounted:
            # Mount the two files, not their directory: pytest's temp dirs are
            # private to root (0700) and the container user is 10001.
            model = self.model_path.resolve()
            for path in (model, model.with_suffix(".json")):
                args += ["--volume", f"{path}:{MODEL_DIR}/{path.name}:ro"]
            args += ["--env", f"MODEL_PATH={MODEL_DIR}/{model.name}"]
        for key, value in self.extra_env.items():
            args += ["--env", f"{key}={value}"]
        return [*args, *self.run_args, self.image]

    def start(self, timeout: float = 60.0) -> float:
        self.image = self.image or build_image()
        self.container = f"iris-test-{uuid.uuid4().hex[:12]}"
        self.exit_code = None
        started = time.monotonic()
        try:
            docker(*self.run_command())  # a failed run can leave a created container behind
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

    def crash(self) -> None:
        """SIGKILL PID 1 from the host. (`docker kill` would count as a manual stop: no restart.)"""
        self._killed = self.pid1()
        os.kill(self._killed, signal.SIGKILL)

    def wait_recovered(self, timeout: float) -> float | None:
        """After crash(): seconds until the restart policy's new PID 1 serves, None if not in time."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            state = self.inspect()["State"]
            if state["Running"] and state["Pid"] not in (0, self._killed) and self.ready():
                return time.monotonic() - start
            time.sleep(0.05)
        return None

    def upgrade(self, new_model: Path) -> None:
        """Replace the container by one serving ``new_model``: stop old, start new (downtime in between)."""
        self.stop()
        self.model_path, self.mounted = Path(new_model), True
        self.start()

    def engine_side_pids(self) -> list[int]:
        """Host PIDs working for this container outside it: its containerd-shim, dockerd and containerd.

        Every line the server writes (an access log line per request) travels
        through the shim to dockerd, which stores it for `docker logs`; their
        CPU under load is what the engine costs per request. (dockerd and
        containerd also serve any other container running at the time.)
        """
        shim = int(Path(f"/proc/{self.pid1()}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return [shim, *(pid for pids in engine_pids().values() for pid in pids)]

    def proxy_pids(self) -> list[int]:
        """Host PIDs of the docker-proxy processes forwarding this container's published port.

        With ``network="publish"`` every connection to 127.0.0.1:port is
        accepted by docker-proxy, which copies the bytes to the container and
        back in user space; with ``network="host"`` there is none.
        """
        pids = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().split(b"\0")
            except OSError:
                continue
            if args[0].endswith(b"docker-proxy") and b"-host-port" in args:
                if args[args.index(b"-host-port") + 1] == str(self.port).encode():
                    pids.append(int(cmdline.parent.name))
        return pids

    def serving_pids(self) -> list[int]:
        pid = self.pid1()
        return [pid, *children(pid)]


def _cli(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        available, reason = docker_available()
        print(reason if available else f"error: {reason}", file=sys.stdout if available else sys.stderr)
        return 0 if available else 1
    if argv[:1] == ["tag"]:
        print(image_tag())
        return 0
    if argv[:1] == ["predict"] and len(argv) == 2:
        url = f"http://{LOOPBACK}:{argv[1]}"
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
    print("usage: python -m harness.container check | tag | predict PORT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
