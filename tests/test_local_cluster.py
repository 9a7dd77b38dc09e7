"""The local cluster (scripts/local-cluster): it says what a machine lacks, and `down` leaves nothing behind.

The first tests need no cluster: they run the script's own check on a
machine made to lack something (no docker on PATH, an engine that does not
answer) and expect one line, never a traceback. Then, with the cluster
up, a network namespace stands in for another machine on the workshop's Wi-Fi and
reaches none of the cluster's ports, which listen on loopback addresses only. The
last one stops a running local cluster, lists what is left (processes, mounts,
network interfaces, addresses, iptables chains, state folders), and starts it
again for the tests after it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cluster import LOCAL_RUN
from harness.cluster import control_plane_pids
from harness.core import wait_until
from harness.kube import HOST_PORT
from harness.kube import LOCAL_KUBECONFIG
from harness.kube import LOCAL_SCRIPT
from harness.kube import flavour
from harness.layers import ROOT
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


def test_pins_agree_with_the_manifests_and_the_docs():
    pins = versions()
    manifest = (LOCAL_SCRIPT.parent / "metrics-server.yaml").read_text()
    assert f"metrics-server:{pins['METRICS_SERVER_VERSION']}" in manifest
    assert "--kubelet-insecure-tls" in manifest
    page = (ROOT / "docs" / "local-cluster.md").read_text()
    assert f"{pins['KUBE_VERSION']} (pinned in" in page, "docs/local-cluster.md names the pinned Kubernetes"
    # cgroup v1 hosts (this project's machines) need the kubelet told so since Kubernetes 1.35.
    assert "failCgroupV1: false" in LOCAL_SCRIPT.read_text()


NODE_ADDRESS = re.search(r"^NODE_ADDRESS=(\S+)$", LOCAL_SCRIPT.read_text(), re.M).group(1)
# Connect from wherever it runs; one word: open, or the error (timeout: dropped; refused: nothing listens).
PROBE = """import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
    print("open")
except OSError as error:
    print(type(error).__name__)"""


def loopback_addresses() -> set[str]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True).stdout
    return set(re.findall(r" inet ([0-9.]+)/", out)) | {"::1"}


def probe(address: str, port: int, netns: str | None = None) -> str:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    run = subprocess.run([*prefix, sys.executable, "-c", PROBE, address, str(port)], capture_output=True, text=True,
                         timeout=30)  # fmt: skip
    return run.stdout.strip() or run.stderr.strip()


def listening_sockets() -> dict[str, set[str]]:
    """Each cluster process -> the addresses it listens on (TCP and UDP), from `ss`."""
    by_pid = {pid: name for name, pid in control_plane_pids().items()}
    out = subprocess.run(["ss", "-H", "-lntup"], capture_output=True, text=True, timeout=30).stdout
    found: dict[str, set[str]] = {}
    for line in out.splitlines():
        for pid in map(int, re.findall(r"pid=(\d+)", line)):
            if pid in by_pid:
                found.setdefault(by_pid[pid], set()).add(line.split()[4])
    return found


def host_part(address: str) -> str:
    """'127.0.0.1:6443' -> '127.0.0.1', '[::1]:2379' -> '::1', '*:10250' -> '*'."""
    return address.rsplit(":", 1)[0].strip("[]").split("%")[0]


@pytest.mark.cluster
def test_the_cluster_listens_on_loopback_addresses_only(cluster):
    """Every port of every cluster process is on the loopback interface (127.0.0.0/8 or the node's address)."""
    if flavour() != "local":
        pytest.skip("kind's API server is published on 127.0.0.1 by Docker; its node is a container")
    sockets = listening_sockets()
    assert {"kube-apiserver", "kubelet", "kube-proxy", "etcd"} <= sockets.keys(), sockets  # not vacuous
    allowed = loopback_addresses()
    wide = {name: sorted(a for a in found if host_part(a) not in allowed and not host_part(a).startswith("127."))
            for name, found in sockets.items()}  # fmt: skip
    print(f"\nlistening: { {name: sorted(found) for name, found in sockets.items()} }")
    assert not any(wide.values()), f"listening beyond loopback: {wide}"


@pytest.fixture
def other_machine():
    """A network namespace joined to this host by a veth pair: another machine on the same Wi-Fi."""
    netns, host_side, host_ip = "iris-wifi-probe", "iris-wifi0", "10.123.45.1"
    subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    commands = [
        ["ip", "netns", "add", netns],
        ["ip", "link", "add", host_side, "type", "veth", "peer", "name", "iris-wifi1", "netns", netns],
        ["ip", "addr", "add", f"{host_ip}/30", "dev", host_side],
        ["ip", "link", "set", host_side, "up"],
        ["ip", "-n", netns, "addr", "add", "10.123.45.2/30", "dev", "iris-wifi1"],
        ["ip", "-n", netns, "link", "set", "iris-wifi1", "up"],
        ["ip", "-n", netns, "link", "set", "lo", "up"],
        ["ip", "-n", netns, "route", "add", "default", "via", host_ip],
    ]
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)
        yield netns, host_ip
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        subprocess.run(["ip", "link", "del", host_side], capture_output=True)


@pytest.mark.cluster
def test_another_machine_reaches_none_of_the_clusters_ports(cluster, other_machine):
    """From a neighbour, the API server, the kubelet, kube-proxy's health port and the NodePort are out of reach,
    on this host's address and on the node's (routed here on purpose); from this host they answer."""
    if flavour() != "local":
        pytest.skip("kind's node is a container on Docker's host-only network")
    netns, host_ip = other_machine
    ports = {"kube-apiserver": 6443, "kubelet": 10250, "kube-proxy health": 10256, "stage 05 NodePort": HOST_PORT}
    here = {"API server": probe(NODE_ADDRESS, 6443), "NodePort": probe("127.0.0.1", HOST_PORT)}
    assert set(here.values()) == {"open"}, here  # not vacuous: the cluster answers on loopback
    from_neighbour = {f"{what} on {address}": probe(address, port, netns)
                      for what, port in ports.items() for address in (host_ip, NODE_ADDRESS)}  # fmt: skip
    print(f"\nfrom the other machine: {from_neighbour}")
    assert "open" not in from_neighbour.values(), from_neighbour


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
        "loopback_addresses": loopback_addresses(),
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
            "chains": {c for c in down["chains"] if re.match(r"\w+:(KUBE-|CNI-|IRIS-)", c)},
            "addresses": down["loopback_addresses"] & {NODE_ADDRESS},
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
