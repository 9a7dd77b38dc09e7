"""Kubernetes against Docker Compose on one machine: the same disturbances, the same load, one run.

What a reader weighs against stage 05 is what they would run instead: stage 04's
compose.yaml, a restart policy and a healthcheck. Each scenario goes through
each layer's own mechanism under the harness's load (4 clients, single rows),
with the figures every other layer gets: failed requests, the longest time
without an answer, whether and when the layer was itself again with nobody's
help, and the first thing an operator could have seen.

    python -m harness.versus      # both stacks, every scenario (a Docker engine, Compose and a cluster)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from harness import scenarios
from harness.container import build_image
from harness.core import Layer
from harness.core import LayerError
from harness.core import model_module
from harness.core import train_model
from harness.core import wait_until
from harness.diff import setting_lines
from harness.layers import COMPOSE
from harness.layers import LAYERS
from harness.load import EXAMPLE_ROW
from harness.load import LoadRun
from harness.logreader import parse_time
from harness.logreader import records
from harness.notice import Watcher
from harness.proxy import build_proxy_image

SCENARIOS = {
    "crash": "the server's process killed (SIGKILL of gunicorn's master)",
    "hung_worker": "one worker stops answering and stays (SIGSTOP): gunicorn's worker timeout is the watchdog",
    "hung_server": "the whole server stops answering and stays (SIGSTOP of the master and its workers)",
    "config": "a setting changed (MAX_ROWS 1000 -> 500: a request of 501 rows is refused from then on)",
    "scale": "one more server instance, under load: when does it get requests, and what share?",
    "upgrade": "model version 2 put in service (last: it leaves version 2 serving)",
}
#: how long each scenario is watched: a hang must outlast the watchdogs (gunicorn's worker timeout, 30 s;
#: the kubelet's liveness probe, 3 x 10 s, 5 s of grace and a start; Docker's healthcheck, 3 checks 10 s apart
#: that each may wait 3 s), the others a recovery or a rollout
OBSERVE_S = {"crash": 10.0, "hung_worker": 60.0, "hung_server": 75.0, "upgrade": 60.0, "config": 60.0, "scale": 30.0}
SETTING = {"MAX_ROWS": "500"}
SHARE_S = 5.0  # the window the new instance's share of the requests is counted over


def disturbed(layer: Layer, kind: str, observe: float) -> dict[str, Any]:
    """``crash`` or a hang (``hung_worker``, ``hung_server``) under load, watched ``observe`` s, then undone;
    with the first signal an operator could have seen, in seconds after the event."""
    target = "worker" if kind == "hung_worker" else "server"
    sig = signal.SIGKILL if kind == "crash" else signal.SIGSTOP
    # watched from the load's start: the event comes ``event_s`` s into it
    with Watcher(layer, time.time(), interval=2.0) as watch:
        result = scenarios.crash(layer, target, sig=sig, observe=observe)
    first = next(iter(watch.signals()), None)
    result["first_signal"] = first and {**first, "at_s": round(max(first["at_s"] - result["event_s"], 0.0), 3)}
    if sig == signal.SIGSTOP:
        result["undone"] = layer.resume()
        wait_until(layer.ready, 120, interval=0.5)
    return result


def refuses_setting(base_url: str) -> bool:
    """Whether the layer refuses a request of 501 rows now: SETTING is in force."""
    try:
        answer = requests.post(f"{base_url}/predict", json={"instances": [EXAMPLE_ROW] * 501}, timeout=5)
    except requests.RequestException:
        return False
    return 400 <= answer.status_code < 500


def reconfigured(layer: Layer, observe: float) -> dict[str, Any]:
    """SETTING put in service with the layer's own mechanism under load, until every answer obeys it; undone."""
    with LoadRun(layer.base_url, clients=4, max_seconds=observe + 300, max_requests=300_000) as run:
        run.warm_up()
        started = time.monotonic()
        command = layer.release(settings=SETTING)
        applied = wait_until(lambda: all(refuses_setting(layer.base_url) for _ in range(4)), observe, interval=0.2)
        took = time.monotonic() - started
        time.sleep(0.5)
    result = run.report.summary()
    result.update(command=command, applied=applied, applied_s=round(took, 3) if applied else None,
                  event_s=round(started - run.report.started, 3))  # fmt: skip
    result["undone"] = layer.rollback()
    wait_until(layer.ready, 120, interval=0.5)
    return result


def served_by(layer: Layer, since: float) -> dict[str, int]:
    """Per server instance, the /predict requests its access log shows since ``since`` (time.time())."""
    counts = {}
    for instance in layer.serving_instances():
        lines = records(layer.instance_log(instance))
        counts[instance] = sum(
            1 for r in lines if r.get("path") == "/predict" and (parse_time(r.get("timestamp", "")) or 0) >= since
        )
    return counts


def scaled(layer: Layer, observe: float) -> dict[str, Any]:
    """One more instance under load: when it is up, when it gets its first request, its share over SHARE_S s;
    then back to as many as before."""
    before = layer.serving_instances()
    with LoadRun(layer.base_url, clients=4, max_seconds=observe + SHARE_S + 300, max_requests=500_000) as run:
        run.warm_up()
        since, started = time.time(), time.monotonic()
        command = layer.scale(len(before) + 1)
        new: list[str] = []

        def new_one_serves() -> bool:
            new[:] = [i for i in layer.serving_instances() if i not in before]
            return any(served_by(layer, since).get(i) for i in new)

        serves = wait_until(new_one_serves, observe, interval=0.5)
        took = time.monotonic() - started
        window_from = time.time()
        time.sleep(SHARE_S)
        counts = served_by(layer, window_from)
    result = run.report.summary()
    total = sum(counts.values())
    result.update(
        command=command,
        instances_before=len(before),
        new_instance=new[0] if new else None,
        serves=serves,
        serves_s=round(took, 3) if serves else None,
        share_of_new=round(sum(counts.get(i, 0) for i in new) / total, 3) if total else None,
        served_by=counts,
    )
    result["undone"] = layer.scale(None)  # an autoscaler takes its time to remove the pod: not waited for
    return result


def costs(layer: Layer, cold_start_s: float) -> dict[str, Any]:
    """What running ``layer`` costs beside its failures: the seconds from `up` to the first answer (images built,
    the engine or cluster running), memory at idle with the engine's or cluster's own processes, the lines of
    configuration a reader writes, the concepts they must learn."""
    files = sorted({path for pattern in layer.configuration for path in layer.folder.glob(pattern)})
    lines = {str(path.relative_to(layer.folder)): setting_lines(path) for path in files}
    return {
        "cold_start_s": round(cold_start_s, 3),
        "memory": scenarios.idle_memory(layer),
        "own": layer.cost(),
        "configuration_lines": lines,
        "configuration_lines_total": sum(lines.values()),
        "concepts": list(layer.concepts),
    }


def every(layer: Layer, v2: Path, observe: dict[str, float] | None = None, say: Any = None) -> dict[str, Any]:
    """Every scenario of SCENARIOS against one started ``layer``, each undone before the next (the upgrade
    last: it leaves version 2 serving); ``observe`` overrides OBSERVE_S per scenario."""
    windows = {**OBSERVE_S, **(observe or {})}
    results: dict[str, Any] = {}
    for kind, what in SCENARIOS.items():
        if say:
            say(f"[{layer.name}] {kind}: {what}")
        if kind in ("crash", "hung_worker", "hung_server"):
            results[kind] = disturbed(layer, kind, windows[kind])
        elif kind == "config":
            results[kind] = reconfigured(layer, windows[kind])
        elif kind == "scale":
            results[kind] = scaled(layer, windows[kind])
        else:
            results[kind] = scenarios.upgrade(layer, v2, settle=windows[kind])
    return results


def both(v1: Path, v2: Path, workdir: Path, observe: dict[str, float] | None = None, say: Any = None) -> dict:
    """Compose and Kubernetes, each started on a copy of ``v1`` and taken through ``every`` scenario in turn:
    per layer, its path, costs and scenarios; a layer this machine cannot run, with why."""
    out: dict[str, Any] = {"layers": {}, "not_measured": {}}
    for cls in (COMPOSE, LAYERS[5]):
        ok, why = cls.available()
        if not ok:
            out["not_measured"][cls.name] = why
            continue
        build_image(), build_proxy_image()  # both run these images: their build is not what `up` costs
        served = workdir / f"versus-{cls.stage}" / "iris.joblib"
        model_module().install(v1, served)
        layer = cls(served)
        cold = layer.start()
        try:
            entry = {"path": layer.path, "costs": costs(layer, cold)}
            entry["scenarios"] = every(layer, v2, observe, say)
        finally:
            layer.stop()
        out["layers"][layer.name] = entry
    return out


def cell(kind: str, r: dict[str, Any]) -> str:
    """One scenario's figures for one layer, as a table cell."""
    failed = f"{r['failed']} of {r['requests']} failed, {r['longest_stall_s']:.1f} s without an answer"
    if kind == "config":
        return f"{failed}; in force after {r['applied_s']:.1f} s" if r["applied"] else f"{failed}; never in force"
    if kind == "scale":
        if not r["serves"]:
            return f"the new instance got **no requests**; {failed}"
        return f"the new instance served after {r['serves_s']:.1f} s, {r['share_of_new']:.0%} of the requests"
    if kind == "upgrade":
        switched = f"version 2 after {r['switch_s']:.1f} s" if r["switch_s"] is not None else "version 2 never"
        return f"{failed}; {switched}"
    back = f"itself again after {r['recovery_s']:.1f} s" if r["recovered"] else "**not itself**"
    first = r.get("first_signal")
    headline = ": ".join(first["text"].split(": ")[:2])[:70] if first else ""  # a reason and its message's head
    seen = f"; first signal at {first['at_s']:.1f} s: {headline}" if first else "; no signal"
    return f"{failed}; {back}{seen}"


def beside(costs: dict[str, Any]) -> float:
    """PSS (MiB) of the processes a layer runs beside its servers (``Layer.cost``: a Docker engine's, a
    cluster's, the pods' sidecars)."""
    own = costs["own"]
    return sum(v["pss_mib"] for v in own.values() if isinstance(v, dict) and "pss_mib" in v) + own.get(
        "sidecar_pss_mib", 0
    )


def markdown(results: dict[str, Any]) -> str:
    """``both``'s results as one Markdown table: a row per scenario and per cost, a column per layer."""
    names = list(results["layers"])
    rows = [f"| | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
    for kind, what in SCENARIOS.items():
        cells = [cell(kind, results["layers"][n]["scenarios"][kind]) for n in names]
        rows.append(f"| **{kind}**: {what} | {' | '.join(cells)} |")
    for label, figure in (
        ("from `up` to the first answer", lambda c: f"{c['cold_start_s']:.1f} s"),
        ("memory of the servers at idle (PSS)", lambda c: f"{c['memory']['pss_mib']:.0f} MiB"),
        ("memory of what runs beside them: the engine, or the cluster (PSS)", lambda c: f"{beside(c):.0f} MiB"),
        ("lines of configuration", lambda c: str(c["configuration_lines_total"])),
        ("concepts to learn", lambda c: str(len(c["concepts"]))),
    ):
        rows.append(f"| {label} | {' | '.join(figure(results['layers'][n]['costs']) for n in names)} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Command line: both stacks through every scenario; the table on stdout, the figures to --out."""
    parser = argparse.ArgumentParser(prog="python -m harness.versus", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the figures there as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="versus-") as tmp:
        v1, v2 = train_model(Path(tmp) / "v1", version="1"), train_model(Path(tmp) / "v2", version="2", c=0.05)
        try:
            results = both(v1, v2, Path(tmp), say=lambda m: print(m, file=sys.stderr, flush=True))
        except LayerError as exc:
            print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
    for name, why in results["not_measured"].items():
        print(f"{name}: not measured: {why}", file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results) if results["layers"] else "nothing measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
