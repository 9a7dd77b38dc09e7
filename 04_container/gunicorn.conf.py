# DELIBERATE COPY: byte-identical in 03_wsgi, 04_container and 05_kubernetes
# (tests/test_stage_copies.py); edit 03_wsgi/gunicorn.conf.py, then `make sync`.
"""gunicorn settings for the iris API, written to be read.

Start it with:  gunicorn -c gunicorn.conf.py "app:create_app()"
A setting with an environment variable named beside it (HOST, PORT,
WEB_CONCURRENCY, GUNICORN_*, PIDFILE, PROMETHEUS_MULTIPROC_DIR) can be overridden by that variable, so the
same file serves a laptop, a container and a Kubernetes pod; a number that is
not one stops gunicorn with one line naming it. The others (worker_class,
max_requests_jitter, worker_tmp_dir, the log destinations, control_socket) are
fixed here on purpose: change them in this file.
Reference: https://docs.gunicorn.org/en/stable/settings.html
"""

import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger


def _env_int(name: str, default: int, most: int | None = None) -> int:
    """A whole-number setting from the environment; a bad one stops gunicorn with one line naming it."""
    value = os.environ.get(name, str(default))
    if not value.isdigit() or int(value) < 1 or (most is not None and int(value) > most):
        accepted = f"a whole number from 1 to {most}" if most else "a whole number of at least 1"
        raise SystemExit(f"error: {name} must be {accepted}, got {value!r}")
    return int(value)


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """A setting with a few accepted values; anything else stops gunicorn with one line naming them."""
    value = os.environ.get(name, default)
    if value not in choices:
        raise SystemExit(f"error: {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _resolvable(name: str, host: str, port: int) -> str:
    """A host this machine can listen on: an address or a name it resolves (checked before binding)."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise SystemExit(f"error: {name} must be an address or a name this machine resolves, got {host!r}") from None
    return host


def _usable_cpus() -> int:
    """The CPUs this process may use: taskset and cpusets count, not the host's total.

    os.process_cpu_count() (Python 3.13+) and os.sched_getaffinity (Linux) both
    honour them; macOS before 3.13 has neither, and os.cpu_count() is the best it offers.
    """
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# --- Where to listen ---------------------------------------------------------
# HOST/PORT: the same variables as every other stage. 127.0.0.1 keeps the
# server private to this machine; a container sets HOST=0.0.0.0 itself.
# A port outside 1-65535, or a name that resolves to nothing, stops gunicorn with one line.
port = _env_int("PORT", 8000, most=65535)
bind = f"{_resolvable('HOST', os.environ.get('HOST', '127.0.0.1'), port)}:{port}"

# --- How many processes --------------------------------------------------------
# WEB_CONCURRENCY: worker processes. Each is a full Python process (interpreter,
# numpy, scikit-learn: the model itself is tiny) serving one request at a time
# (sync workers). Our requests are mostly CPU-bound, so one per CPU is the
# starting point; a few more can help while some workers wait on the network
# (notebooks/03_wsgi.ipynb measures 1 to 4 workers), at the price of one more
# process in memory each. (gunicorn itself reads WEB_CONCURRENCY before this
# file: `make stage-3` checks it first; gunicorn started by hand with a value
# that is not a number stops with gunicorn's own traceback.)
# We count the CPUs *this process may use* (taskset and cpusets honoured, see
# _usable_cpus), not the host's cpu_count(). Typical range: 1 to 2 x CPUs.
# In Kubernetes, set it to match the CPU limit and scale with replicas instead.
workers = _env_int("WEB_CONCURRENCY", _usable_cpus())

# sync: one request per worker at a time. Right for short CPU-bound work like a
# model prediction; threads would only contend for the GIL, and async workers
# help only when requests wait on I/O.
worker_class = "sync"

# --- When to give up on a worker -----------------------------------------------
# GUNICORN_TIMEOUT: a worker silent for this many seconds is killed and replaced
# (the master watches a heartbeat file). A prediction takes milliseconds, so 30 s
# only ever fires on a hung worker. Range: a few times your slowest request.
timeout = _env_int("GUNICORN_TIMEOUT", 30)

# GUNICORN_GRACEFUL_TIMEOUT: on SIGTERM or a reload, workers finish in-flight
# requests for up to this many seconds before being killed. Keep it below the
# time your supervisor waits (Docker's stop timeout, Kubernetes'
# terminationGracePeriodSeconds minus the preStop wait).
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 20)

# GUNICORN_MAX_REQUESTS: recycle a worker after this many requests, a safety net
# against slow memory leaks. A recycle is not free: the new worker imports
# scikit-learn and loads the model (about 2 s of CPU) and serves nothing
# meanwhile, and workers sharing the load evenly reach the limit together. At
# 10,000 a busy server rebooted every worker every few seconds, sometimes all
# at once (make bench-profile counts the boots). So the limit is large, a net
# only, and the jitter (half the limit) keeps workers from recycling together.
# Range: 0 (off, gunicorn's default) to millions.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 1_000_000)
max_requests_jitter = max_requests // 2

# --- Loading the app -----------------------------------------------------------
# GUNICORN_PRELOAD=1 loads the app (and the model) once in the master before
# forking: workers share those pages copy-on-write (less memory per worker,
# faster boot) BUT a HUP then restarts workers from the master's old copy, so
# a new model on disk is NOT picked up. The binary upgrade (USR2, below) starts
# a new master, which loads the new model either way.
preload_app = _env_choice("GUNICORN_PRELOAD", "0", ("0", "1")) == "1"

# The heartbeat file every worker touches. /dev/shm is memory-backed: on a disk
# (or a container's overlay filesystem) a slow fsync can stall the heartbeat
# and get healthy workers killed. Falls back to the default temp dir elsewhere.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# --- Logs ----------------------------------------------------------------------
# One JSON object per line (logs.py), so a program can search them. The app writes
# the access line itself, with the fields gunicorn cannot know (the request id, the
# model version): gunicorn's own access log stays off (None), and its other lines
# ("Booting worker", "Handling signal") go through the same JSON formatter.
# "-" means stderr: let the terminal, Docker or Kubernetes collect logs.
accesslog = None
errorlog = "-"


class JsonLogger(Logger):
    """gunicorn's logger with every handler writing JSON lines (logs.JsonFormatter)."""

    def setup(self, cfg) -> None:
        # The app's format (logs.py), imported here, when gunicorn runs: it starts in the stage folder (`make
        # stage-3`, the image's WORKDIR, or --chdir) and puts that folder on the import path first. A program
        # that only reads this file's settings (a notebook reads `workers`) needs neither.
        from logs import JsonFormatter

        super().setup(cfg)
        for handler in self.error_log.handlers + self.access_log.handlers:
            handler.setFormatter(JsonFormatter())


logger_class = JsonLogger


def on_starting(server) -> None:
    """In the master, before it starts: whatever it fails to catch is logged as one JSON record, not a
    traceback over many lines, and what its stop would have done is done (its PID file, on_exit). gunicorn 27
    can raise "App failed to load" a second time while it stops, when several workers fail to boot at once."""

    def uncaught(kind, value, trace) -> None:
        server.log.critical("the master stopped on %s: %s", kind.__name__, value, exc_info=(kind, value, trace))
        if server.pidfile is not None:
            server.pidfile.unlink()
        on_exit(server)

    sys.excepthook = uncaught


# GUNICORN_LOGLEVEL: gunicorn's own levels (it would take an unknown one as "info" without a word).
loglevel = _env_choice("GUNICORN_LOGLEVEL", "info", ("debug", "info", "warning", "error", "critical"))

# --- Process management --------------------------------------------------------
# PIDFILE: where the master writes its PID, so `kill -HUP $(cat $PIDFILE)`
# reloads it. Unset means no file.
pidfile = os.environ.get("PIDFILE") or None

# gunicorn 25.1+ opens a control socket (for `gunicornc`) by default in
# ~/.gunicorn, which fails for a non-root user without a home directory (our
# container user): only a logged warning, but noise at every start. Put it in
# the temp dir, one per port and master PID, so servers never clash and a new
# master started by USR2 does not lose its socket when the old one exits.
control_socket = os.path.join(tempfile.gettempdir(), f"gunicorn-{port}-{os.getpid()}.ctl")


# --- Upgrading without a pause: the binary upgrade ------------------------------
# `kill -HUP <master>` stops the old workers as soon as it has forked new ones,
# which then take a second or two to load scikit-learn and the model: nothing
# answers meanwhile. `kill -USR2 <master>` does it the other way round: it starts
# a second master (the old one's child, PID file PIDFILE.2) on the same
# listening socket, whose workers load the model on disk now while the old
# workers keep serving. This hook finishes the upgrade: once every new worker
# has loaded a model that passes its canaries, the new master's workers stop
# the old master gracefully (SIGTERM: its workers finish their requests), and
# the new master takes over PIDFILE. The way back is automatic too: a new
# worker that cannot load the model, or whose model fails a canary, exits
# before serving, and gunicorn stops the new master ("App failed to load.");
# the old master never got its SIGTERM and serves on. (Under a supervisor that started the old
# master, the new one outlives it as an orphan: see the README.)
def post_worker_init(worker) -> None:
    """In each worker, after the app has loaded: finish a binary upgrade (see above); otherwise nothing."""
    old_master = os.environ.get("GUNICORN_PID")  # set in a master started by USR2 until it takes over
    if not old_master:
        return
    problem = getattr(worker.wsgi, "extensions", {}).get("canary_problem")
    if problem:  # never serve it: exiting with APP_LOAD_ERROR makes gunicorn stop this new master
        worker.log.error("binary upgrade abandoned: the new model %s; master %s serves on", problem, old_master)
        sys.exit(Arbiter.APP_LOAD_ERROR)
    booted = Path(tempfile.gettempdir()) / f"gunicorn-{port}-{worker.ppid}-booted"
    booted.mkdir(exist_ok=True)
    (booted / str(os.getpid())).touch()
    if len(list(booted.iterdir())) >= worker.cfg.workers:
        worker.log.info("binary upgrade: every new worker is ready, stopping the old master %s", old_master)
        os.kill(int(old_master), signal.SIGTERM)
        shutil.rmtree(booted, ignore_errors=True)  # two workers may finish at once: both signal, both clean


# --- Metrics across workers ----------------------------------------------------
# Each worker counts its own requests; /metrics must report the server's. In
# prometheus-client's multiprocess mode every worker writes its counts to files
# in PROMETHEUS_MULTIPROC_DIR and /metrics adds them up (metrics.py, which makes
# the folder). The library chooses the mode when it is first imported, so gunicorn
# sets the variable in the master (raw_env), before any worker imports the app.
# A server gets a folder of its own, named after its master's PID: a HUP reload
# (the same master) keeps it, and a binary upgrade's new master inherits it, so
# counting goes on. Set the variable yourself to choose the folder, and empty it
# before each start. (https://prometheus.github.io/client_python/multiprocess/)
METRICS_PREFIX = f"gunicorn-{port}-"
raw_env = [
    "PROMETHEUS_MULTIPROC_DIR="
    + os.environ.get(
        "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"{METRICS_PREFIX}{os.getpid()}-metrics")
    )
]


def child_exit(server, worker) -> None:
    """In the master, when a worker has exited: its live gauges leave the sum; its counts stay in it."""
    from prometheus_client import multiprocess  # imported here, once raw_env has set the folder

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """In the master, as it exits: remove the metrics folder if it is one this file named, unless another
    master counts there (the new master of a binary upgrade, or the old one serving on after a new one gave up)."""
    from prometheus_client import multiprocess

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if not os.path.isdir(folder):
        return
    multiprocess.mark_process_dead(os.getpid())  # with preload_app the master loaded the model too
    ours = os.path.basename(folder).startswith(METRICS_PREFIX) and folder.endswith("-metrics")
    parent = os.environ.get("GUNICORN_PID")  # set in a new master until it takes over
    if ours and not server.reexec_pid and not (parent and _alive(int(parent))):
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
