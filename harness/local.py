"""The layers that run as this machine's own processes: stages 01 to 03.

Every layer serves the same model and answers the same client. The stage
folders are used exactly as a reader would use them: the same commands, the
same files, on 127.0.0.1 only.

(Past 400 lines on purpose: stage 03 has two ways to upgrade, the binary upgrade
and HUP, and the binary upgrade hands the server to a process we did not start,
``Adopted``. Each belongs to the layer it acts on; split off, one layer would be
spread over several modules.)
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from harness.core import APP
from harness.core import BIN
from harness.core import LOOPBACK
from harness.core import Crashed
from harness.core import Layer
from harness.core import LayerError
from harness.core import Refused
from harness.core import children
from harness.core import descendants
from harness.core import kill
from harness.core import model_module
from harness.core import procfs
from harness.core import wait_ready
from harness.core import wait_until


class InProcess(Layer):
    """Stage 01: the model imported into the caller's process; no server, no port."""

    stage, name = 1, "01 script"
    window = {
        "logs": "the calling program's own output: the model writes none",
        "health": "nothing: there is no server, each program loads the model itself",
        "metrics": "nothing",
    }
    upgrade_mechanism = "re-import in your own program"
    serves_http = False
    crash_targets = ()
    path = "in-process"

    def __init__(self, model_path: Path | None = None, port: int | None = None, env=None, app: str = APP, **kw):
        super().__init__(model_path, port=0, env=env, app=app, **kw)
        self.base_url = ""
        self._model = None

    def start(self, timeout: float = 60.0) -> float:
        started = time.monotonic()
        self._model = model_module().load(self.model_path)
        return time.monotonic() - started

    def stop(self, timeout: float = 30.0) -> None:
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

    def upgrade(self, new_model: Path) -> str:
        self.model_path = Path(new_model)
        self.start()
        return "model.load(new_path) in your own program"

    def serving_pids(self) -> list[int]:
        return [os.getpid()]


class Adopted:
    """A server process this one did not start, behind the part of ``subprocess.Popen`` the layers use.

    A gunicorn master started by a binary upgrade (USR2) is the old master's
    child; when the old one exits it is re-parented (to PID 1), so its exit
    status goes to whoever reaps it: ``poll`` reports ``UNKNOWN`` once it is gone.
    """

    UNKNOWN = -1

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        try:
            state = procfs(self.pid, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = "gone"
        if state in ("Z", "X", "gone"):  # a zombie has exited: only its reaper is missing
            self.returncode = self.UNKNOWN
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not wait_until(lambda: self.poll() is not None, 3600 if timeout is None else timeout):
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
        return self.returncode

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def pid_in(path: Path) -> int | None:
    """The PID a PID file holds; None while it is missing or being written."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class ServerProcess(Layer):
    """A layer that is one local server process started from a stage folder."""

    def __init__(self, model_path: Path, port: int | None = None, env: dict[str, str] | None = None, app: str = APP,
                 **kw):  # fmt: skip
        super().__init__(model_path, port, env, app, **kw)
        self.proc: subprocess.Popen | None = None
        fd, log_path = tempfile.mkstemp(prefix=f"{self.folder.name}-", suffix=".log")
        os.close(fd)  # start() opens it by name; an open descriptor per layer would leak
        self.log_path = Path(log_path)
        weakref.finalize(self, self.log_path.unlink, missing_ok=True)  # read after stop, gone with the layer

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

    def launch(self) -> None:
        """Start the server process; ``start`` then waits until it is ready, a release does not."""
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.command(), cwd=self.folder, env=self.env(), stdout=log, stderr=subprocess.STDOUT
            )

    def start(self, timeout: float = 60.0) -> float:
        started = time.monotonic()
        self.launch()
        try:
            wait_ready(f"{self.base_url}/v2/health/ready", timeout, alive=self.alive)
        except LayerError as exc:
            self.stop()
            raise LayerError(f"{self.name}: {exc}; log:\n{self.log()[-2000:]}") from None
        return time.monotonic() - started

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.proc is not None and self.proc.poll() is None

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

    def crash(self, target: str = "server", sig: int = signal.SIGKILL) -> str:
        """SIGKILL the server: its process and every process it started, as when a container's PID 1 dies.

        (gunicorn's workers, orphaned by a master killed alone, would serve on
        while requests keep coming and stop at the first pause; nothing here
        would start them again either way.)
        """
        self._check_target(target)
        victims = [self.proc.pid, *descendants(self.proc.pid)]
        for pid in victims:
            os.kill(pid, sig)
        self.signalled = victims
        if sig == signal.SIGKILL:
            self.proc.wait(10)
        return f"{kill(sig)} {' '.join(map(str, victims))}"

    def recovered(self) -> bool:
        return self.alive() and self.ready()

    # --- releases: what a reader does to put a new model or new settings in service ------------
    def keep_previous(self) -> None:
        """Set a copy of the served artifact and the settings aside for ``rollback`` (an install overwrites
        the artifact in place)."""
        backup = Path(tempfile.mkdtemp(prefix=f"{self.folder.name}-previous-"))
        weakref.finalize(self, shutil.rmtree, backup, ignore_errors=True)
        for path in (self.model_path, model_module().metadata_path(self.model_path)):
            shutil.copy2(path, backup / path.name)
        self.previous = (backup / self.model_path.name, dict(self.extra_env))

    def install(self, model: Path, done: list[str]) -> None:
        """`python model.py install NEW`: verified before it replaces the served artifact, else Refused."""
        done.append("python model.py install NEW")
        try:
            model_module().install(model, self.model_path)
        except model_module().ArtifactError as exc:
            why = str(exc).replace(str(model), "NEW")  # the same words whatever the path
            raise Refused(f"model.py install refused it: {why}", "; ".join(done)) from None

    def switch(self, settings_changed: bool) -> str:
        """Make the server serve the installed artifact and the current settings; return the command."""
        self.stop()
        self.launch()
        return f"Ctrl-C; {self.start_command()}"

    def start_command(self) -> str:
        """How a reader starts this server, with the settings the harness added."""
        return " ".join([*(shlex.quote(f"{k}={v}") for k, v in self.extra_env.items()), f"make stage-{self.stage}"])

    def rollback(self) -> str:
        if self.previous is None:
            return ""
        model, settings = self.previous
        self.previous = None
        model_module().install(model, self.model_path)
        changed, self.extra_env = settings != self.extra_env, settings
        return f"python model.py install OLD; {self.switch(changed)}"

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def serving_pids(self) -> list[int]:
        return [self.proc.pid, *descendants(self.proc.pid)]


class DevServer(ServerProcess):
    """Stage 02: Flask's development server, exactly as `make stage-2` runs it."""

    stage, name = 2, "02 Flask dev server"
    window = {
        "logs": "the terminal that runs `make stage-2`: one JSON line per request (logs.py) and per event",
        "health": "nothing watches it: /v2/health/ready answers whoever asks, and a server that dies stays down",
        "metrics": "GET /metrics (one process, its own counts); nothing collects them",
    }
    upgrade_mechanism = "stop, install the new model, start again"
    release_mechanism = "stop, then model.py install (verifies the model) or new settings, start again"

    def command(self) -> list[str]:
        return [str(BIN / "flask"), "--app", self.app, "run", "--host", LOOPBACK, "--port", str(self.port)]

    def upgrade(self, new_model: Path) -> str:
        model_module().install(new_model, self.model_path)
        old = self.proc.pid
        self.stop()
        self.start()
        return f"python model.py install NEW; kill -TERM {old} (Ctrl-C in its terminal does the same); make stage-2"

    def release(self, model: Path | None = None, settings: dict[str, str] | None = None) -> str:
        """Stop, install, start again (this stage's README): down in between, and down until someone starts
        the old one again when the install refuses the model or the server will not start."""
        self.keep_previous()
        self.stop()
        done = ["Ctrl-C"]
        if model:
            self.install(model, done)  # Refused leaves the server stopped
        self.extra_env.update(settings or {})
        self.launch()
        return "; ".join([*done, self.start_command()])


class Gunicorn(ServerProcess):
    """Stage 03: gunicorn with the stage's gunicorn.conf.py, exactly as `make stage-3` runs it."""

    stage, name = 3, "03 gunicorn"
    window = {
        "logs": "the terminal: the app's JSON lines, and gunicorn's own (Booting worker, WORKER TIMEOUT) in the "
        "same shape",
        "health": "gunicorn's master watches its workers: one silent for GUNICORN_TIMEOUT (30 s) is killed and "
        "replaced, with a WORKER TIMEOUT line; nothing watches the master",
        "metrics": "GET /metrics, summed over the workers (PROMETHEUS_MULTIPROC_DIR); nothing collects them",
    }
    upgrade_mechanism = "verify + install the new model, then SIGUSR2 (binary upgrade: a new master beside the old)"
    release_mechanism = "verify first: gunicorn --check-config (settings), model.py install (model); then switch"
    crash_targets = ("server", "worker")
    loop_target = "worker"  # its master starts another, which loads the damaged file

    def __init__(self, model_path: Path, port: int | None = None, env: dict[str, str] | None = None, app: str = APP,
                 **kw):  # fmt: skip
        super().__init__(model_path, port, env, app, **kw)
        fd, pidfile = tempfile.mkstemp(prefix=f"{self.folder.name}-", suffix=".pid")
        os.close(fd)
        self.pidfile = Path(pidfile)  # PIDFILE: the master's PID, as a reader has it (the binary upgrade needs it)
        weakref.finalize(self, self.pidfile.unlink, missing_ok=True)

    @classmethod
    def upgrade_alternative(cls) -> type[Layer] | None:
        return GunicornHUP

    def command(self) -> list[str]:
        return [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", self.app]

    def env(self) -> dict[str, str]:
        return {**super().env(), "PIDFILE": str(self.pidfile)}

    def start(self, timeout: float = 60.0) -> float:
        """Start, and wait until every worker (not just the first) has loaded the model."""
        started = time.monotonic()
        super().start(timeout)
        if not self.wait_booted(timeout=max(1.0, timeout - (time.monotonic() - started))):
            self.stop()  # do not leave a half-booted server running
            raise LayerError(f"{self.name}: not every worker loaded the model; log:\n{self.log()[-2000:]}")
        return time.monotonic() - started

    def master(self) -> int:
        """gunicorn's master PID: the process `make stage-3` started."""
        return self.proc.pid

    def workers(self) -> list[int]:
        """PIDs of the current worker processes."""
        return children(self.master()) if self.alive() else []

    def wait_workers(self, count: int, timeout: float = 30.0, exclude: set[int] = frozenset()) -> list[int]:
        """Wait until ``count`` workers not in ``exclude`` are running; return them."""
        if not wait_until(lambda: len([p for p in self.workers() if p not in exclude]) >= count, timeout):
            raise LayerError(f"{count} new workers did not appear within {timeout:.0f} s")
        return [p for p in self.workers() if p not in exclude]

    def booted(self, pids: list[int] | None = None) -> bool:
        """Whether workers ``pids`` (default: all current ones) have loaded the model.

        Forked is not booted: a worker serves once the app has loaded the
        model, which it logs with its PID (app.create_app). A master that logged
        it (preload_app, however it was set) forks workers that have the model.
        """
        log = self.log()  # once per check: under load the access log grows to megabytes
        return f"(pid {self.master()})" in log or all(f"(pid {pid})" in log for pid in (pids or self.workers()))

    def wait_booted(self, pids: list[int] | None = None, timeout: float = 30.0) -> bool:
        """Wait until ``booted(pids)``; False when ``timeout`` passes first."""
        return wait_until(lambda: self.booted(pids), timeout)

    def crash(self, target: str = "server", sig: int = signal.SIGKILL) -> str:
        """SIGKILL the master ("server": nothing restarts it) or one worker (its master replaces it)."""
        if target != "worker":
            return super().crash(target, sig)
        workers = self.workers()
        self.crashed = Crashed(target, workers)
        os.kill(workers[0], sig)
        self.signalled = [workers[0]]
        return f"{kill(sig)} {workers[0]}"

    def recovered(self) -> bool:
        if self.crashed is None:
            return False
        now = self.workers()
        fresh = self.crashed.fresh(now)
        return len(now) >= len(self.crashed.workers) and bool(fresh) and self.booted(fresh) and self.ready()

    def upgrade(self, new_model: Path) -> str:
        # Verify first: the binary upgrade survives a model that cannot load (the new master gives up),
        # a HUP does not (every new worker fails to boot and gunicorn halts): see GunicornHUP.
        model_module().install(new_model, self.model_path)
        return f"python model.py install NEW && {self.reload()}"

    def reload(self) -> str:
        """Serve the model now on disk, the binary upgrade way: USR2 starts a new master beside the old one,
        and gunicorn.conf.py's hook stops the old one once every new worker has loaded the model. Returns the
        command once the old master is gone; LayerError (the old master serving on) if the new one gave up."""
        old = self.master()
        os.kill(old, signal.SIGUSR2)
        second = Path(f"{self.pidfile}.2")  # the new master's PID file until the old one is gone
        if not wait_until(lambda: pid_in(second), 30):
            raise LayerError(f"{self.name}: kill -USR2 {old} started no new master; log:\n{self.log()[-2000:]}")
        new, old_master = Adopted(pid_in(second)), Adopted(old)
        wait_until(lambda: old_master.poll() is not None or new.poll() is not None, 120)
        if old_master.poll() is None:
            raise LayerError(f"{self.name}: the new master {new.pid} gave up (or took over 120 s), master {old} "
                             f"serves on; log:\n{self.log()[-2000:]}")  # fmt: skip
        # Promoted: the new master notices its parent is gone (within a second) and renames its PID file.
        # Until then it ignores USR2 ("Parent exists"), so a rollback must wait for it too.
        if not wait_until(lambda: pid_in(self.pidfile) == new.pid and not second.exists(), 10):
            raise LayerError(f"{self.name}: the new master {new.pid} did not take over {self.pidfile}")
        self.adopt(new)
        return f"kill -USR2 {old}"

    def adopt(self, new: Adopted) -> None:
        """Follow the master a binary upgrade started from now on (the old one, our child, is reaped)."""
        self.proc.wait(10)
        self.proc = new

    def release(self, model: Path | None = None, settings: dict[str, str] | None = None) -> str:
        """Verify first, then switch: `gunicorn --check-config` tries new settings (the environment is read at
        start, so they need a restart), `model.py install` the new model (then SIGHUP); either refuses."""
        done: list[str] = []
        if settings:
            self.check_config(settings, done)
        self.keep_previous()
        if model:
            try:
                self.install(model, done)
            except Refused:
                self.previous = None  # nothing changed: the old workers serve on
                raise
        self.extra_env.update(settings or {})
        done.append(self.switch(bool(settings)))
        return "; ".join(done)

    def check_config(self, settings: dict[str, str], done: list[str]) -> None:
        """`gunicorn --check-config` with ``settings`` added: loads the config and the app (and so the
        model) without serving; Refused with its last line when either fails."""
        command = [str(BIN / "gunicorn"), "--check-config", "-c", "gunicorn.conf.py", self.app]
        done.append(shlex.join([*(f"{k}={v}" for k, v in settings.items()), "gunicorn", *command[1:]]))
        out = subprocess.run(command, cwd=self.folder, env={**self.env(), **settings}, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        if out.returncode != 0:
            last = ((out.stdout + out.stderr).strip().splitlines() or [f"exit code {out.returncode}"])[-1]
            raise Refused(f"gunicorn --check-config refused it: {last}", "; ".join(done))

    def switch(self, settings_changed: bool) -> str:
        """New settings need a restart (down in between); a new artifact only a graceful reload."""
        if settings_changed:
            return super().switch(settings_changed)
        return self.reload()


class GunicornHUP(Gunicorn):
    """Stage 03 upgraded the other way, for comparison: SIGHUP, gunicorn's graceful reload, which stops the old
    workers as soon as it has forked the new ones, so nothing answers while they load the model."""

    name = "03 gunicorn, HUP"
    upgrade_mechanism = "verify + install the new model, then SIGHUP (graceful reload)"

    @classmethod
    def upgrade_alternative(cls) -> type[Layer] | None:
        return None

    def reload(self) -> str:
        os.kill(self.master(), signal.SIGHUP)
        return f"kill -HUP {self.master()}"


class GunicornWithoutConfig(Gunicorn):
    """Stage 03 with gunicorn's settings on the command line alone, as a first try often has them: without
    gunicorn.conf.py (which gunicorn reads from the folder unless given another: harness.gunicorn_defaults) there is
    no PROMETHEUS_MULTIPROC_DIR, so each worker counts in its own registry and /metrics reports whichever
    worker answered the scrape (the trap metrics.py describes). gunicorn's own lines are then in its default
    format, not JSON."""

    name = "03 gunicorn, no config file"

    def command(self) -> list[str]:
        workers = self.extra_env.get("WEB_CONCURRENCY", "2")
        bind = f"{LOOPBACK}:{self.port}"
        settings = ["--workers", workers, "--bind", bind, "--pid", str(self.pidfile)]
        return [str(BIN / "gunicorn"), "--config", "python:harness.gunicorn_defaults", *settings, self.app]
