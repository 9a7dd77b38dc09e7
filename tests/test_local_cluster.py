"""The local cluster (scripts/local-cluster): it says what a machine lacks, and `down` leaves nothing behind.

The first tests need no cluster: they run the script's own check on a
machine made to lack something (no docker on PATH, an engine that does not
answer) and expect one line, never a traceback. The last one stops a running
local cluster, lists what is left (processes, mounts, network interfaces,
iptables chains, state folders), and starts it again for the tests after it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cluster import LOCAL_RUN
from harness.cluster import control_plane_pids
from harness.core import wait_until
from harness.kube import HOST_PORT
from harness.kube import LOCAL_KUBECONFIG
from harness.kube import LOCAL_SCRIPT
from harness.kube import flavour
from harness.layers import STAGES
from harness.manifests import find
from harness.manifests import render

STATE = LOCAL_KUBECONFIG.parent
BRIDGE = "cni-iris0"


def check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LOCAL_SCRIPT), "check"], capture_output=True, text=True, timeout=60, env=env)


def test_check_without_a_docker_client_is_one_line(tmp_path):
    # A PATH with the basic tools but no docker.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "uname", "dirname", "id", "cat", "sed", "ip", "hostname", "tr"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    proc = check({**os.environ, "PATH": str(bin_dir)})
    print(f"\n{proc.stdout.strip()}")
    assert proc.returncode == 1
    assert proc.stdout.strip().count("\n") == 0 and proc.stdout.startswith("cannot run a local cluster here:"), proc
    assert os.geteuid() != 0 or "docker" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_check_with_a_docker_engine_that_does_not_answer_is_one_line(tmp_path):
    if shutil.which("docker") is None or os.geteuid() != 0:
        pytest.skip("needs a docker client, and root (without root the check stops at that first)")
    proc = check({**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"})
    print(f"\n{proc.stdout.strip()}")
    assert proc.returncode == 1
    assert (
        proc.stdout.strip()
        == "cannot run a local cluster here: the Docker engine does not answer (is dockerd running?)"
    )


def test_an_unknown_cluster_choice_is_one_line():
    proc = subprocess.run(["make", "stage-5", "CLUSTER=minikube"], capture_output=True, text=True, timeout=120,
                          cwd=LOCAL_SCRIPT.parents[2])  # fmt: skip
    assert proc.returncode != 0
    assert "CLUSTER must be kind or local, got 'minikube'" in proc.stdout + proc.stderr


def test_make_stage_5_names_a_missing_kind():
    """CLUSTER=kind on a machine without kind (or without what kind needs first): one line that says what."""
    if shutil.which("kind"):
        pytest.skip("kind is installed here")
    proc = subprocess.run(["make", "stage-5", "CLUSTER=kind"], capture_output=True, text=True, timeout=120,
                          cwd=LOCAL_SCRIPT.parents[2])  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out
    assert "kind not found: install kind" in out or "docker" in out.lower(), out


def versions() -> dict[str, str]:
    """The pins of scripts/local-cluster/versions.sh."""
    text = (LOCAL_SCRIPT.parent / "versions.sh").read_text()
    return dict(re.findall(r"^(\w+)=(\S+)$", text, re.M))


def test_the_local_overlay_answers_on_port_8000_inside_the_clusters_node_port_range():
    service = find(render("local"), "Service", "iris")
    (port,) = service["spec"]["ports"]
    low, high = map(int, re.search(r"^NODE_PORTS=(\d+)-(\d+)$", LOCAL_SCRIPT.read_text(), re.M).groups())
    assert service["spec"]["type"] == "NodePort" and port["nodePort"] == HOST_PORT == 8000
    assert low <= port["nodePort"] <= high


def test_pins_agree_with_the_manifests_and_the_readme():
    pins = versions()
    manifest = (LOCAL_SCRIPT.parent / "metrics-server.yaml").read_text()
    assert f"metrics-server:{pins['METRICS_SERVER_VERSION']}" in manifest
    assert "--kubelet-insecure-tls" in manifest
    readme = (STAGES[5] / "README.md").read_text()
    assert f"{pins['KUBE_VERSION']} (pinned in" in readme, "the 05 README names the pinned Kubernetes"
    # cgroup v1 hosts (this project's machines) need the kubelet told so since Kubernetes 1.35.
    assert "failCgroupV1: false" in LOCAL_SCRIPT.read_text()


def host_state() -> dict[str, set[str]]:
    """What a cluster could leave on this machine, listed."""
    mounts = {line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()}
    links = set(re.findall(r"^\d+: ([^:@]+)", subprocess.run(["ip", "-o", "link"], capture_output=True,
                                                             text=True).stdout, re.M))  # fmt: skip
    chains = set()
    for table in ("filter", "nat", "mangle"):
        out = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True).stdout
        chains |= {f"{table}:{c}" for c in re.findall(r"^-N (\S+)", out, re.M)}
    on_bridge = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True).stdout
    return {
        "processes": {f"{name}:{pid}" for name, pid in control_plane_pids().items()},
        "pod_links": set(re.findall(r"^\d+: ([^:@]+)", on_bridge, re.M)),
        "mounts": {m for m in mounts if m.startswith((str(STATE), str(LOCAL_RUN)))},
        "links": links,
        "chains": chains,
        "folders": {str(p) for p in (STATE, LOCAL_RUN) if p.exists()},
    }


@pytest.mark.cluster
@pytest.mark.timeout(600)
def test_cluster_down_leaves_nothing_behind_and_up_comes_back(cluster):
    if flavour() != "local":
        pytest.skip("kind's cluster is one container: `kind delete cluster` removes it whole")
    up = host_state()
    assert up["processes"] and up["mounts"] and up["pod_links"] and BRIDGE in up["links"], (
        up
    )  # not vacuous: the cluster is there
    assert any(c.startswith("nat:KUBE-") for c in up["chains"]), sorted(up["chains"])
    try:
        subprocess.run(["bash", str(LOCAL_SCRIPT), "down"], check=True, capture_output=True, text=True, timeout=180)
        down = host_state()
        left = {
            "processes": down["processes"],
            "mounts": down["mounts"],
            "links": down["links"] & (up["pod_links"] | {BRIDGE}),
            "chains": {c for c in down["chains"] if re.match(r"\w+:(KUBE-|CNI-)", c)},
            "folders": down["folders"],
        }  # fmt: skip
        print(f"\nwith the cluster up: {len(up['processes'])} processes, {len(up['mounts'])} mounts, "
              f"{len(up['chains'] - down['chains'])} iptables chains, {len(up['links'] - down['links'])} interfaces"
              f" of its own; after `cluster.sh down`: {left}")  # fmt: skip
        assert not any(left.values()), left
        assert {p.split(":")[1] for p in up["processes"]}.isdisjoint(os.listdir("/proc"))
    finally:
        subprocess.run(["bash", str(LOCAL_SCRIPT), "up", cluster.image], check=True, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
        # `up` returns when the Deployment's status says rolled out, which can be the status from before
        # the restart: leave the next test every pod ready again.
        wait_until(cluster.at_full_strength, timeout=180, interval=1)
