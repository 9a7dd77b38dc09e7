"""The layer scorecard: run every scenario against every available layer, write the results.

    python -m harness.scorecard                # stages 01-04 (05 too when a cluster answers)
    python -m harness.scorecard --stages 2,3   # a subset
    python -m harness.scorecard --tour         # a newcomer's one-minute walk through the stages

Results go to results/scorecard.json with the environment they were measured
in; notebooks/00_scorecard.ipynb plots them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import capacity
from harness import notice
from harness import publish
from harness import readme
from harness import releases
from harness import scenarios
from harness import slowclients
from harness import versus
from harness.core import ROOT
from harness.core import STAGES
from harness.core import Layer
from harness.core import LayerError
from harness.core import model_module
from harness.core import procfs
from harness.core import train_model
from harness.layers import PROTECTED
from harness.layers import layer_class
from harness.load import EXAMPLE_ROW
from harness.load import wrk_available
from harness.plausible import implausible
from harness.quiet import Busy
from harness.readme import summary_table
from harness.spread import median_round

RESULTS = ROOT / "results" / "scorecard.json"
THROUGHPUT_SECONDS = 5
ROUNDS = 5
#: the bucket of every timeline the scorecard records (the notebooks plot them: one width, comparable bars)
TIMELINE_S = 0.25


def say(message: str) -> None:
    """Visible progress on stderr (stdout stays for the summary)."""
    print(message, file=sys.stderr, flush=True)


def available_stages() -> dict[int, str]:
    """Stage number -> why it is available or not ("" when it is)."""
    status = {}
    for stage, folder in STAGES.items():
        if not folder.is_dir():
            status[stage] = f"no {folder.name} folder"
        else:
            ok, reason = layer_class(stage).available()
            status[stage] = "" if ok else reason
    return status


def environment() -> dict[str, Any]:
    """What the figures were measured on: hardware, OS, versions."""
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in procfs("cpuinfo").read_text().splitlines() if "model name" in line),
        platform.processor(),
    )
    tools = {}
    for tool, args in {
        "docker": ["docker", "version", "--format", "{{.Server.Version}}"],
        "wrk": ["wrk", "-v"],
    }.items():
        if shutil.which(tool):
            out = subprocess.run(args, capture_output=True, text=True, timeout=20)
            # A Docker client without an engine prints an empty server version: keep "" then.
            tools[tool] = next(iter((out.stdout.strip() or out.stderr.strip()).splitlines()), "")
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {p: metadata.version(p) for p in ("scikit-learn", "numpy", "flask", "gunicorn")},
        "tools": tools,
        "load_generator": "wrk (throughput, latency); harness.load.LoadRun with 4 Python clients (crash, upgrade)",
    }


def start_layers(stage: int, workdir: Path, v1: Path, stack: ExitStack) -> tuple[Layer, Layer | None, dict[str, Any]]:
    """Start ``stage``'s layer (and its variant behind nginx, where it has one) on a copy of version 1 (``v1``),
    each stopped when ``stack`` closes; measure what needs it at idle: cold start, reach, memory, cost."""
    served = workdir / f"stage{stage}-served" / "iris.joblib"
    model_module().install(v1, served)
    layer = layer_class(stage)(served)
    say(f"[{layer.name}] starting")
    cold = layer.start()
    stack.callback(layer.stop)
    result: dict[str, Any] = {"stage": stage, "layer": layer.name, "path": layer.path, "cold_start_s": round(cold, 3)}
    say(f"[{layer.name}] reach: curl; what the host needs; memory and cost at idle")
    result["reach"] = scenarios.reach(layer)
    result["self_contained"] = layer.self_contained()
    result["memory"] = scenarios.idle_memory(layer)
    result["extra_cost"] = layer.cost()  # at idle, before any load makes an autoscaler add pods
    variant = None
    if stage in PROTECTED:
        extra = {"image": layer.image} if getattr(layer, "image", None) else {}
        variant = PROTECTED[stage](served, **extra)
        say(f"[{variant.name}] starting")
        variant.start()
        stack.callback(variant.stop)
        result["memory_with_proxy"] = scenarios.idle_memory(variant)
    return layer, variant, result


def interleaved_throughput(layers: list[Layer], rounds: int, seconds: float) -> dict[str, list[dict[str, Any]]]:
    """Throughput at 1 and 8 clients of every started layer, in ``rounds`` that visit each layer in turn
    (the order rotating), so whatever else the machine does falls on every layer alike; per layer name,
    the median round of each load with every round's rate and the spread (harness.spread)."""
    measured: dict[str, dict[int, list[dict[str, Any]]]] = {layer.name: {} for layer in layers}
    for number in range(rounds):
        shift = number % len(layers)
        for layer in layers[shift:] + layers[:shift]:
            for connections in (1, 8) if layer.serves_http else (1,):
                say(f"[{layer.name}] throughput round {number + 1}/{rounds}: {connections} client(s), {seconds} s")
                measured[layer.name].setdefault(connections, []).append(
                    scenarios.throughput(layer, connections, seconds)
                )
    return {name: [median_round(runs) for runs in loads.values()] for name, loads in measured.items()}


def measure_scenarios(
    layer: Layer,
    variant: Layer | None,
    result: dict[str, Any],
    observe: float,
    hold: float,
    v1: Path,
    v2: Path,
    notice_s: float = notice.OBSERVE_S,
) -> dict[str, Any]:
    """The scenarios that disturb a layer, in an order that leaves it usable to the end.

    What a layer can do decides what runs (``serves_http``, ``crash_targets``):
    a scenario the layer has no use for is recorded as not applicable, with why.
    """
    if layer.serves_http:
        say(f"[{layer.name}] slow clients: {', '.join(map(str, slowclients.COUNTS))}, with and without a proxy")
        result["slow_clients"] = [slowclients.entry(v, hold) for v in (layer, variant) if v is not None]
        say(f"[{layer.name}] upgrade to version 2 under load")
        result["upgrade"] = scenarios.upgrade(layer, v2, timeline=TIMELINE_S)
        alternative = type(layer).upgrade_alternative()
        if alternative is not None:  # the layer's other way to upgrade, on a copy of version 1, for comparison
            copy = layer.model_path.parent.with_name(f"{layer.model_path.parent.name}-alternative") / "iris.joblib"
            model_module().install(v1, copy)
            say(f"[{alternative.name}] upgrade to version 2 under load, the other way: {alternative.upgrade_mechanism}")
            with alternative(copy) as other:
                result["upgrade_alternative"] = scenarios.upgrade(other, v2, timeline=TIMELINE_S)
        result["bad_release"] = releases.every(layer, v2.parent, observe=observe, timeline=TIMELINE_S, say=say)
        result["notice"] = notice.every(layer, observe=notice_s, timeline=TIMELINE_S, say=say)
    else:
        result["upgrade"] = {"applicable": False, "why": "no server: each program re-imports the model itself"}
        result["bad_release"] = {"applicable": False, "why": "no server: each program loads the model it is given"}
        result["notice"] = {"applicable": False, "why": "no server: a fault is the calling program's own"}
    # the worker first: killing the server may leave nothing to kill a worker of (stage 03)
    for target, key in (("worker", "crash_worker"), ("server", "crash")):
        if target in layer.crash_targets:
            say(f"[{layer.name}] crash under load: SIGKILL of the {target}")
            result[key] = scenarios.crash(layer, target, observe=observe, timeline=TIMELINE_S)
            if target == "server" and (steps := layer.crash_steps()) is not None:
                say(f"[{layer.name}] the server crash again, step by step: {len(steps['runs'])} times")
                result["crash_steps"] = steps
        else:
            why = "no server to crash: the caller's own process" if target == "server" else "no worker processes"
            result[key] = {"applicable": False, "why": why}
    result["window"] = type(layer).window
    result["cost"] = {**scenarios.stage_diff(result["stage"]), **scenarios.dependencies(result["stage"]),
                      **result.pop("extra_cost")}  # fmt: skip
    say(f"[{layer.name}] done")
    return result


def run(
    stages: list[int],
    out: Path,
    seconds: int = THROUGHPUT_SECONDS,
    observe: float = scenarios.OBSERVE_S,
    hold: float = slowclients.HOLD_S,
    rounds: int = ROUNDS,
    stamp: dict[str, Any] | None = None,
    notice_s: float = notice.OBSERVE_S,
) -> dict[str, Any]:
    """Measure ``stages`` and write the results file; return its content.

    Every available layer is started first (and measured at idle), then their
    throughput is measured in interleaved rounds, then each layer in turn goes
    through the scenarios that disturb it. ``stamp`` is the publishing run's
    (harness.publish.stamp): the committed results carry it.
    """
    started = time.monotonic()
    status = available_stages()
    results = {"run": stamp, "environment": environment(), "rounds": rounds, "stages": [], "not_measured": {}}
    for stage in stages:
        if status.get(stage):
            say(f"[stage {stage:02d}] skipped: {status[stage]}")
            results["not_measured"][str(stage)] = status[stage]
    chosen = [stage for stage in stages if not status.get(stage)]
    with tempfile.TemporaryDirectory(prefix="scorecard-") as tmp, ExitStack() as everything:
        v1, v2 = train_model(Path(tmp) / "v1", version="1"), train_model(Path(tmp) / "v2", version="2", c=0.05)
        started_layers = []
        for stage in chosen:
            own = ExitStack()  # closed when this stage is done; ``everything`` closes it on an error
            everything.push(own)
            layer, variant, result = start_layers(stage, Path(tmp), v1, own)
            started_layers.append((own, layer, variant, result))
        served = [x for _, layer, variant, _ in started_layers for x in (layer, variant) if x is not None]
        rates = interleaved_throughput(served, rounds, seconds) if served and wrk_available() else {}
        for own, layer, variant, result in started_layers:
            result["throughput"] = [t for x in (layer, variant) if x is not None for t in rates.get(x.name, [])]
            if layer.serves_http and not wrk_available():
                result["throughput_skipped"] = "wrk is not installed"
            results["stages"].append(measure_scenarios(layer, variant, result, observe, hold, v1, v2, notice_s))
            own.close()
        if {4, 5} <= set(chosen):  # what a reader weighs stage 05 against: stage 04 with Compose
            say("[versus] Kubernetes against Docker Compose, the same scenarios in one run")
            results["versus"] = versus.both(v1, v2, Path(tmp), say=say)
        if 5 in chosen:  # scaling as capacity: replicas under CPU limits, workers against replicas
            say("[capacity] requests served against replicas at 500m each; 2 workers x 1 pod against 1 x 2")
            with layer_class(5)() as cluster:
                results["capacity"] = {"curve": capacity.curve(cluster), "shapes": capacity.shapes(cluster)}
    results["environment"]["scorecard_seconds"] = round(time.monotonic() - started, 1)
    for problem in implausible(results):
        say(f"warning: implausible figure: {problem}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    say(f"wrote {out} in {results['environment']['scorecard_seconds']} s")
    if out.resolve() == RESULTS.resolve():
        for path in readme.update(results):
            say(f"updated the figures in {path.relative_to(ROOT)}")
    return results


def tour() -> None:
    """Send the same request to every available layer, then print the last scorecard."""
    status = available_stages()
    with tempfile.TemporaryDirectory(prefix="tour-") as tmp:
        model = train_model(Path(tmp), version="1")
        print(f"The same flower to every layer: {json.dumps(EXAMPLE_ROW)}\n")
        for stage in STAGES:
            if status.get(stage):
                print(f"  stage {stage:02d}: skipped ({status[stage]})")
                continue
            with layer_class(stage)(model) as layer:
                answer = layer.predict([EXAMPLE_ROW])["predictions"][0]
                where = layer.base_url or "in this Python process"
                p = answer["probabilities"][answer["label"]]
                print(f"  {layer.name:<22} {where:<24} -> {answer['label']} (p={p:.3f})")
    if RESULTS.exists():
        print("\nThe scorecard (make scorecard reruns it; notebooks/00_scorecard.ipynb plots it):\n")
        print(summary_table(json.loads(RESULTS.read_text())))


def main(argv: list[str] | None = None) -> int:
    """Command line: --tour, or measure --stages into --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="1,2,3,4,5", help="comma-separated stage numbers (default: all available)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help=f"results file (default: {RESULTS.relative_to(ROOT)})"
    )
    parser.add_argument("--seconds", type=int, default=THROUGHPUT_SECONDS, help="each throughput run (default 5)")
    parser.add_argument(
        "--observe", type=float, default=scenarios.OBSERVE_S, help="seconds every layer is watched after a kill"
    )
    parser.add_argument(
        "--hold", type=float, default=slowclients.HOLD_S, help="seconds the slow clients hold their connections"
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved throughput rounds (default {ROUNDS})")
    parser.add_argument(
        "--notice", type=float, default=notice.OBSERVE_S, help="seconds each fault is watched for its first signal"
    )
    parser.add_argument("--tour", action="store_true", help="one request to each layer, then the last scorecard")
    args = parser.parse_args(argv)
    try:
        stages = sorted({int(s) for s in args.stages.split(",")})
    except ValueError:
        parser.error(f"--stages takes numbers like 1,2,3, got {args.stages!r}")
    if not set(stages) <= set(STAGES):
        parser.error(f"stages are 1 to 5, got {args.stages!r}")
    try:
        if args.tour:
            tour()
            return 0
        # The committed results are published figures: a quiet machine, measured, and a run id.
        stamp = publish.stamp(publish.current()) if args.out.resolve() == RESULTS.resolve() else None
        settings = (max(1, args.seconds), max(1.0, args.observe), max(1.0, args.hold), max(1, args.rounds))
        print(summary_table(run(stages, args.out, *settings, stamp=stamp, notice_s=max(1.0, args.notice))))
    except Busy as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except (LayerError, OSError) as exc:  # a layer that would not start, a results file we cannot write
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
