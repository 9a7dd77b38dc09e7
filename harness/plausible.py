"""Whether a results file's figures can be trusted: the impossible ones, and those a busy machine made.

``implausible`` is what a published run must pass (harness.publish, tests/test_scorecard.py);
``impossible`` is all a smoke run on a busy machine must pass.
"""

from __future__ import annotations

from typing import Any

from harness.readme import BARE
from harness.readme import rate
from harness.readme import route
from harness.spread import MAX_SPREAD
from harness.spread import differs
from harness.spread import plus_minus


def implausible(results: dict[str, Any]) -> list[str]:
    """Every figure in ``results`` that cannot be trusted, each as one line; empty when all is plausible.

    The impossible ones (``impossible``), and the untrustworthy: a rate whose rounds spread beyond
    harness.spread.MAX_SPREAD; a server below saturation at 8 clients while its latency rises (the
    machine or the client was the bound, not the layer); a layer that runs the same gunicorn on the same
    CPUs measured faster than bare gunicorn on the same route beyond the spread. Published results
    must pass it; a smoke run on a busy machine, only ``impossible``.
    """
    cores = results["environment"]["cpus_usable"]
    problems = impossible(results)

    def spreads(value: Any, where: str) -> None:
        if isinstance(value, dict):
            if (value.get("rps_iqr_spread") or 0) > MAX_SPREAD:
                problems.append(f"{where}: rounds {value['rps_rounds']} spread {value['rps_iqr_spread']:.0%} "
                                f"(interquartile), beyond {MAX_SPREAD:.0%}")  # fmt: skip
            for key, item in value.items():
                spreads(item, f"{where}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                spreads(item, f"{where}[{i}]")

    spreads(results["stages"], "stages")
    for s in results["stages"]:
        problems += unsaturated(s, cores)
    problems += faster_than_bare(results)
    return problems


def impossible(results: dict[str, Any]) -> list[str]:
    """Figures that cannot be true, whatever the machine: negative, more CPU than the machine has,
    requests that are not answered + failed, a stall longer than the run."""
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


#: at 8 clients a server and its client that use less than this share of the machine's cores, while the
#: median latency grows beyond LATENCY_GROWTH times that at 1 client, were waiting for something else
SATURATED_SHARE = 0.6
#: ... and a server that used less than this share of the cores its busy processes could use
SATURATED_SHARE_OWN = 0.8
LATENCY_GROWTH = 2.0


def unsaturated(stage: dict[str, Any], cores: int) -> list[str]:
    """A served layer below saturation at 8 clients while its latency rose: the figure measures contention."""
    found = []
    for path in {t["path"] for t in stage.get("throughput", [])}:
        one, eight = (rate(stage, c, path) for c in (1, 8))
        if not (one and eight) or eight.get("server_cpu_cores") is None:
            continue
        used = eight["server_cpu_cores"] + (eight.get("client_cpu_cores") or 0)
        ceiling = min(cores, eight.get("server_busy_processes") or cores)  # one process: one core at most
        grew = eight["latency_ms"]["p50"] > LATENCY_GROWTH * one["latency_ms"]["p50"]
        if grew and used < SATURATED_SHARE * cores and eight["server_cpu_cores"] < SATURATED_SHARE_OWN * ceiling:
            found.append(f"{stage['layer']} ({path}) at 8 clients: server and client used {used:.2f} of {cores} "
                         f"cores while p50 grew from {one['latency_ms']['p50']} to {eight['latency_ms']['p50']} "
                         "ms: not saturated, the machine was the bound")  # fmt: skip
    return found


def faster_than_bare(results: dict[str, Any]) -> list[str]:
    """Layers that run the same gunicorn as stage 03 on the same CPUs, faster than it on the same route."""
    bare = next((s for s in results["stages"] if s["layer"] == BARE), None)
    found = []
    for s in results["stages"] if bare else []:
        for entry in s.get("throughput", []) if s["stage"] > bare["stage"] else []:
            same = rate(bare, 8, route=route(entry)) if entry["connections"] == 8 else None
            if same and differs(entry, same) and entry["rps"] > same["rps"]:
                found.append(
                    f"{s['layer']} ({entry['path']}) {plus_minus(entry)} req/s at 8 clients beyond "
                    f"{BARE}'s {plus_minus(same)} ({same['path']}): the same gunicorn cannot be faster"
                )
    return found
