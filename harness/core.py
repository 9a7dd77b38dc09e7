"""What every layer shares: the Layer interface, one way to wait, and the process figures.

A layer is started, loaded, broken and upgraded through the same methods, so a
scenario (harness.scenarios) runs unchanged against every stage. What differs
between layers is declared as data on the class (``serves_http``,
``crash_targets``), never asked with ``if stage == N``.

(Past 400 lines on purpose: most of it is the Layer interface, each method with the contract every
layer keeps, which a maintainer reads in one place; the process helpers below it are what those
methods are written with.)
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from types import ModuleType
from typing import Any

import requests

from harness import logreader
from harness.paths import APP
from harness.paths import LOOPBACK
from harness.paths import ROOT
from harness.paths import STAGES

__all__ = ["APP", "LOOPBACK", "ROOT", "STAGES"]  # re-exported: most callers need these with the rest
# The interpreter running the harness is the one from .venv (make setup).
BIN = Path(sys.executable).parent
# A host's own programs, without .venv: what a machine without our setup has.
HOST_PATH = "/usr/local/bin:/usr/bin:/bin"
# `make test` runs the notebooks with NOTEBOOK_QUICK=1 (notebooks/conftest.py): the same code with
# shorter loads and windows. `make notebooks` runs them in full for the outputs committed.
QUICK = os.environ.get("NOTEBOOK_QUICK") == "1"


class LayerError(RuntimeError):
    """A layer did not start, stop or become ready in time; the message says why."""


class Refused(LayerError):
    """A layer's own release mechanism turned a release down; ``command`` is what the reader typed."""

    def __init__(self, why: str, command: str):
        super().__init__(why)
        self.command = command


# Process figures (memory, CPU, a server's workers) come from Linux's /proc: the lesson is what
# the kernel counts. Elsewhere (macOS) they stop with one line instead of a FileNotFoundError.
PROC = Path("/proc")


class LinuxOnly(LayerError):
    """A figure that reads Linux's /proc, asked for on a system without it."""


def procfs(*parts: str | int) -> Path:
    """A path under /proc, or LinuxOnly (one line) on a system that has none."""
    if not PROC.is_dir():
        raise LinuxOnly(
            f"the harness reads process figures from Linux's /proc, which {platform.system()} lacks: "
            "run the measurements on Linux (on Windows: in WSL)"
        )
    return PROC.joinpath(*map(str, parts))


def damage(artifact: Path) -> None:
    """One byte appended to ``artifact`` (a disk fault, a half-copied file): its SHA-256 no longer matches its
    metadata sidecar, so model.py refuses to load it."""
    with Path(artifact).open("ab") as file:
        file.write(b"\0")


def kill(sig: int) -> str:
    """The `kill` command that sends ``sig``, as a reader types it: kill -9, kill -STOP, kill -CONT."""
    return "kill -9" if sig == signal.SIGKILL else f"kill -{signal.Signals(sig).name.removeprefix('SIG')}"


def signal_gunicorn(master: int, workers: list[int], target: str, sig: int) -> tuple[list[int], str]:
    """Send ``sig`` to what ``target`` names in a gunicorn tree: one "worker", or the "server": its master
    (SIGKILL: the workers die with it), or, to hang it (SIGSTOP), the master and every worker, since a master
    stopped alone leaves its workers serving. Returns the PIDs signalled and what they are, in words."""
    victims = [workers[0]] if target == "worker" else [master] if sig == signal.SIGKILL else [master, *workers]
    for pid in victims:
        os.kill(pid, sig)
    return victims, "worker" if target == "worker" else "master" if len(victims) == 1 else "master and workers"


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition()`` until it is true (return True) or ``timeout`` seconds pass (False).

    The only polling loop of the harness. Callers assert on the result, with the
    measured figures in the message, never on how long the wait took.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether ``url`` answers 200 right now."""
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def wait_ready(url: str, timeout: float = 30.0, alive: Callable[[], bool] = lambda: True) -> float:
    """Wait until ``url`` answers 200; return the seconds it took.

    ``alive`` is checked between polls so a server that died is reported at
    once instead of after the whole timeout.
    """
    start = time.monotonic()
    dead = False

    def done() -> bool:
        nonlocal dead
        if answers(url):
            return True
        dead = not alive()
        return dead

    if not wait_until(done, timeout) or dead:
        raise LayerError(f"server exited before {url} answered" if dead else f"{url} not ready within {timeout:.0f} s")
    return time.monotonic() - start


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


def process_memory(pid: int) -> dict[str, int]:
    """RSS, PSS and USS of one process in bytes, from /proc/PID/smaps_rollup."""
    fields = {}
    for line in procfs(pid, "smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0]) * 1024
    return {"rss": fields["Rss"], "pss": fields["Pss"], "uss": fields["Private_Clean"] + fields["Private_Dirty"]}


def children(pid: int) -> list[int]:
    """Direct child PIDs of a process (Linux /proc)."""
    found = []
    for task in procfs(pid, "task").glob("*"):
        try:
            text = (task / "children").read_text()
        except FileNotFoundError:  # that thread ended meanwhile (gunicorn restarts one on HUP)
            continue
        found.extend(int(p) for p in text.split())
    return sorted(found)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...)."""
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def namespace_pid(pid: int) -> int:
    """The PID a process has inside its own PID namespace (a container's), from /proc/PID/status."""
    for line in procfs(pid, "status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return pid


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """User + system CPU a process has used so far; ``reaped`` adds that of its children that ended.

    A gunicorn master reaps the workers it replaces (max_requests, a crash), so
    summing ``cpu_seconds(p, reaped=True)`` over the processes of a server keeps
    the CPU of a worker that ended during a measurement.
    """
    try:
        fields = procfs(pid, "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # ended meanwhile: its CPU is now its parent's reaped CPU
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if reaped else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Crashed:
    """What ``Layer.crash`` killed, kept so ``recovered`` can tell a replacement from a survivor.

    The same shape for every layer: the target, the workers that ran before
    (a replacement is a worker not among them), and where a cluster is
    concerned the pod and its container restarts before the crash.
    """

    target: str
    workers: list[int] = field(default_factory=list)
    pod: str = ""
    restarts: int = 0

    def fresh(self, now: list[int]) -> list[int]:
        """The workers in ``now`` that did not run before the crash."""
        return [pid for pid in now if pid not in self.workers]


class Layer:
    """One serving layer: the same constructor and methods for every stage.

    Subclasses set what the layer is and can do as class attributes and fill
    in start, stop, crash, recovered and upgrade.
    """

    stage: int
    name: str
    #: what a reader would call the upgrade mechanism of this layer
    upgrade_mechanism: str = ""
    #: ... and what stands between a bad release and the clients (``release``)
    release_mechanism: str = ""
    #: whether the layer is reached over HTTP (False: the model runs in the caller's process)
    serves_http: bool = True
    #: what ``crash`` can kill: "server" (the process that serves), "worker" (one of its workers), ...
    crash_targets: tuple[str, ...] = ("server",)
    #: how often ``recovered`` may be asked (s): it may cost an API call
    poll_interval: float = 0.05
    #: whether a buffering proxy (nginx) answers clients in front of the server
    behind_proxy: bool = False
    #: the way a request takes from the client to the server, as a results row states it
    path: str = "direct"
    #: what the layer runs on beyond this machine's processes ("docker", "cluster"; also the tests' marker)
    needs: str = ""
    #: whether one started instance serves a whole test session (starting it takes minutes)
    shared: bool = False
    #: an operator's window on the app at this layer: where its "logs" go and how to read them, what reports
    #: its "health", what collects its "metrics"; where the layer offers nothing, it says so
    window: dict[str, str] = {}
    #: the files a reader writes to run this layer, beyond the app (globs in its stage folder; harness.versus
    #: counts their lines), and the concepts they must learn to write and run them
    configuration: tuple[str, ...] = ()
    concepts: tuple[str, ...] = ()

    def __init__(
        self,
        model_path: Path | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        app: str = APP,
        *,
        folder: Path | None = None,
    ):
        """``model_path`` to serve (None: the one baked into an image), on loopback ``port`` (None: a free one),
        with ``env`` added to the server's environment, serving the WSGI ``app`` (the stage's own by default)
        from ``folder`` (the stage's own by default; a learner's copy for the exercise checks)."""
        self.model_path = Path(model_path) if model_path else None
        self.port = free_port() if port is None else port
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.extra_env = dict(env or {})
        self.app = app
        self.folder = Path(folder) if folder else STAGES.get(self.stage)  # None: a layer with no folder (a fake)
        self.crashed: Crashed | None = None  # what the last ``crash`` killed
        self.previous: Any = None  # what the last ``release`` replaced (None: nothing), for ``rollback``
        self.signalled: list[int] = []  # the host PIDs the last ``crash`` signalled
        self.intact: Path | None = None  # a copy of the served artifact ``crash_loop`` damaged, for ``repair``

    @classmethod
    def folder_exists(cls) -> bool:
        """Whether this checkout has the layer's stage folder (a learner may have removed later ones)."""
        return cls.stage in STAGES and STAGES[cls.stage].is_dir()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this machine can run the layer now, and if not why, in one line (a local process: always)."""
        return True, "runs as a process of this machine"

    @classmethod
    def upgrade_alternative(cls) -> type[Layer] | None:
        """The same layer upgraded another way, measured beside this one's (None: it has one way)."""
        return None

    def start(self, timeout: float = 60.0) -> float:
        """Start the layer, wait until ready, return seconds from start to ready."""
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop everything this layer started (gracefully, ``timeout`` s at most); the exit code if there is one."""
        raise NotImplementedError

    def crash(self, target: str = "server", sig: int = signal.SIGKILL) -> str:
        """SIGKILL ``target`` (one of ``crash_targets``); return the equivalent command a reader would type.
        ``sig`` SIGSTOP hangs it instead: the process stays, answering nothing, as a deadlocked one would."""
        raise NotImplementedError

    def recovered(self) -> bool:
        """After ``crash``: whether the layer serves at full strength again, with nobody's help."""
        raise NotImplementedError

    def upgrade(self, new_model: Path) -> str:
        """Move to the artifact at ``new_model`` with this layer's own mechanism; return its commands."""
        raise NotImplementedError

    def resume(self) -> str:
        """SIGCONT whatever the last ``crash`` stopped and is still there (a watchdog may have killed it)."""
        resumed = []
        for pid in self.signalled:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                resumed.append(pid)
        self.signalled = []
        return f"{kill(signal.SIGCONT)} {' '.join(map(str, resumed))}" if resumed else "nothing: it was gone"

    #: what dies in ``crash_loop`` after the model file went bad: the process whose restart loads the file
    loop_target: str = "server"

    def crash_loop(self) -> str:
        """The served model file damaged on disk behind the layer's back (one byte appended: no install, no
        check, as a disk fault or a half-copied file), then ``loop_target`` SIGKILLed, so whatever restarts it
        loads the damaged file. ``repair`` undoes it. Needs a layer that serves a file of this machine."""
        if self.model_path is None:
            raise LayerError(f"{self.name} serves a model from its image: no file here to damage")
        self.intact = Path(tempfile.mkdtemp(prefix="intact-")) / self.model_path.name
        shutil.copy2(self.model_path, self.intact)
        damage(self.model_path)
        return f"printf '\\0' >> {self.model_path.name}; {self.crash(self.loop_target)}"

    def repair(self) -> str:
        """After ``crash_loop``: the intact file back, and the layer started again as a reader would."""
        if self.intact is None:
            return ""
        shutil.copy2(self.intact, self.model_path)
        shutil.rmtree(self.intact.parent, ignore_errors=True)
        self.intact = None
        self.stop()
        self.start()
        return f"cp INTACT {self.model_path.name}; restart"

    def operator_signals(self, since: float) -> list[dict[str, Any]]:
        """What an operator could see since ``since`` (``time.time()``) without knowing what happened, each as
        {"at_s": seconds after ``since``, "source", "text"}: here the layer's log lines at WARNING or worse;
        a layer with a supervisor adds what it reports."""
        return logreader.signals(self.log(), since) if hasattr(self, "log") else []

    def crash_steps(self) -> dict[str, Any] | None:
        """The server crash repeated and taken apart into the layer's own steps, where it has several between
        the crash and the clients (None: the crash scenario says it all)."""
        return None

    def release(self, model: Path | None = None, settings: dict[str, str] | None = None) -> str:
        """Put ``model`` and/or ``settings`` (environment variables) in service with this layer's own
        mechanism, as a reader would, without waiting for an answer; return the commands.

        Raises Refused when the mechanism itself turned the release down; what
        it changed before that (a server stopped first) stays changed.
        """
        raise NotImplementedError

    def rollback(self) -> str:
        """Back to the model and settings that served before the last ``release``, with this layer's own
        way back; return the commands ("" when nothing changed: the release was refused)."""
        raise NotImplementedError

    def serving_pids(self) -> list[int]:
        """Host PIDs whose memory and CPU count as the server's ([] when they cannot be seen from here)."""
        raise NotImplementedError

    def scale(self, replicas: int | None) -> str:
        """At least ``replicas`` server instances with the layer's own mechanism (None: as many as its
        configuration says); return the command, without waiting for them."""
        raise NotImplementedError

    def serving_instances(self) -> list[str]:
        """The names of the server instances (containers, pods) running now."""
        raise NotImplementedError

    def instance_log(self, instance: str) -> str:
        """What one server instance wrote so far (its JSON lines)."""
        raise NotImplementedError

    def cost(self) -> dict[str, Any]:
        """What this layer costs beyond code, packages and memory (an image, a cluster); {} when nothing."""
        return {}

    def self_contained(self) -> dict[str, Any]:
        """Whether the layer runs on a machine with no Python and none of its packages, measured.

        A stage served from its folder needs the host's Python and the stage's
        packages: the check imports the stage's code with the host's own
        interpreter, outside .venv, as a machine without our setup would.
        """
        module = "app" if (self.folder / "app.py").exists() else "model"
        python = shutil.which("python3", path=HOST_PATH)
        if python is None:
            return {"self_contained": False, "why": "needs Python on the host, and this host has none outside .venv"}
        out = subprocess.run(
            [python, "-c", f"import {module}"], cwd=self.folder, env={"PATH": HOST_PATH},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if out.returncode == 0:
            return {"self_contained": False, "why": f"needs Python and the packages, which {python} has here"}
        missing = (out.stderr.strip().splitlines() or ["an import failed"])[-1]
        return {"self_contained": False, "why": f"needs Python and its packages: {python} outside .venv: {missing}"}

    def _check_target(self, target: str) -> None:
        if target not in self.crash_targets:
            raise LayerError(f"{self.name} has no {target!r} to crash; it has {self.crash_targets}")

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
        return answers(f"{self.base_url}/v2/health/ready")
