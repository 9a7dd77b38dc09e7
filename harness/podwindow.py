"""How one pod's death reaches the Service (stage 05), step by step, measured under load.

When gunicorn dies in one of two pods, clients are sent there until the
Service forgets the pod. Three things happen in turn; the first and the last
are timed here from the kill:

1. the kubelet notices the container exited (it relists containers every
   second) and the pod's Ready condition turns False;
2. the EndpointSlice controller marks the pod's endpoint not ready (not timed:
   kube-proxy's reaction to it is step 3);
3. kube-proxy rewrites the node's rules: new connections go to the other pod
   (timed where its rules are this machine's, the local cluster; on kind they
   are inside the node container).

Meanwhile the pod's nginx answers each request for it 502 and closes the
connection (nginx.conf), so a client's next request opens a new one, which the
rules send to either pod until step 3, then only to the live one.

``repeat`` does it ``times`` times, each kill at another point of the
readiness probe's period, and reports every step and the failed requests,
against the dead pod's share of the load per second.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import threading
import time
from typing import Any

from harness.core import wait_until
from harness.kube import NAMESPACE
from harness.kube import cluster_env
from harness.kube import is_ready
from harness.kube import kubectl_path
from harness.kube import pods
from harness.load import LoadRun

PROBE_PERIOD_S = 5  # the proxy's and the server's readinessProbe periodSeconds (k8s/base/deployment.yaml)


class _Watch:
    """``kubectl get ... -w`` with a jsonpath template, each line it prints kept with when it arrived."""

    def __init__(self, *args: str):
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen([kubectl_path(), "get", *args, "-n", NAMESPACE, "-w"], env=cluster_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(ValueError, OSError):  # stop() closed the pipe
            for line in self.proc.stdout:
                self.lines.append((time.monotonic(), line.strip()))

    def first(self, since: float, holds) -> float | None:
        """Seconds from ``since`` to the first line after it for which ``holds(line)``; None: none did."""
        return next((round(t - since, 3) for t, line in list(self.lines) if t > since and holds(line)), None)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()


def _routed_to(ip: str) -> bool | None:
    """Whether kube-proxy's rules on this machine still send the Service's connections to ``ip``; None when
    this machine does not hold them (kind: they are in the node container's network namespace)."""
    try:
        rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    endpoint = next((line.split()[1] for line in rules.splitlines()
                     if line.startswith("-A KUBE-SEP-") and f"--to-destination {ip}:" in line), None)  # fmt: skip
    if endpoint is None:
        return False if "KUBE-SVC-" in rules else None
    return any(line.startswith("-A KUBE-SVC-") and line.endswith(f"-j {endpoint}") for line in rules.splitlines())


def once(cluster, delay: float = 0.0, clients: int = 4, observe: float = 6.0) -> dict[str, Any]:
    """Kill one pod's gunicorn under load ``delay`` s into a fresh watch; time each step from the kill."""
    pod, _ = cluster.crash_victim()  # the pod crash() will kill
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    serving = sum(is_ready(p) for p in pods())
    ready = _Watch("pod", name, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}{"\\n"}')
    rules: list[tuple[float, bool | None]] = []
    done = threading.Event()

    def poll_rules() -> None:
        while not done.is_set():
            rules.append((time.monotonic(), _routed_to(ip)))
            time.sleep(0.02)

    threading.Thread(target=poll_rules, daemon=True).start()
    try:
        time.sleep(1.0 + delay)  # the watches have printed the current state
        with LoadRun(cluster.base_url, clients=clients, max_seconds=observe + 10) as run:
            time.sleep(1.0)
            command = cluster.crash("server")
            killed = time.monotonic()  # crash() returns right after the kill
            time.sleep(observe)
    finally:
        done.set()
        ready.stop()
    failed = [o for o in run.report.outcomes if not o.ok]
    served = [o for o in run.report.outcomes if o.ok and killed < o.end <= killed + observe]
    return {
        "command": command,
        "delay_s": round(delay, 3),
        "pod_unready_s": ready.first(killed, lambda line: line == "False"),
        # None where this machine does not hold the rules (_routed_to never says False there)
        "rules_updated_s": next((round(t - killed, 3) for t, routed in rules if t > killed and routed is False), None),
        "last_failure_s": round(max(o.end for o in failed) - killed, 3) if failed else None,
        "failed": len(failed),
        "failure_kinds": run.report.failure_kinds(),
        "ok_per_s": round(len(served) / observe, 1),
        "pods_serving": serving,
        "pod_share_per_s": round(len(served) / observe / max(1, serving), 1),  # the load / the pods serving
    }


def repeat(cluster, times: int = 5, clients: int = 4) -> dict[str, Any]:
    """``once`` ``times`` times, each kill at another point of the probe period, the cluster back at full
    strength in between; the runs, and the spread of each step and of the failed requests."""
    runs = []
    for i in range(times):
        runs.append(once(cluster, delay=(i * 1.3) % PROBE_PERIOD_S, clients=clients))
        wait_until(cluster.at_full_strength, 120, interval=0.5)
    summary = {}
    for key in ("pod_unready_s", "rules_updated_s", "last_failure_s", "failed", "pod_share_per_s"):
        values = [r[key] for r in runs if r[key] is not None]
        if values:
            summary[key] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    return {"runs": runs, "summary": summary, "clients": clients}
