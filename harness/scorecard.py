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
from harness.layers import ROOT
from harness.layers import STAGES
from harness.layers import LayerError
from harness.layers import layer_class
from harness.layers import model_module
from harness.layers import train_model
from harness.load import EXAMPLE_ROW
from harness.load import wrk_available

RESULTS = ROOT / "results" / "scorecard.json"
THROUGHPUT_SECONDS = 5


def say(message: str) -> None:
    """Visible progress on stderr (stdout stays for the summary)."""
    print(message, file=sys.stderr, flush=True)


def available_stages() -> dict[int, str]:
    """Stage number -> why it is available or not ("" when it is)."""
    status = {1: "", 2: "", 3: ""}
    if not STAGES[4].is_dir():
        status[4] = "no 04_container folder"
    else:
        from harness.container import docker_available

        ok, reason = docker_available()
        status[4] = "" if ok else reason
    if not STAGES[5].is_dir():
        status[5] = "no 05_kubernetes folder"
    else:
        from harness.cluster import cluster_reachable

        ok, reason = cluster_reachable()
        status[5] = "" if ok else reason
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


def measure_stage(stage: int, workdir: Path, seconds: int = THROUGHPUT_SECONDS) -> dict[str, Any]:
    """Every scenario against one layer, in an order that leaves it usable to the end."""
    v1 = train_model(workdir / f"stage{stage}-v1", version="1")
    served = workdir / f"stage{stage}-served" / "iris.joblib"
    model_module().install(v1, served)
    v2 = train_model(workdir / "v2", version="2", c=0.05)
    layer = layer_class(stage)(served)
    result: dict[str, Any] = {"stage": stage, "layer": layer.name}
    say(f"[{layer.name}] starting")
    result["cold_start_s"] = round(layer.start(), 3)
    try:
        say(f"[{layer.name}] reach: curl")
        result["reach"] = scenarios.reach(layer)
        result["memory"] = scenarios.idle_memory(layer)
        if stage == 5:  # at idle, before any load makes the autoscaler add pods
            from harness.cluster import control_plane_cost

            say(f"[{layer.name}] the cluster's own cost at idle")
            cluster_cost = control_plane_cost()
        result["throughput"] = []
        for connections in (1,) if stage == 1 else (1, 8):
            if stage > 1 and not wrk_available():
                result["throughput_skipped"] = "wrk is not installed"
                break
            say(f"[{layer.name}] throughput: {connections} client(s), {seconds} s")
            result["throughput"].append(scenarios.throughput(layer, connections, seconds))
        if stage > 1:
            say(f"[{layer.name}] slow clients: {', '.join(map(str, slowclients.COUNTS))}, with and without a proxy")
            result["slow_clients"] = slowclients.measure_stage(stage, layer, served, seconds)
        if stage == 1:
            result["upgrade"] = {"applicable": False, "why": "no server: each program re-imports the model itself"}
            result["crash"] = {"applicable": False, "why": "no server to crash: the caller's own process"}
        else:
            say(f"[{layer.name}] upgrade to version 2 under load")
            result["upgrade"] = scenarios.upgrade(layer, v2)
            say(f"[{layer.name}] crash under load")
            result["crash"] = scenarios.crash(layer)
    finally:
        layer.stop()
    result["cost"] = {**scenarios.stage_diff(stage), **scenarios.dependencies(stage)}
    if stage == 4:
        from harness.container import image_size

        result["cost"]["image_mib"] = round(image_size(layer.image) / 2**20, 1)
    if stage == 5:
        result["cost"]["cluster"] = cluster_cost
    say(f"[{layer.name}] done")
    return result


def run(stages: list[int], out: Path, seconds: int = THROUGHPUT_SECONDS) -> dict[str, Any]:
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
            results["stages"].append(measure_stage(stage, Path(tmp), seconds))
    results["environment"]["scorecard_seconds"] = round(time.monotonic() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    say(f"wrote {out} in {results['environment']['scorecard_seconds']} s")
    if out.resolve() == RESULTS.resolve():
        for path in readme.update(results):
            say(f"updated the figures in {path.relative_to(ROOT)}")
    return results


def _rps(stage: dict[str, Any], connections: int) -> str:
    match = [t for t in stage.get("throughput", []) if t["connections"] == connections]
    return f"{match[0]['rps']:.0f}" if match else "-"


def _slow(stage: dict[str, Any]) -> str:
    """Share of normal requests answered under 50 slow clients: alone/with the proxy where both were measured."""
    shares = [e["runs"].get("50", {}).get("during", {}).get("answered_share") for e in stage.get("slow_clients", [])]
    return "/".join("-" if v is None else f"{v:.0%}" for v in shares) or "n/a"


def summary_table(results: dict[str, Any]) -> str:
    """The capability-and-cost table as plain text (the tour and the README print it)."""
    header = (
        f"{'layer':<22}{'curl':>6}{'rps@1':>8}{'rps@8':>8}{'crash: failed':>15}{'recovers':>10}"
        f"{'upgrade: failed':>17}{'to v2':>7}{'+lines':>8}{'MiB idle':>10}{'50 slow: ok':>13}"
    )
    rows = [header, "-" * len(header)]
    for s in results["stages"]:
        crash, upgrade = s["crash"], s["upgrade"]
        applicable = crash.get("applicable", True)
        recovers = ("yes" if crash["recovered"] else "never") if applicable else "n/a"
        rows.append(
            f"{s['layer']:<22}{'yes' if s['reach']['reachable'] else 'no':>6}{_rps(s, 1):>8}{_rps(s, 8):>8}"
            f"{crash['failed'] if applicable else 'n/a':>15}{recovers:>10}"
            f"{upgrade['failed'] if applicable else 'n/a':>17}"
            f"{('yes' if upgrade.get('serves_new_version') else 'no') if applicable else 'n/a':>7}"
            f"{s['cost']['lines_added']:>8}{s['memory']['pss_mib'] or '-':>10}{_slow(s):>13}"
        )
    env = results["environment"]
    rows.append(f"measured {env['measured_at']} on {env['cpus_usable']} CPUs ({env['cpu_model']})")
    return "\n".join(rows)


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
            print(summary_table(run(stages, args.out, max(1, args.seconds))))
    except (LayerError, OSError) as exc:  # a layer that would not start, a results file we cannot write
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
