"""Kubernetes against Docker Compose on one machine (harness.versus): every scenario, both stacks, one run.

What a reader weighs stage 05 against is stage 04's compose.yaml. The figures
differ from machine to machine; what each layer does does not, and that is
what is asserted: who restarts what, who sends requests where.
"""

import pytest

from harness import versus
from harness.core import train_model
from harness.layers import COMPOSE
from harness.layers import LAYERS
from tests.conftest import require

pytestmark = pytest.mark.cluster

# Shorter windows than the published run's, still long enough for each watchdog to act: gunicorn's worker
# timeout and the kubelet's liveness probe bring a hung worker back within about 40 s, a hung pod within about
# 45 s, and Docker marks a hung container unhealthy within about 30 s; a Service's new pod serves within
# seconds, and Compose's never does.
WINDOWS = {**versus.OBSERVE_S, "hung_worker": 50.0, "hung_server": 60.0, "scale": 15.0}


@pytest.mark.timeout(1500)  # both stacks through six scenarios: about ten minutes
def test_compose_and_kubernetes_go_through_the_same_scenarios_in_one_run(tmp_path):
    require(COMPOSE)
    require(LAYERS[5])
    v1, v2 = train_model(tmp_path / "v1", version="1"), train_model(tmp_path / "v2", version="2", c=0.05)
    results = versus.both(v1, v2, tmp_path, observe=WINDOWS, say=print)
    print(versus.markdown(results))
    assert len(results["layers"]) == 2, results["not_measured"]
    (compose_name, compose), (cluster_name, cluster) = results["layers"].items()
    assert compose_name == COMPOSE.name and cluster_name.startswith("05 Kubernetes")
    for entry in (compose, cluster):
        assert list(entry["scenarios"]) == list(versus.SCENARIOS)
        for kind, r in entry["scenarios"].items():
            assert r["requests"] > 0 and r["requests"] == r["ok"] + r["failed"], (kind, r)
    c, k = compose["scenarios"], cluster["scenarios"]

    # A crashed server: both restart it by themselves.
    assert c["crash"]["recovered"] and k["crash"]["recovered"], (c["crash"], k["crash"])
    # A hung worker: both are themselves again, with a signal: in Compose gunicorn's worker timeout replaces it
    # (the other worker serves meanwhile); a pod runs one worker, which the kubelet's probes catch.
    for r in (c["hung_worker"], k["hung_worker"]):
        assert r["recovered"] and r["first_signal"], r
    assert "WORKER TIMEOUT" in c["hung_worker"]["first_signal"]["text"], c["hung_worker"]["first_signal"]
    # The whole server hung: Docker marks the container unhealthy and leaves it hung; the kubelet's liveness
    # probe restarts it, and the readiness probe has taken the pod out of the Service meanwhile.
    assert not c["hung_server"]["recovered"], c["hung_server"]
    assert c["hung_server"]["first_signal"] and "unhealthy" in c["hung_server"]["first_signal"]["text"]
    assert k["hung_server"]["recovered"], k["hung_server"]
    assert k["hung_server"]["longest_stall_s"] < c["hung_server"]["longest_stall_s"]
    # A new setting: in force at both, through each one's own mechanism.
    assert c["config"]["applied"] and k["config"]["applied"], (c["config"], k["config"])
    # One more instance: the Service sends the new pod its share; Compose starts a container that nginx
    # never sends a request to (it resolved `app` once, when it started).
    assert k["scale"]["serves"] and k["scale"]["share_of_new"] > 0, k["scale"]
    assert not c["scale"]["serves"] and c["scale"]["share_of_new"] == 0, c["scale"]
    # The upgrade: both end on version 2.
    assert c["upgrade"]["serves_new_version"] and k["upgrade"]["serves_new_version"]
    # What each costs beside: the cluster's configuration and concepts outnumber Compose's.
    cc, kc = compose["costs"], cluster["costs"]
    assert kc["configuration_lines_total"] > cc["configuration_lines_total"] > 0
    assert len(kc["concepts"]) > len(cc["concepts"]) > 0
    assert cc["memory"]["pss_mib"] and kc["memory"]["pss_mib"]
    assert versus.beside(kc) > versus.beside(cc) > 0  # a cluster's own processes outweigh a Docker engine's


def test_the_versus_table_has_a_row_per_scenario_and_per_cost():
    """The Markdown table the README's block renders, from a results file shaped like ``both``'s."""
    run = {"requests": 10, "ok": 9, "failed": 1, "longest_stall_s": 1.0}
    scenarios = {
        "crash": {**run, "recovered": True, "recovery_s": 2.0, "first_signal": {"at_s": 1.0, "text": "restarted"}},
        "hung_worker": {**run, "recovered": True, "recovery_s": 31.0, "first_signal": None},
        "hung_server": {**run, "recovered": False, "recovery_s": None, "first_signal": None},
        "config": {**run, "applied": True, "applied_s": 3.0},
        "scale": {**run, "serves": False, "serves_s": None, "share_of_new": 0.0},
        "upgrade": {**run, "switch_s": 4.0},
    }
    costs = {"cold_start_s": 5.0, "memory": {"pss_mib": 200.0}, "own": {"engine": {"pss_mib": 140.0}},
             "configuration_lines_total": 31, "concepts": ["a"]}  # fmt: skip
    table = versus.markdown({"layers": {"A": {"scenarios": scenarios, "costs": costs}}, "not_measured": {}})
    lines = table.splitlines()
    assert len(lines) == 2 + len(versus.SCENARIOS) + 5
    assert "**not itself**" in table and "no requests" in table and "| 31 |" in table and "| 140 MiB |" in table
