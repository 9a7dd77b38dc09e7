"""The same scenarios against every layer: reach, throughput, crash, upgrade, cost.

Each function takes a started ``Layer`` (or a stage number, for cost) and
returns plain figures (a dict), so the tests assert on them, the notebooks
plot them and `make scorecard` writes them to results/scorecard.json.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import floor
from harness.core import STAGES
from harness.core import Layer
from harness.core import LayerError
from harness.core import process_memory
from harness.core import procfs
from harness.core import wait_until
from harness.diff import code_changes
from harness.golden import load_golden
from harness.golden import mismatches
from harness.kube import DEPLOYMENT
from harness.kube import NAMESPACE
from harness.kube import is_ready
from harness.kube import kubectl
from harness.kube import pods
from harness.load import LoadRun
from harness.load import run_wrk

# Every layer is watched for the same window after a crash, so failed requests and the time
# without an answer compare across layers (a layer that never recovers is down for all of it).
OBSERVE_S = 10.0


def reach(layer: Layer) -> dict[str, Any]:
    """Can a non-Python client (curl) get the golden predictions from this layer?"""
    if not layer.serves_http:  # a definition, not a measurement: there is nothing for curl to call
        return {
            "reachable": False,
            "measured": False,
            "why": "by definition: no network endpoint; a caller must be a Python program with this source and "
            "its dependencies",
        }
    if shutil.which("curl") is None:
        return {"reachable": None, "why": "curl is not installed here"}
    golden = load_golden()
    out = subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "10", "-H", "Content-Type: application/json",
         "--data-binary", "@-", f"{layer.base_url}/predict"],
        input=json.dumps({"instances": golden["inputs"]}), capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    if out.returncode != 0:
        return {"reachable": False, "why": f"curl failed: {out.stderr.strip()}"}
    problems = mismatches(json.loads(out.stdout)["predictions"], golden)
    return {"reachable": not problems, "why": "; ".join(problems) or "curl got the golden predictions"}


def client_connections() -> int:
    """TCP connections this machine's network namespace has opened so far (/proc/net/snmp ActiveOpens).

    Read around a wrk run, it counts the connections the client had to open: one per request when the
    server closes each one (gunicorn's sync worker), a handful when a proxy keeps them alive (nginx).
    """
    lines = [line.split() for line in procfs("net", "snmp").read_text().splitlines() if line.startswith("Tcp:")]
    return int(lines[1][lines[0].index("ActiveOpens")])


def throughput(layer: Layer, connections: int, seconds: float = 5.0) -> dict[str, Any]:
    """Single-row /predict throughput and latency at ``connections`` clients, with server CPU use and the
    connections the client opened per request; for a layer without a server, the in-process floor."""
    if not layer.serves_http:
        single = floor.single_row(layer.model_path, seconds)
        return {"connections": 1, "path": layer.path, "rps": single["single_calls_per_s"],
                "requests": single["calls"], "latency_ms": single["latency_ms"], "errors": {},
                "client_cpu_cores": None}  # fmt: skip
    opened = client_connections()
    result = run_wrk(layer.base_url, connections, seconds, serving_pids=layer.serving_pids)
    opened = client_connections() - opened
    result["client_connections_per_request"] = round(opened / result["requests"], 3) if result["requests"] else None
    result["path"] = layer.path
    return result


def crash(
    layer: Layer,
    target: str = "server",
    clients: int = 4,
    observe: float = OBSERVE_S,
    warmup: float = 0.5,
    timeline: float | None = None,
    sig: int = signal.SIGKILL,
) -> dict[str, Any]:
    """SIGKILL ``target`` of ``layer`` (its serving process, or a worker) under load; watch ``observe`` s.
    (``sig`` SIGSTOP hangs it instead; the caller resumes it: ``Layer.resume``.)

    Load runs for ``warmup`` s, ``layer.crash(target)`` fires, then the load
    goes on for ``observe`` s whatever happens, the same window for every
    layer. ``recovered`` is False when the layer was not back at full strength
    within it (the development server's fate); ``longest_stall_s`` is the
    longest time without a successful answer. ``event_s`` is when the kill
    happened, in seconds from the start of the load; ``timeline`` (a bucket
    width in s) adds ok/failed counts per bucket; ``command`` is what the
    harness did, as a reader would type it.
    """
    with LoadRun(layer.base_url, clients=clients, max_seconds=warmup + observe + 5) as run:
        time.sleep(warmup)
        crashed_at = time.monotonic()
        command = layer.crash(target, sig)
        recovered = wait_until(layer.recovered, timeout=observe, interval=layer.poll_interval)
        recovery = time.monotonic() - crashed_at
        time.sleep(max(0.0, crashed_at + observe - time.monotonic()))
    report = run.report.summary()
    report.update(
        target=target,
        command=command,
        recovered=recovered,
        recovery_s=round(recovery, 3) if recovered else None,
        observed_s=observe,
        event_s=round(crashed_at - run.report.started, 3),
    )
    if timeline:
        report["timeline"] = run.report.timeline(timeline)
    return report


def upgrade(
    layer: Layer,
    new_model: Path,
    clients: int = 4,
    settle: float = 15.0,
    timeline: float | None = None,
    ordinary: float = 3.0,
) -> dict[str, Any]:
    """Move to ``new_model`` under load with the layer's own mechanism.

    Returns failed requests, the longest time without an answer, the slowest
    request, and which version answers at the end; ``ordinary_slowest_s`` is the
    slowest request of the ``ordinary`` s of the same load before the upgrade,
    the yardstick for a stall; ``event_s``, ``timeline`` and ``command`` as in ``crash``.
    """
    new_version = json.loads(Path(new_model).with_suffix(".json").read_text())["model_version"]
    # bounded: a rolling update (image build, load, rollout) may take minutes
    with LoadRun(layer.base_url, clients=clients, max_seconds=settle + 300, max_requests=300_000) as run:
        time.sleep(ordinary)
        started = time.monotonic()
        command = layer.upgrade(new_model)
        switched = run.wait_for(lambda r: r.last_version() == new_version, timeout=settle)
        took = time.monotonic() - started
        time.sleep(0.5)  # a little more load on the new version
    report = run.report.summary()
    report.update(
        mechanism=layer.upgrade_mechanism,
        command=command,
        new_version=new_version,
        ordinary_slowest_s=round(run.report.slowest(until=started), 3),
        serves_new_version=switched and run.report.last_version() == new_version,
        switch_s=round(took, 3) if switched else None,
        event_s=round(started - run.report.started, 3),
    )
    if timeline:
        report["timeline"] = run.report.timeline(timeline)
    return report


def idle_memory(layer: Layer) -> dict[str, Any]:
    """RSS/PSS/USS summed over the serving processes at idle, in MiB."""
    pids = layer.serving_pids()
    if not pids:
        return {"processes": None, "rss_mib": None, "pss_mib": None, "uss_mib": None, "why": "no host PIDs"}
    totals = {"rss": 0, "pss": 0, "uss": 0}
    for pid in pids:
        for key, value in process_memory(pid).items():
            totals[key] += value
    return {"processes": len(pids), **{f"{k}_mib": round(v / 2**20, 1) for k, v in totals.items()}}


def stage_diff(stage: int) -> dict[str, Any]:
    """Files and lines of code and configuration a stage adds against the previous one (`make diff`).

    ``per_file`` maps each changed file to [lines added, lines removed];
    documentation is not what running a layer costs. Stage 01 counts its whole folder.
    """
    per_file = code_changes(stage - 1, stage)
    return {
        "files_changed": len(per_file),
        "lines_added": sum(a for a, _ in per_file.values()),
        "lines_removed": sum(r for _, r in per_file.values()),
        "per_file": per_file,
    }


def dependencies(stage: int) -> dict[str, Any]:
    """Pinned packages a stage needs and their installed size in this environment (MiB)."""
    path = STAGES[stage] / "requirements.txt"
    names = [line.split("==")[0] for line in path.read_text().splitlines() if "==" in line]
    size = 0
    for name in names:
        dist = metadata.distribution(name)
        size += sum(Path(dist.locate_file(f)).stat().st_size for f in dist.files or [] if dist.locate_file(f).exists())
    return {"packages": len(names), "installed_mib": round(size / 2**20, 1)}


# --- stage 05's autoscaler -------------------------------------------------------
def hpa_status() -> dict[str, Any]:
    """The HorizontalPodAutoscaler as the API sees it now."""
    return json.loads(kubectl("get", "hpa", DEPLOYMENT, "-n", NAMESPACE, "-o", "json"))


def settle_at_floor(timeout: float = 180) -> int:
    """Wait until the Deployment runs exactly the HPA's minimum of pods, all ready; return that minimum.

    An earlier load may have left extra pods: they leave after a quiet minute.
    """
    floor = hpa_status()["spec"]["minReplicas"]
    if not wait_until(lambda: len(pods()) == floor == sum(is_ready(p) for p in pods()), timeout=timeout, interval=5):
        raise LayerError(f"the Deployment did not settle at {floor} ready pods in {timeout:.0f} s: {hpa_status()}")
    return floor


def autoscale(
    base_url: str,
    clients: int = 8,
    up_timeout: float = 240,
    down_timeout: float = 240,
    interval: float = 5,
    hold: float = 20,
) -> dict[str, Any]:
    """CPU load until the HorizontalPodAutoscaler has added a Ready pod, and ``hold`` s more, then quiet
    until it removed it.

    Counts Ready pods (what serves), not the HPA's desiredReplicas (what it
    asked for). Returns when each happened (s from the start of the load),
    the pods over time, and the load's summary. Waits up to three minutes
    for metrics-server's first CPU figures, and for the pods to be at the
    HPA's minimum, before it starts. ``served``: the requests answered and failed
    per ``interval`` s of the load, to set beside the pods.
    """
    if not wait_until(lambda: hpa_status()["status"].get("currentMetrics"), timeout=180, interval=5):
        raise LayerError(f"the HPA got no CPU metrics in 180 s (is metrics-server running?): {hpa_status()['status']}")
    floor = settle_at_floor()
    timeline: dict[str, list] = {"t_s": [], "ready": [], "pods": [], "desired": []}
    started = time.monotonic()

    def observe() -> int:
        current = pods()
        ready = sum(is_ready(p) for p in current)
        timeline["t_s"].append(round(time.monotonic() - started, 1))
        timeline["ready"].append(ready)
        timeline["pods"].append(len(current))
        timeline["desired"].append(hpa_status()["status"].get("desiredReplicas"))
        return ready

    with LoadRun(base_url, clients=clients, max_seconds=up_timeout + 30) as run:
        scaled = wait_until(lambda: observe() > floor, timeout=up_timeout, interval=interval)
        up_s = time.monotonic() - started
        held_until = time.monotonic() + min(hold, up_timeout)  # a little longer under load: the peak
        while time.monotonic() < held_until:
            observe()
            time.sleep(interval)
    peak = max(timeline["ready"])
    stopped_s = time.monotonic() - started
    down = wait_until(lambda: observe() <= floor and timeline["pods"][-1] <= floor, timeout=down_timeout,
                      interval=interval)  # fmt: skip
    return {
        "clients": clients,
        "floor": floor,
        "peak_ready": peak,
        "scaled_up": scaled,
        "scaled_up_s": round(up_s, 1) if scaled else None,
        "load_stopped_s": round(stopped_s, 1),
        "scaled_down": down,
        "scaled_down_after_s": round(time.monotonic() - started - stopped_s, 1) if down else None,
        "load": run.report.summary(),
        "timeline": timeline,
        "served": run.report.timeline(interval),  # requests answered and failed per ``interval`` s of the load
    }
