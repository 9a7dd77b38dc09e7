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
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import readme
from harness import scenarios
from harness import slowclients
from harness.cluster import cluster_reachable
from harness.container import docker_available
from harness.core import ROOT
from harness.core import STAGES
from harness.core import LayerError
from harness.core import model_module
from harness.core import train_model
from harness.layers import PROTECTED
from harness.layers import layer_class
from harness.load import EXAMPLE_ROW
from harness.load import wrk_available
from harness.readme import summary_table

RESULTS = ROOT / "results" / "scorecard.json"
THROUGHPUT_SECONDS = 5


def say(message: str) -> None:
    """Visible progress on stderr (stdout stays for the summary)."""
    print(message, file=sys.stderr, flush=True)


def available_stages() -> dict[int, str]:
    """Stage number -> why it is available or not ("" when it is)."""
    needs = {4: docker_available, 5: cluster_reachable}  # what stages 04 and 05 run on
    status = {}
    for stage, folder in STAGES.items():
        if not folder.is_dir():
            status[stage] = f"no {folder.name} folder"
        elif stage in needs:
            ok, reason = needs[stage]()
            status[stage] = "" if ok else reason
        else:
            status[stage] = ""
    return status


def environment() -> dict[str, Any]:
    """What the figures were measured on: hardware, OS, versions."""
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
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


def measure_stage(
    stage: int,
    workdir: Path,
    seconds: int = THROUGHPUT_SECONDS,
    observe: float = scenarios.OBSERVE_S,
    hold: float = slowclients.HOLD_S,
) -> dict[str, Any]:
    """Every scenario against one layer, in an order that leaves it usable to the end.

    What a layer can do decides what runs (``serves_http``, ``crash_targets``):
    a scenario the layer has no use for is recorded as not applicable, with why.
    """
    v1 = train_model(workdir / f"stage{stage}-v1", version="1")
    served = workdir / f"stage{stage}-served" / "iris.joblib"
    model_module().install(v1, served)
    v2 = train_model(workdir / "v2", version="2", c=0.05)
    layer = layer_class(stage)(served)
    result: dict[str, Any] = {"stage": stage, "layer": layer.name}
    say(f"[{layer.name}] starting")
    result["cold_start_s"] = round(layer.start(), 3)
    try:
        say(f"[{layer.name}] reach: curl; what the host needs; memory and cost at idle")
        result["reach"] = scenarios.reach(layer)
        result["self_contained"] = layer.self_contained()
        result["memory"] = scenarios.idle_memory(layer)
        extra_cost = layer.cost()  # at idle, before any load makes an autoscaler add pods
        result["throughput"] = []
        for connections in (1, 8) if layer.serves_http else (1,):
            if layer.serves_http and not wrk_available():
                result["throughput_skipped"] = "wrk is not installed"
                break
            say(f"[{layer.name}] throughput: {connections} client(s), {seconds} s")
            result["throughput"].append(scenarios.throughput(layer, connections, seconds))
        if layer.serves_http:
            say(f"[{layer.name}] slow clients: {', '.join(map(str, slowclients.COUNTS))}, with and without a proxy")
            result["slow_clients"] = slowclients.measure_stage(layer, PROTECTED.get(stage), served, seconds, hold)
            say(f"[{layer.name}] upgrade to version 2 under load")
            result["upgrade"] = scenarios.upgrade(layer, v2)
        else:
            result["upgrade"] = {"applicable": False, "why": "no server: each program re-imports the model itself"}
        # the worker first: killing the server may leave nothing to kill a worker of (stage 03)
        for target, key in (("worker", "crash_worker"), ("server", "crash")):
            if target in layer.crash_targets:
                say(f"[{layer.name}] crash under load: SIGKILL of the {target}")
                result[key] = scenarios.crash(layer, target, observe=observe)
            else:
                why = "no server to crash: the caller's own process" if target == "server" else "no worker processes"
                result[key] = {"applicable": False, "why": why}
    finally:
        layer.stop()
    result["cost"] = {**scenarios.stage_diff(stage), **scenarios.dependencies(stage), **extra_cost}
    say(f"[{layer.name}] done")
    return result


def implausible(results: dict[str, Any]) -> list[str]:
    """Every figure in ``results`` that cannot be true: negative, more CPU than the machine has,
    requests that are not answered + failed, a stall longer than the run. Empty when all is plausible."""
    cores = results["environment"]["cpus_usable"]
    problems = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            if {"requests", "ok", "failed"} <= value.keys() and value["requests"] != value["ok"] + value["failed"]:
                problems.append(f"{where}: requests {value['requests']} != ok {value['ok']} + failed {value['failed']}")
            if value.get("longest_stall_s", 0) > value.get("duration_s", float("inf")) + 0.01:
                problems.append(f"{where}: a stall of {value['longest_stall_s']} s in a {value['duration_s']} s run")
            for key, item in value.items():
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if value < 0 and not where.endswith("version"):
                problems.append(f"{where}: {value} is negative")
            if where.endswith("_cpu_cores") and value > cores * 1.05:
                problems.append(f"{where}: {value} cores on a {cores}-CPU machine")

    walk(results["stages"], "stages")
    return problems


def run(
    stages: list[int],
    out: Path,
    seconds: int = THROUGHPUT_SECONDS,
    observe: float = scenarios.OBSERVE_S,
    hold: float = slowclients.HOLD_S,
) -> dict[str, Any]:
    """Measure ``stages`` and write the results file; return its content."""
    started = time.monotonic()
    status = available_stages()
    results = {"environment": environment(), "stages": [], "not_measured": {}}
    with tempfile.TemporaryDirectory(prefix="scorecard-") as tmp:
        for stage in stages:
            if status.get(stage):
                say(f"[stage {stage:02d}] skipped: {status[stage]}")
                results["not_measured"][str(stage)] = status[stage]
                continue
            results["stages"].append(measure_stage(stage, Path(tmp), seconds, observe, hold))
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
        else:
            print(
                summary_table(run(stages, args.out, max(1, args.seconds), max(1.0, args.observe), max(1.0, args.hold)))
            )
    except (LayerError, OSError) as exc:  # a layer that would not start, a results file we cannot write
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
