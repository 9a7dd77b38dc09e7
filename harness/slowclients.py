"""Slow clients: connections that trickle a request, while normal clients keep asking.

A slow client opens a connection, sends the request headers and one byte of
a 200-byte body, then waits. A server that hands each connection to a worker
as soon as it is accepted (gunicorn's sync workers) has that worker wait with
it; a buffering proxy (nginx) waits instead, for a few KiB per connection.

``slow_clients`` is the scenario, the same for every served layer: hold N such
connections for ``hold`` seconds while paced normal clients send /predict, and
report the share of the normal requests started meanwhile that were answered,
their p99, and how long the layer stayed impaired.

    python -m harness.slowclients PORT [N] [HOLD]   # against any server on 127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from typing import Any

import requests

from harness.core import Layer
from harness.load import EXAMPLE_ROW
from harness.load import LoadReport
from harness.load import Outcome

#: how many slow clients the scorecard and the tests send: the limit (2, one per
#: sync worker on a 2-CPU machine) and a crowd (50)
COUNTS = (2, 50)
HOLD_S = 8.0  # how long the scorecard's slow clients hold their connections
BODY_BYTES = 200


class SlowClients:
    """``count`` connections to ``host:port`` that send headers and one body byte, then wait.

    A context manager: the connections are open inside the ``with`` block and
    closed when it ends. ``connected`` counts the connections that were
    established; ``closed_by_server()`` those the server has closed since
    (a timeout answer such as nginx's 408, or a dropped connection).
    """

    def __init__(self, host: str, port: int, count: int, connect_timeout: float = 3.0):
        self.address = (host, port)
        self.count = count
        self.connect_timeout = connect_timeout
        self.sockets: list[socket.socket] = []
        self.connected = 0

    def head(self) -> bytes:
        """A valid POST /predict announcing a 200-byte JSON body, and the body's first byte."""
        return (
            f"POST /predict HTTP/1.1\r\nHost: {self.address[0]}:{self.address[1]}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {BODY_BYTES}\r\n\r\n{{"
        ).encode()

    def __enter__(self) -> SlowClients:
        for _ in range(self.count):
            sock = socket.socket()
            sock.settimeout(self.connect_timeout)
            try:
                sock.connect(self.address)
                sock.sendall(self.head())
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            self.sockets.append(sock)
            self.connected += 1
        return self

    def closed_by_server(self) -> int:
        """Connections the server has closed (or answered, e.g. 408) while we were still sending."""
        closed = 0
        for sock in self.sockets:
            try:
                if sock.recv(4096, socket.MSG_PEEK) is not None:
                    closed += 1  # data (an error answer) or b"" (end of stream)
            except BlockingIOError:
                continue  # nothing to read: the server is still waiting for our body
            except OSError:
                closed += 1  # reset
        return closed

    def __exit__(self, *exc: Any) -> None:
        for sock in self.sockets:
            sock.close()


def _normal_client(url: str, report: LoadReport, lock: threading.Lock, stop: threading.Event,
                   interval: float, timeout: float, deadline: float, max_requests: int) -> None:  # fmt: skip
    """One paced client: a /predict every ``interval`` s (or right after a slower answer) until stopped."""
    session = requests.Session()
    body = {"instances": [EXAMPLE_ROW]}
    next_at = time.monotonic()
    while not stop.is_set() and time.monotonic() < deadline:
        with lock:
            if len(report.outcomes) >= max_requests:
                return
        start = time.monotonic()
        try:
            response = session.post(url, json=body, timeout=timeout)
            ok = response.status_code == 200
            outcome = Outcome(start, time.monotonic(), ok, str(response.status_code),
                              response.json().get("model_version") if ok else None)  # fmt: skip
        except (requests.RequestException, ValueError) as exc:
            outcome = Outcome(start, time.monotonic(), False, type(exc).__name__)
            session = requests.Session()
        with lock:
            report.outcomes.append(outcome)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at = max(next_at, time.monotonic())  # after a slow answer, do not burst to catch up


def impaired(outcomes: list[Outcome]) -> float | None:
    """Seconds from the first failed request to the first answer after the last failure.

    0.0 when nothing failed; None when the layer never answered again.
    """
    failures = [o for o in outcomes if not o.ok]
    if not failures:
        return 0.0
    last = max(o.end for o in failures)
    back = [o.end for o in outcomes if o.ok and o.start >= last - 1e-3]
    return (min(back) - min(o.start for o in failures)) if back else None


def _quantile_ms(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0] * 1000, 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 1)


def slow_clients(
    layer: Layer,
    slow: int = 50,
    hold: float = HOLD_S,
    clients: int = 4,
    interval: float = 0.1,
    warmup: float = 1.0,
    after: float = 3.0,
    timeout: float = 2.0,
    max_requests: int = 20_000,
    timeline: float | None = 0.25,
) -> dict[str, Any]:
    """Hold ``slow`` slow connections for ``hold`` s while ``clients`` paced clients send /predict.

    Each normal client sends a request every ``interval`` s and gives up on one
    after ``timeout`` s. The load starts ``warmup`` s before the slow clients
    connect and goes on ``after`` s after they leave, so a layer that stays
    impaired after they are gone shows it. Bounded: at most ``max_requests``
    normal requests and warmup + hold + after + timeout seconds.

    ``during`` covers the normal requests *started* while the slow connections
    were held: how many there were, the share answered (200), and the p50/p99
    of the answered ones. ``impaired_s`` is from the first failed normal
    request to the first success after the last failure (0 when none failed,
    None when the layer never answered again before the load ended).
    """
    host, port = layer.base_url.removeprefix("http://").rsplit(":", 1)
    report, lock, stop = LoadReport(), threading.Lock(), threading.Event()
    report.started = time.monotonic()
    deadline = report.started + warmup + hold + after + timeout
    threads = [
        threading.Thread(
            target=_normal_client,
            daemon=True,
            args=(f"{layer.base_url}/predict", report, lock, stop, interval, timeout, deadline, max_requests),
        )  # fmt: skip
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    with SlowClients(host, int(port), slow) as trickle:
        opened = time.monotonic()
        time.sleep(max(0.0, opened + hold - time.monotonic()))
        closed_by_server = trickle.closed_by_server()
        released = time.monotonic()
    time.sleep(after)
    stop.set()
    for thread in threads:
        thread.join(timeout + 5)
    report.ended = time.monotonic()

    with lock:
        outcomes = list(report.outcomes)
    during = [o for o in outcomes if opened <= o.start < released]
    answered = [o.end - o.start for o in during if o.ok]
    downtime = impaired(outcomes)
    result = {
        "layer": layer.name,
        "slow_clients": slow,
        "slow_connected": trickle.connected,
        "slow_closed_by_server": closed_by_server,
        "hold_s": hold,
        "normal_clients": clients,
        "interval_s": interval,
        "timeout_s": timeout,
        "during": {
            "requests": len(during),
            "answered": len(answered),
            "answered_share": round(len(answered) / len(during), 4) if during else None,
            "p50_ms": _quantile_ms(answered, 50),
            "p99_ms": _quantile_ms(answered, 99),
            "failure_kinds": LoadReport(outcomes=during).failure_kinds(),
        },
        "requests": len(outcomes),
        "ok": sum(o.ok for o in outcomes),
        "failed": sum(not o.ok for o in outcomes),
        "impaired_s": None if downtime is None else round(downtime, 3),
        "recovered": downtime is not None,
        "longest_stall_s": round(report.longest_stall(), 3),
        "event_s": round(opened - report.started, 3),
        "release_s": round(released - report.started, 3),
    }
    if timeline:
        result["timeline"] = report.timeline(timeline)
    return result


def measure(layer: Layer, counts: tuple[int, ...] = COUNTS, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """``slow_clients`` once per count in ``counts``, keyed by the count (as a string, for JSON)."""
    return {str(n): slow_clients(layer, slow=n, **kwargs) for n in counts}


def entry(layer: Layer, hold: float = HOLD_S) -> dict[str, Any]:
    """The scorecard's slow-clients figures for a started ``layer``: its name, whether a buffering proxy
    is in front, and ``runs`` (``measure``)."""
    return {"layer": layer.name, "proxy": layer.behind_proxy, "runs": measure(layer, hold=hold)}


def describe(result: dict[str, Any]) -> str:
    """One line for a README or a test message."""
    d = result["during"]
    p99 = f"p99 {d['p99_ms']} ms" if d["p99_ms"] is not None else "no answer"
    impaired = "never recovered" if result["impaired_s"] is None else f"impaired {result['impaired_s']} s"
    return (
        f"{result['slow_clients']} slow clients for {result['hold_s']:.0f} s: {d['answered']} of {d['requests']} "
        f"normal requests answered, {p99}, {impaired}"
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: slow clients against any server on 127.0.0.1:PORT."""
    parser = argparse.ArgumentParser(prog="python -m harness.slowclients", description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int, help="the server's port on 127.0.0.1")
    parser.add_argument("slow", type=int, nargs="?", default=50, help="slow clients (default 50)")
    parser.add_argument("hold", type=float, nargs="?", default=8.0, help="seconds they hold on (default 8)")
    args = parser.parse_args(argv)

    class AnyServer(Layer):
        name = "server"

    result = slow_clients(AnyServer(port=args.port), slow=args.slow, hold=args.hold, timeline=None)
    print(describe(result))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
