"""The same client for every layer: a bounded request loop, and wrk for throughput.

``LoadRun`` records every request (when, how it ended, which model version
answered) so a scenario can count failures during a crash or an upgrade and
measure how long the service was down. ``wrk`` is the real load generator for
throughput and latency: a C program, so on a 2-core machine it leaves the
server as much CPU as a Python client could not.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import requests

from harness.core import LayerError
from harness.core import cpu_seconds
from harness.core import wait_until

# One flower, the same request everywhere (the first golden input), and its species.
EXAMPLE_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
EXAMPLE_LABEL = "setosa"
WRK_SCRIPT = Path(__file__).with_name("wrk_predict.lua")


@dataclass
class Outcome:
    """One request: start and end (monotonic seconds), and how it ended."""

    start: float
    end: float
    ok: bool
    detail: str  # HTTP status, or the exception class for a connection failure
    version: str | None = None
    label: str | None = None  # the species answered for EXAMPLE_ROW


@dataclass
class LoadReport:
    """Everything a bounded load run saw, with the figures scenarios report."""

    outcomes: list[Outcome] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    expected: str = EXAMPLE_LABEL  # the right answer for EXAMPLE_ROW: any other is a wrong answer

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def failed(self) -> int:
        return sum(not o.ok for o in self.outcomes)

    @property
    def versions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            if o.ok:
                counts[o.version] = counts.get(o.version, 0) + 1
        return counts

    def last_version(self) -> str | None:
        """The model version of the last successful response."""
        answered = [o for o in self.outcomes if o.ok]
        return max(answered, key=lambda o: o.end).version if answered else None

    def wrong(self) -> list[Outcome]:
        """Successful requests that named the wrong species: a model that loads and answers, wrongly."""
        return [o for o in self.outcomes if o.ok and o.label not in (None, self.expected)]

    def wrong_for(self) -> float:
        """Seconds from the first wrong answer to the last (0 when there was none)."""
        ends = [o.end for o in self.wrong()]
        return max(ends) - min(ends) if ends else 0.0

    def longest_stall(self, since: float | None = None) -> float:
        """The longest time without a successful answer: the widest gap between two successes ending
        (from ``since`` on, when given).

        A layer can fail no request and still stall (a request waiting for a
        worker that is being replaced); failed requests alone would hide it.
        """
        since = self.started if since is None else since
        ends = sorted(o.end for o in self.outcomes if o.ok and o.end > since)
        edges = [since, *ends] + ([self.ended] if self.ended else [])
        return max((b - a for a, b in zip(edges, edges[1:], strict=False)), default=0.0)

    def slowest(self, until: float | None = None) -> float:
        """The slowest successful request, in seconds (of those that ended before ``until``, when given)."""
        return max((o.end - o.start for o in self.outcomes if o.ok and (until is None or o.end < until)), default=0.0)

    def failure_kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            if not o.ok:
                counts[o.detail] = counts.get(o.detail, 0) + 1
        return counts

    def timeline(self, bucket_s: float = 0.1) -> dict[str, list]:
        """Requests that ended in each ``bucket_s`` slice since the start: ok (right or wrong), failed, and of
        the ok ones the wrong answers, for plots."""
        buckets = int((self.ended - self.started) / bucket_s) + 1
        ok, failed, wrong = [0] * buckets, [0] * buckets, [0] * buckets
        for o in self.outcomes:
            index = min(buckets - 1, max(0, int((o.end - self.started) / bucket_s)))
            (ok if o.ok else failed)[index] += 1
            wrong[index] += o.ok and o.label not in (None, self.expected)
        return {"t_s": [round(i * bucket_s, 3) for i in range(buckets)], "ok": ok, "failed": failed, "wrong": wrong}

    def summary(self) -> dict[str, Any]:
        """Plain figures for a results file or an assertion message."""
        return {
            "requests": self.total,
            "ok": self.total - self.failed,
            "failed": self.failed,
            "failure_kinds": self.failure_kinds(),
            "longest_stall_s": round(self.longest_stall(), 3),
            "slowest_s": round(self.slowest(), 3),
            "versions": self.versions,
            "wrong": len(self.wrong()),
            "wrong_for_s": round(self.wrong_for(), 3),
            "duration_s": round(self.ended - self.started, 3),
        }


class LoadRun:
    """Send /predict requests from ``clients`` threads until stopped, bounded in time and count.

    Use as a context manager: the load runs while the body of the ``with``
    injects a fault; leaving the block stops it and ``report`` holds the result.
    """

    def __init__(
        self,
        base_url: str,
        clients: int = 4,
        max_seconds: float = 60.0,
        max_requests: int = 50_000,
        timeout: float = 5.0,
    ):
        self.url = f"{base_url}/predict"
        self.clients = clients
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.timeout = timeout
        self.report = LoadReport()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _client(self) -> None:
        session = requests.Session()
        body = {"instances": [EXAMPLE_ROW]}
        while not self._stop.is_set():
            with self._lock:
                if len(self.report.outcomes) >= self.max_requests:
                    return
            start = time.monotonic()
            if start - self.report.started > self.max_seconds:
                return
            try:
                response = session.post(self.url, json=body, timeout=self.timeout)
                ok = response.status_code == 200
                answer = response.json() if ok else {}
                label = answer["predictions"][0]["label"] if ok else None
                outcome = Outcome(start, time.monotonic(), ok, str(response.status_code), answer.get("model_version"),
                                  label)  # fmt: skip
            except (requests.RequestException, ValueError, LookupError, TypeError) as exc:
                outcome = Outcome(start, time.monotonic(), False, type(exc).__name__)
                session = requests.Session()  # a fresh connection after a failure
                time.sleep(0.01)  # a failing server answers at once: do not spin
            with self._lock:
                self.report.outcomes.append(outcome)

    def __enter__(self) -> LoadRun:
        self.report.started = time.monotonic()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self.report.ended = time.monotonic()

    def count(self) -> int:
        """Requests completed so far."""
        with self._lock:
            return len(self.report.outcomes)

    def wait_for(self, predicate, timeout: float, interval: float = 0.05) -> bool:
        """Wait until ``predicate(report)`` holds (under the lock) or ``timeout`` passes."""

        def holds() -> bool:
            with self._lock:
                return predicate(self.report)

        return wait_until(holds, timeout, interval)

    def warm_up(self, requests: int = 50, timeout: float = 10.0) -> int:
        """Wait until ``requests`` have completed, so a fault hits a loaded server; LayerError if they do not."""
        if not self.wait_for(lambda r: r.total >= requests, timeout):
            raise LayerError(f"only {self.count()} of {requests} warm-up requests completed in {timeout:.0f} s")
        return self.count()

    def settle(self, requests: int = 50, timeout: float = 20.0) -> int:
        """After an event: wait for ``requests`` more to complete (answered or failed), so late failures
        are counted too; LayerError if the clients stopped getting any outcome at all."""
        target = self.count() + requests
        if not self.wait_for(lambda r: r.total >= target, timeout):
            raise LayerError(f"the load stalled: {self.count()} of {target} requests completed in {timeout:.0f} s")
        return self.count()


def send_in_background(method: str, url: str, timeout: float = 60.0, **kwargs: Any) -> Future[Outcome]:
    """Send one request from a background thread; the Future holds its Outcome.

    For a request that must be in flight while the caller does something else
    (a slow request during SIGTERM, a hung one during a worker timeout).
    ``kwargs`` go to ``requests.request``; a connection failure is an Outcome
    with ``ok=False`` and the exception class as ``detail``, never an exception.
    """
    future: Future[Outcome] = Future()

    def send() -> None:
        start = time.monotonic()
        try:
            response = requests.request(method, url, timeout=timeout, **kwargs)
            outcome = Outcome(start, time.monotonic(), response.status_code == 200, str(response.status_code))
        except requests.RequestException as exc:
            outcome = Outcome(start, time.monotonic(), False, type(exc).__name__)
        future.set_result(outcome)

    threading.Thread(target=send, daemon=True).start()
    return future


def wrk_available() -> bool:
    """Whether the wrk load generator is installed (Debian/Ubuntu: apt install wrk)."""
    return shutil.which("wrk") is not None


def run_wrk(
    base_url: str,
    connections: int,
    seconds: float = 5,
    threads: int | None = None,
    *,
    path: str = "/predict",
    body: Path | None = None,
    serving_pids: Callable[[], list[int]] | None = None,
) -> dict[str, Any]:
    """POST to ``base_url`` + ``path`` at ``connections`` concurrent clients with wrk; figures as a dict.

    The body is one flower for /predict, or the JSON in the file ``body`` (the
    same bytes to every server). Reports requests/s, latency percentiles (ms),
    errors of every kind, and the CPU wrk itself used (cores, and microseconds
    per request), because on a small machine the load generator competes with
    the server. With ``serving_pids`` (a layer's ``serving_pids``) it also
    reports the server's CPU over the run: cores, microseconds per request, and
    how many of its processes worked (a tenth of a core or more).
    """
    if not wrk_available():
        raise RuntimeError("wrk is not installed (apt-get install wrk, or brew install wrk)")
    threads = threads or min(connections, 2)
    server_before = {pid: cpu_seconds(pid, reaped=True) for pid in serving_pids()} if serving_pids else {}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "5s",
         "-s", str(WRK_SCRIPT), f"{base_url}{path}"],
        capture_output=True, text=True, timeout=seconds + 30,
        env={**os.environ, "WRK_BODY": str(body)} if body else None,
    )  # fmt: skip
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:  # wrk gives up at once when nothing listens: that is a failure, not zero
        return {"connections": connections, "requests": 0, "rps": 0.0, "duration_s": 0.0,
                "errors": {"connect": connections}, "latency_ms": {}, "client_cpu_cores": None,
                "failure": (proc.stderr or proc.stdout).strip()}  # fmt: skip
    result = json.loads(line.removeprefix("WRK_JSON "))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    duration, count = result["duration_s"], result["requests"]
    result["connections"] = connections
    result["rps"] = round(count / duration, 1) if duration else 0.0
    result["client_cpu_cores"] = round(cpu / duration, 2) if duration else 0.0
    result["client_cpu_us_per_request"] = round(cpu / count * 1e6, 1) if count else None
    if serving_pids:
        # Workers started during the run (max_requests recycles them) count from their start;
        # those that ended count through their master's reaped CPU.
        used = {pid: cpu_seconds(pid, reaped=True) - server_before.get(pid, 0.0) for pid in serving_pids()}
        result["server_cpu_cores"] = round(sum(used.values()) / duration, 2) if duration else None
        result["server_cpu_us_per_request"] = round(sum(used.values()) / count * 1e6, 1) if count else None
        result["server_busy_processes"] = sum(u >= 0.1 * duration for u in used.values()) if duration else None
    return result
