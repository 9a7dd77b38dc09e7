"""Stage 03's checks: gunicorn started from the folder with its own gunicorn.conf.py (harness.local.Gunicorn)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from exercises.common import Fail
from exercises.common import answers
from exercises.common import crash_answers
from exercises.common import post
from exercises.common import rows
from exercises.common import serving
from exercises.common import train
from harness.core import wait_until
from harness.local import Gunicorn
from harness.local import GunicornHUP

HELPS = 1.15  # 03.4: doubling the workers helps while it multiplies requests/s by at least this
WORKERS_S = 20  # 03.1, 03.4: how long gunicorn may take to run the workers asked for
RESPAWN_S = 30  # 03.1: how long the master may take to replace the killed worker
HUP_S = 30  # 03.2: how long after HUP every worker may take to be a new one
HUP_ANSWER_S = 45  # 03.2: how long each request after HUP may wait (new workers without preload load the model first)


def gunicorn(folder: Path, model: Path, workers: int):
    """`make stage-3` run from ``folder`` with WEB_CONCURRENCY=``workers``, as a context manager."""
    return serving(Gunicorn(model, env={"WEB_CONCURRENCY": str(workers)}, folder=folder))


def check_03_1(folder: Path) -> None:
    """Question: after kill -9 of a worker, does the master change, and who starts the new worker?"""
    given = answers(folder, "03.1", ("master_pid_changes", "who_restarts"))
    with (
        tempfile.TemporaryDirectory(prefix="ex-03.1-") as tmp,
        gunicorn(folder, train(folder, Path(tmp) / "iris.joblib"), workers=2) as server,
    ):
        if not wait_until(lambda: len(server.workers()) == 2, WORKERS_S):
            raise Fail(f"{len(server.workers())} workers with WEB_CONCURRENCY=2", "2 workers")
        server.crash("worker")
        replaced = wait_until(server.recovered, RESPAWN_S)
        truth_changes = not server.alive()
        truth_who = "master" if replaced and not truth_changes else "nobody"
    if given["master_pid_changes"] is not truth_changes:
        raise Fail(f"master_pid_changes = {given['master_pid_changes']!r}", "what `pgrep -af gunicorn` shows")
    if str(given["who_restarts"]).strip().lower() != truth_who:
        raise Fail(f"who_restarts = {given['who_restarts']!r}", "the process that forked the new worker")


def check_03_2(folder: Path) -> None:
    """preload_app on by default: after a new model is installed, HUP keeps serving the old version."""
    with tempfile.TemporaryDirectory(prefix="ex-03.2-") as tmp:
        served = train(folder, Path(tmp) / "served" / "iris.joblib")
        v2 = train(folder, Path(tmp) / "v2" / "iris.joblib", version="2", c=0.05)
        with serving(GunicornHUP(served, env={"WEB_CONCURRENCY": "2"}, folder=folder)) as server:
            before = post(f"{server.base_url}/predict", rows(1)).json().get("model_version")
            old = set(server.workers())
            server.upgrade(v2)  # install version 2 over the served file, then HUP
            if not wait_until(lambda: len(server.workers()) == 2 and not old & set(server.workers()), HUP_S):
                raise Fail(f"workers {server.workers()} {HUP_S} s after HUP (before: {sorted(old)})", "2 new workers")
            # New workers without preload load the model first (seconds on a busy machine): wait for them.
            url = f"{server.base_url}/predict"
            versions = {post(url, rows(1), timeout=HUP_ANSWER_S).json().get("model_version") for _ in range(8)}
    if before != "1" or versions != {"1"}:
        raise Fail(
            f"model version {before} before HUP and {sorted(versions)} after",
            "version 1 before and after: with preload_app the workers fork from the master's copy",
        )


def check_03_4(folder: Path) -> None:
    """Measurement: requests/s at 1, 2 and 4 workers, where it stops helping and why."""
    given = answers(folder, "03.4", ("rps", "stops_helping_at", "limited_by"))
    rps = given["rps"]
    try:
        figures = {n: float(rps[str(n)]) for n in (1, 2, 4)}
    except (KeyError, TypeError, ValueError):
        raise Fail(f"rps = {rps!r}", "a table like rps = {1 = 540, 2 = 1000, 4 = 1010}") from None
    if min(figures.values()) <= 0:
        raise Fail(f"rps = {rps!r}", "positive requests/s measured with wrk")
    # Stops helping: the first worker count whose doubling multiplies requests/s by less than HELPS.
    expected = next((n for n, m in ((1, 2), (2, 4)) if figures[m] < figures[n] * HELPS), 4)
    if given["stops_helping_at"] != expected:
        raise Fail(
            f"stops_helping_at = {given['stops_helping_at']!r} with your figures {figures}",
            f"{expected}: the first count whose doubling adds less than {HELPS - 1:.0%}",
        )
    if str(given["limited_by"]).strip().lower() != "cpus":
        raise Fail(f"limited_by = {given['limited_by']!r}", "what runs out (one of: cpus, memory, network); see nproc")
    # The setting you recommend must really start that many workers from your gunicorn.conf.py.
    with (
        tempfile.TemporaryDirectory(prefix="ex-03.4-") as tmp,
        gunicorn(folder, train(folder, Path(tmp) / "iris.joblib"), workers=expected) as server,
    ):
        if not wait_until(lambda: len(server.workers()) == expected, WORKERS_S):
            raise Fail(f"{len(server.workers())} workers with WEB_CONCURRENCY={expected}", f"{expected} workers")


def check_03_3(folder: Path) -> None:
    """Question: gunicorn killed under load, its master and its workers (a master killed alone leaves its
    workers serving as orphans): do requests fail, and does anything bring it back? (03.1's worker came back:
    the master watches the workers; nobody watches the master.)"""
    with tempfile.TemporaryDirectory(prefix="ex-03.3-") as tmp:
        crash_answers(folder, "03.3", Gunicorn(train(folder, Path(tmp) / "iris.joblib"), folder=folder))
