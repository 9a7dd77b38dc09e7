"""Start, crash, upgrade and stop each serving layer behind one interface.

Every layer serves the same model and answers the same client. The stage
folders are used exactly as a reader would use them: the same commands, the
same files, on 127.0.0.1 only.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
STAGES = {
    1: ROOT / "01_model_py",
    2: ROOT / "02_rest_api",
    3: ROOT / "03_wsgi",
    4: ROOT / "04_container",
    5: ROOT / "05_kubernetes",
}
LOOPBACK = "127.0.0.1"
# The app every served stage runs, as `make stage-N` names it to flask and gunicorn.
APP = "app:create_app()"
# The interpreter running the harness is the one from .venv (make setup).
BIN = Path(sys.executable).parent


class LayerError(RuntimeError):
    """A layer did not start, stop or become ready in time; the message says why."""


@functools.cache
def stage_module(stage: int, name: str) -> ModuleType:
    """Import ``name``.py from a stage folder under a unique module name (once)."""
    path = STAGES[stage] / f"{name}.py"
    module_name = f"stage{stage:02d}_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def model_module() -> ModuleType:
    """The model code (identical in every stage), imported from stage 01."""
    return stage_module(1, "model")


def train_model(directory: Path, version: str = "1", c: float = 1.0) -> Path:
    """Train an artifact into ``directory`` and return its path (a second or so)."""
    path = Path(directory) / "iris.joblib"
    model_module().train(version, c, path)
    return path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_ready(url: str, timeout: float = 30.0, alive=lambda: True) -> float:
    """Poll ``url`` until it answers 200; return the seconds it took.

    ``alive`` is checked between polls so a server that died is reported at
    once instead of after the whole timeout.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return time.monotonic() - start
        except requests.RequestException:
            pass
        if not alive():
            raise LayerError(f"server exited before {url} answered")
        time.sleep(0.05)
    raise LayerError(f"{url} not ready within {timeout:.0f} s")


def process_memory(pid: int) -> dict[str, int]:
    """RSS, PSS and USS of one process in bytes, from /proc/PID/smaps_rollup."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0]) * 1024
    return {
        "rss": fields["Rss"],
        "pss": fields["Pss"],
        "uss": fields["Private_Clean"] + fields["Private_Dirty"],
    }


def children(pid: int) -> list[int]:
    """Direct child PIDs of a process (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            text = (task / "children").read_text()
        except FileNotFoundError:  # that thread ended meanwhile (gunicorn restarts one on HUP)
            continue
        found.extend(int(p) for p in text.split())
    return sorted(found)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Layer:
    """One serving layer. Subclasses fill in how to start, crash and upgrade it."""

    stage: int
    name: str
    #: what a reader would call the upgrade mechanism of this layer
    upgrade_mechanism: str = ""
    #: how long the crash scenario waits for a recovery before it says "never" (s)
    recovery_window: float = 8.0

    def __init__(self, model_path: Path, port: int | None = None):
        self.model_path = Path(model_path)
        self.port = free_port() if port is None else port
        self.base_url = f"http://{LOOPBACK}:{self.port}"

    # --- lifecycle ------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> float:
        """Start the layer, wait until ready, return seconds from start to ready."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop everything this layer started."""
        raise NotImplementedError

    def crash(self) -> None:
        """Kill the serving process (or worker, container, pod) with SIGKILL."""
        raise NotImplementedError

    def upgrade(self, new_model: Path) -> None:
        """Move to the artifact at ``new_model`` with this layer's own mechanism."""
        raise NotImplementedError

    def serving_pids(self) -> list[int]:
        """PIDs whose memory and CPU count as the server's (host PIDs)."""
        raise NotImplementedError

    def wait_recovered(self, timeout: float) -> float | None:
        """After crash(): seconds until the layer serves at full strength again, None if not in time."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.ready():
                return time.monotonic() - start
            time.sleep(0.05)
        return None

    def __enter__(self) -> Layer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- the same client for every layer ----------------------------------------
    def predict(self, instances: list[dict[str, float]]) -> dict[str, Any]:
        """POST /predict and return the JSON body (raises on an HTTP error)."""
        response = requests.post(f"{self.base_url}/predict", json={"instances": instances}, timeout=10)
        response.raise_for_status()
        return response.json()

    def ready(self) -> bool:
        """Whether the readiness endpoint answers 200 right now."""
        try:
            return requests.get(f"{self.base_url}/v2/health/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False


class InProcess(Layer):
    """Stage 01: the model imported into the caller's process; no server, no port."""

    stage, name = 1, "01 script"
    upgrade_mechanism = "re-import in your own program"

    def __init__(self, model_path: Path, port: int | None = None):
        super().__init__(model_path, port=0)
        self.base_url = ""
        self._model = None

    def start(self, timeout: float = 60.0) -> float:
        started = time.monotonic()
        self._model = model_module().load(self.model_path)
        return time.monotonic() - started

    def stop(self) -> None:
        self._model = None

    def predict(self, instances: list[dict[str, float]]) -> dict[str, Any]:
        iris = model_module()
        return {
            "model_name": iris.MODEL_NAME,
            "model_version": self._model.version,
            "predictions": self._model.predict(iris.validate_rows(instances)),
        }

    def ready(self) -> bool:
        return self._model is not None

    def serving_pids(self) -> list[int]:
        return [os.getpid()]


class ServerProcess(Layer):
    """A layer that is one local server process started from a stage folder."""

    def __init__(self, model_path: Path, port: int | None = None, env: dict[str, str] | None = None, app: str = APP):
        """``app`` is the WSGI app to serve, as gunicorn and flask name it (the stage's own by default)."""
        super().__init__(model_path, port)
        self.extra_env = env or {}
        self.app = app
        self.proc: subprocess.Popen | None = None
        fd, log_path = tempfile.mkstemp(prefix=f"stage{self.stage:02d}-", suffix=".log")
        os.close(fd)  # start() opens it by name; an open descriptor per layer would leak
        self.log_path = Path(log_path)

    def command(self) -> list[str]:
        """The command a reader runs in the stage folder (with this port)."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """The environment for the server: the same HOST/PORT/MODEL_PATH contract everywhere."""
        return {
            **os.environ,
            "HOST": LOOPBACK,
            "PORT": str(self.port),
            "MODEL_PATH": str(self.model_path),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def start(self, timeout: float = 60.0) -> float:
        started = time.monotonic()
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.command(), cwd=STAGES[self.stage], env=self.env(), stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_ready(f"{self.base_url}/v2/health/ready", timeout, alive=lambda: self.proc.poll() is None)
        except LayerError as exc:
            self.stop()
            raise LayerError(f"{self.name}: {exc}; log:\n{self.log()[-2000:]}") from None
        return time.monotonic() - started

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def serving_pids(self) -> list[int]:
        return [self.proc.pid]


class DevServer(ServerProcess):
    """Stage 02: Flask's development server, exactly as `make stage-2` runs it."""

    stage, name = 2, "02 Flask dev server"
    upgrade_mechanism = "stop, install the new model, start again"

    def command(self) -> list[str]:
        return [str(BIN / "flask"), "--app", self.app, "run", "--host", LOOPBACK, "--port", str(self.port)]

    def crash(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def upgrade(self, new_model: Path) -> None:
        model_module().install(new_model, self.model_path)
        self.stop()
        self.start()


class Gunicorn(ServerProcess):
    """Stage 03: gunicorn with the stage's gunicorn.conf.py, exactly as `make stage-3` runs it."""

    stage, name = 3, "03 gunicorn"
    upgrade_mechanism = "verify + install the new model, then SIGHUP (graceful reload)"

    def command(self) -> list[str]:
        return [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", self.app]

    def start(self, timeout: float = 60.0) -> float:
        """Start, and wait until every worker (not just the first) has loaded the model."""
        started = time.monotonic()
        super().start(timeout)
        if not self.wait_booted(timeout=max(1.0, timeout - (time.monotonic() - started))):
            self.stop()  # do not leave a half-booted server running
            raise LayerError(f"{self.name}: not every worker loaded the model; log:\n{self.log()[-2000:]}")
        return time.monotonic() - started

    def workers(self) -> list[int]:
        """PIDs of the current worker processes."""
        return children(self.proc.pid)

    def wait_workers(self, count: int, timeout: float = 30.0, exclude: set[int] = frozenset()) -> list[int]:
        """Wait until ``count`` workers not in ``exclude`` are running; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = [p for p in self.workers() if p not in exclude]
            if len(fresh) >= count:
                return fresh
            time.sleep(0.05)
        raise LayerError(f"{count} new workers did not appear within {timeout:.0f} s")

    def crash(self) -> None:
        """SIGKILL one worker; the master is what we are testing."""
        workers = self.workers()
        self._killed = (workers[0], len(workers))
        os.kill(workers[0], signal.SIGKILL)

    def wait_recovered(self, timeout: float) -> float | None:
        """Seconds until the master has replaced the killed worker (the others kept serving)."""
        start = time.monotonic()
        killed, count = self._killed
        try:
            fresh = self.wait_workers(count, timeout, exclude={killed})
        except LayerError:
            return None
        if self.wait_booted(fresh, timeout - (time.monotonic() - start)):
            return time.monotonic() - start
        return None

    def wait_booted(self, pids: list[int] | None = None, timeout: float = 30.0) -> bool:
        """Wait until workers ``pids`` (default: all current ones) have loaded the model.

        start() returns once one worker answers; the others may still be
        loading. Forked is not booted: a worker serves once the app has loaded
        the model, which it logs with its PID (app.create_app). With preload
        the master loaded it before forking, so a forked worker is ready.
        """
        if self.extra_env.get("GUNICORN_PRELOAD") == "1":
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()  # once per poll: under load the access log grows to megabytes
            if all(f"(pid {pid})" in log for pid in (pids or self.workers())):
                return True
            time.sleep(0.05)
        return False

    def upgrade(self, new_model: Path) -> None:
        # Validate first: a model that cannot load would make every new worker
        # fail to boot, and gunicorn halts when workers cannot boot.
        model_module().install(new_model, self.model_path)
        os.kill(self.proc.pid, signal.SIGHUP)

    def serving_pids(self) -> list[int]:
        return [self.proc.pid, *self.workers()]


def layer_class(stage: int) -> type[Layer]:
    """The Layer class that serves ``stage`` (04 and 05 are imported on demand)."""
    if stage == 4:
        from harness.container import Container

        return Container
    if stage == 5:
        from harness.cluster import Cluster

        return Cluster
    return {1: InProcess, 2: DevServer, 3: Gunicorn}[stage]
