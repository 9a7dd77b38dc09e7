"""Time to notice: how long after a fault an operator's first signal appears at each layer, and what it says.

Two faults, the same at every served layer:

- ``hung``: a worker stops answering but stays (SIGSTOP: a deadlock looks the same from outside); where the
  layer has no workers, its one server process does.
- ``crash_loop``: the served model file goes bad and the process that serves it dies, so whatever restarts
  it loads the bad file (``Layer.crash_loop``: on disk behind the layer's back; in Kubernetes, where the file
  lives in the image, an image that carries it rolled out).

A signal is what an operator could look at without knowing what happened: the layer's log lines at WARNING
or worse (``Layer.log``, JSON: each carries its time), and what the layer's supervisor reports
(``Layer.operator_signals``: a container's status, a pod's events). ``first_signal_s`` runs from the fault
to the earliest signal; "never" means nothing within the observed window. The clients' view (failed
requests, the longest time without an answer) sits beside it.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from harness.core import Layer
from harness.core import wait_until
from harness.load import LoadRun

FAULTS = {
    "hung": "a worker stops answering and stays (SIGSTOP; the server process itself where there are no workers)",
    "crash_loop": "the served model file goes bad, then the process serving it dies: each restart loads the bad file",
}
OBSERVE_S = 45.0  # longer than gunicorn's 30 s worker timeout, the slowest watchdog of the default settings
TAIL_S = 8.0  # watched on after the first signal: the next ones often name the cause (a worker that cannot boot)


def hang_target(layer: Layer) -> str:
    """What ``hung`` stops: one worker where the layer has workers, else the server."""
    return "worker" if "worker" in layer.crash_targets else "server"


def inject(layer: Layer, fault: str) -> str:
    """Cause ``fault`` in a started ``layer``; return the command a reader would type to cause it."""
    if fault == "hung":
        return layer.crash(hang_target(layer), signal.SIGSTOP)
    if fault == "crash_loop":
        return layer.crash_loop()
    raise ValueError(f"a fault is one of {', '.join(FAULTS)}, got {fault!r}")


def undo(layer: Layer, fault: str, timeout: float = 180.0) -> str:
    """Take ``fault`` away and wait until the layer answers again; return what it took."""
    if fault == "hung":
        done = layer.resume()  # whatever is still stopped (a watchdog may have killed it already)
    else:
        done = layer.repair()
    wait_until(layer.ready, timeout, interval=0.5)
    return done


class Watcher:
    """The operator's signals about ``layer`` since ``since`` (time.time()), each as first seen: a status (a
    container's health) has no time of its own, so it is asked for while things happen. ``poll`` looks once;
    as a context manager it looks every ``interval`` s in a thread until the block ends, and once more."""

    def __init__(self, layer: Layer, since: float, interval: float = 1.0):
        self.layer, self.since, self.interval = layer, since, max(interval, layer.poll_interval)
        self.seen: dict[tuple[str, str], dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def poll(self) -> None:
        for found in self.layer.operator_signals(self.since):
            self.seen.setdefault((found["source"], found["text"]), found)

    def signals(self) -> list[dict[str, Any]]:
        """Every signal seen so far, earliest first."""
        return sorted(self.seen.values(), key=lambda s: s["at_s"])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.poll()


def time_to_notice(
    layer: Layer, fault: str, observe: float = OBSERVE_S, clients: int = 4, timeline: float | None = None
) -> dict[str, Any]:
    """``fault`` in a started ``layer`` under load from ``clients``: the operator's signals in order (each with
    seconds since the fault, where it showed and what it said), the first of them, and the clients' view.
    Watches until the first signal (and ``TAIL_S`` more), or ``observe`` s; then undoes the fault."""
    with LoadRun(layer.base_url, clients=clients, max_seconds=observe + 600, max_requests=500_000) as run:
        run.warm_up()
        since, at = time.time(), time.monotonic()
        injected: dict[str, Any] = {}
        # An injection may take a while (a rollout waits for its deadline): signals are watched meanwhile.
        worker = threading.Thread(target=lambda: injected.update(command=_try(inject, layer, fault)), daemon=True)
        worker.start()
        watch = Watcher(layer, since, interval=0.25)
        deadline = at + observe
        while time.monotonic() < deadline:
            watch.poll()
            if watch.seen:
                deadline = min(deadline, time.monotonic() + TAIL_S)
            time.sleep(watch.interval)
        signals = watch.signals()
        # Seen, the fault is in place: undo it now, without waiting for the injection to return (a rollout
        # would wait out its progress deadline, a minute, to say what the signals said already).
        worker.join(timeout=0 if signals else 300)
        undone_at = time.monotonic()
        undone = undo(layer, fault)
        back_s = time.monotonic() - undone_at
        worker.join(timeout=300)
        time.sleep(0.5)
    report = run.report.summary()
    first = min(signals, key=lambda s: s["at_s"]) if signals else None
    report.update(
        fault=fault,
        what=FAULTS[fault],
        command=injected.get("command", ""),
        first_signal_s=first["at_s"] if first else None,
        first_signal=first,
        signals=sorted(signals, key=lambda s: s["at_s"])[:10],
        observed_s=round(undone_at - at, 3),
        undo=undone,
        answers_again_s=round(back_s, 3),
        event_s=round(at - run.report.started, 3),
    )
    if timeline:
        report["timeline"] = run.report.timeline(timeline)
    return report


def _try(action, *args) -> str:
    """``action(*args)``, or what stopped it, in one line (a refused rollout is part of the story)."""
    try:
        return action(*args)
    except Exception as exc:  # noqa: BLE001 (reported, not hidden: the refusal is the layer's answer)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def every(layer: Layer, observe: float = OBSERVE_S, timeline: float | None = None, say: Any = None) -> dict:
    """Both faults in turn against one started ``layer``, each undone before the next; ``say`` hears what runs."""
    results = {}
    for fault, what in FAULTS.items():
        if say:
            say(f"[{layer.name}] time to notice: {what}")
        results[fault] = time_to_notice(layer, fault, observe=observe, timeline=timeline)
    return results


def describe(result: dict[str, Any]) -> str:
    """One line: the first signal (when, where, what it said) and the clients' view."""
    first = result["first_signal"]
    seen = (
        f'first signal after {first["at_s"]:.1f} s, {first["source"]}: "{first["text"][:120]}"'
        if first
        else f"no signal within {result['observed_s']:.0f} s"
    )
    return f"{seen}; {result['failed']} of {result['requests']} requests failed meanwhile"


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """``every``'s results as a Markdown table, one row per fault (for the notebooks)."""
    rows = [
        "| fault | how | first signal | where | what it said | failed requests | longest without an answer |",
        "|---|---|---|---|---|---|---|",
    ]
    for fault, r in results.items():
        first = r["first_signal"]
        when = f"**{first['at_s']:.1f} s**" if first else f"**never** (watched {r['observed_s']:.0f} s)"
        where, said = (first["source"], first["text"][:100].replace("|", "/")) if first else ("-", "-")
        rows.append(f"| {fault} | `{r['command'][:60]}` | {when} | {where} | {said} | {r['failed']} of "
                    f"{r['requests']} | {r['longest_stall_s']:.1f} s |")  # fmt: skip
    return "\n".join(rows)


def measured(layer: type[Layer], model: Path, observe: float = OBSERVE_S) -> dict[str, dict[str, Any]]:
    """``every`` fault against a ``layer`` started for the purpose, serving ``model`` (a copy it may damage)."""
    with layer(model) as started:
        return every(started, observe=observe)
