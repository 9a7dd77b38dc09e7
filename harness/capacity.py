"""Scaling as capacity on one node: requests served against replicas under a CPU limit, and workers against
replicas under the same CPU.

Horizontal scaling adds pods; whether it adds capacity depends on the node. Each
pod's server gets a CPU limit (half a core by default), the autoscaler is pinned
(minReplicas = maxReplicas), and the same load (wrk, single rows, 8 connections,
through the Service) measures each count of replicas in interleaved rounds. More
pods help until their limits add up to the node's cores; beyond that they share
the same cores, and only more nodes would help.

    python -m harness.capacity curve            # 1 to 6 replicas at 500m each
    python -m harness.capacity shapes           # 2 workers in 1 pod against 1 worker in each of 2 pods

Each leaves stage 05 as its manifests say (``restore``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness import scenarios
from harness.cluster import Cluster
from harness.core import LayerError
from harness.core import wait_until
from harness.kube import DEPLOYMENT
from harness.kube import NAMESPACE
from harness.kube import is_ready
from harness.kube import kubectl
from harness.kube import pods
from harness.kube import ready_endpoints
from harness.kube import wait_old_pods_gone
from harness.spread import median_round
from harness.spread import plus_minus
from harness.spread import ratio

CPU_LIMIT = "500m"
REPLICAS = (1, 2, 3, 4, 5, 6)  # six pods' requests (server 250m + sidecar 50m) still fit a 2-core node
ROUNDS = 3
SECONDS = 5.0
CONNECTIONS = 8


def cores(quantity: str) -> float:
    """A CPU quantity ("500m", "1") in cores."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def pin(replicas: int, timeout: float = 240) -> None:
    """Exactly ``replicas`` pods, all ready and behind the Service: the autoscaler pinned at that count."""
    patch = json.dumps({"spec": {"minReplicas": replicas, "maxReplicas": replicas}})
    kubectl("patch", "hpa", DEPLOYMENT, "-n", NAMESPACE, "--type=merge", "--patch", patch)
    settled = wait_until(
        lambda: sum(is_ready(p) for p in pods()) == replicas == ready_endpoints() and len(pods()) == replicas,
        timeout,
        interval=1,
    )
    if not settled:
        raise LayerError(f"stage 05 did not settle at {replicas} ready pods in {timeout:.0f} s")


def shape(layer: Cluster, cpu: str, workers: int) -> None:
    """Every pod's server: ``workers`` gunicorn workers (server.env's WEB_CONCURRENCY, as a reader sets it)
    and a CPU limit of ``cpu``; waits for the rollout."""
    layer.apply(layer.image, settings={"WEB_CONCURRENCY": str(workers)})
    server = {"name": "server", "resources": {"limits": {"cpu": cpu}}}
    patch = {"spec": {"template": {"spec": {"containers": [server]}}}}
    kubectl("patch", "deployment", DEPLOYMENT, "-n", NAMESPACE, "--patch", json.dumps(patch))
    layer.rolled_out()


def restore(layer: Cluster) -> None:
    """Stage 05 as its manifests say again: the CPU limit, the workers, the autoscaler's range."""
    layer.apply(layer.image)
    wait_old_pods_gone()


def curve(
    layer: Cluster,
    replicas: tuple[int, ...] = REPLICAS,
    cpu: str = CPU_LIMIT,
    rounds: int = ROUNDS,
    seconds: float = SECONDS,
) -> dict[str, Any]:
    """Single-row throughput through the Service at each count of ``replicas`` (each pod limited to ``cpu``),
    the median of ``rounds`` interleaved rounds (the order rotating) with their spread."""
    measured: dict[int, list[dict[str, Any]]] = {n: [] for n in replicas}
    try:
        shape(layer, cpu, workers=1)
        for number in range(rounds):
            shift = number % len(replicas)
            for n in replicas[shift:] + replicas[:shift]:
                pin(n)
                measured[n].append(scenarios.throughput(layer, CONNECTIONS, seconds))
    finally:
        restore(layer)
    node_cores = node_cpus()
    return {
        "cpu_limit": cpu,
        "node_cores": node_cores,
        "connections": CONNECTIONS,
        "path": layer.path,
        "points": [
            {"replicas": n, "limits_cores": round(n * cores(cpu), 2), **median_round(measured[n])} for n in replicas
        ],
        "full_at": node_cores / cores(cpu),  # replicas whose limits add up to the node's cores
    }


def shapes(layer: Cluster, rounds: int = ROUNDS, seconds: float = SECONDS, observe: float = 10.0) -> dict[str, Any]:
    """The same CPU two ways: two workers in one pod (limit 1 core) against one worker in each of two pods
    (500m each). Per shape: throughput (interleaved rounds), the servers' memory at idle, and what a kill of
    one pod's server under load costs."""
    ways = {"2 workers x 1 pod": (1, 2, "1"), "1 worker x 2 pods": (2, 1, "500m")}
    result: dict[str, dict[str, Any]] = {name: {"rounds": []} for name in ways}
    try:
        for number in range(rounds):
            order = list(ways) if number % 2 == 0 else list(reversed(ways))
            for name in order:
                replicas, workers, cpu = ways[name]
                shape(layer, cpu, workers)
                pin(replicas)
                if number == 0:  # before any load of this shape: at idle
                    result[name]["memory"] = scenarios.idle_memory(layer)
                result[name]["rounds"].append(scenarios.throughput(layer, CONNECTIONS, seconds))
        for name, (replicas, workers, cpu) in ways.items():
            shape(layer, cpu, workers)
            pin(replicas)
            result[name]["crash"] = scenarios.crash(layer, "server", observe=observe)
            result[name].update(replicas=replicas, workers=workers, cpu_limit=cpu)
            result[name]["throughput"] = median_round(result[name].pop("rounds"))
    finally:
        restore(layer)
    return result


def markdown(result: dict[str, Any]) -> str:
    """``curve`` and ``shapes`` (either may be missing) as Markdown tables, for the 05 README."""
    out = []
    if "curve" in result:
        c = result["curve"]
        out += [f"Each pod's server limited to {c['cpu_limit']} of CPU on a node of {c['node_cores']:g} cores, "
                f"{c['connections']} connections through the Service ({c['path']}):", "",
                "| replicas | their CPU limits, cores | single rows/s | over 1 replica |",
                "|---|---|---|---|"]  # fmt: skip
        one = c["points"][0]
        for p in c["points"]:
            out.append(f"| {p['replicas']} | {p['limits_cores']:g} | {plus_minus(p)} | {ratio(p, one)} |")
        out.append("")
    if "shapes" in result:
        out += ["| the same CPU | single rows/s at 8 connections | p50 latency | memory at idle (PSS) "
                "| kill one server under load |", "|---|---|---|---|---|"]  # fmt: skip
        for name, r in result["shapes"].items():
            crash = r["crash"]
            out.append(f"| {name} ({r['cpu_limit']} CPU each) | {plus_minus(r['throughput'])} | "
                       f"{r['throughput']['latency_ms']['p50']} ms | {r['memory']['pss_mib']} MiB | "
                       f"{crash['failed']} of {crash['requests']} failed, {crash['longest_stall_s']:.1f} s "
                       "without an answer |")  # fmt: skip
        out.append("")
    return "\n".join(out)


def node_cpus() -> float:
    """The node's allocatable CPUs (the first node's), as the scheduler counts them."""
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    return cores(nodes[0]["status"]["allocatable"]["cpu"])


def main(argv: list[str] | None = None) -> int:
    """Command line: curve | shapes, on stage 05 as deployed (or deployed for it); the figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m harness.capacity", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("curve", "shapes"))
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="each load (default %(default)s)")
    args = parser.parse_args(argv)
    ok, why = Cluster.available()
    if not ok:
        print(f"error: stage 05 needs a cluster: {why}", file=sys.stderr)
        return 1
    try:
        with Cluster() as layer:
            run = curve if args.what == "curve" else shapes
            print(json.dumps(run(layer, rounds=max(1, args.rounds), seconds=max(1.0, args.seconds)), indent=2))
    except LayerError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
