"""Scaling as capacity on one node (harness.capacity): more replicas help until their CPU limits fill the node.

Relative figures of one run only: no absolute rate is asserted.
"""

import pytest

from harness import capacity
from harness.spread import differs

pytestmark = pytest.mark.cluster


@pytest.mark.timeout(900)  # a rollout, then four counts of replicas twice
def test_replicas_add_capacity_until_their_limits_fill_the_node(cluster):
    result = capacity.curve(cluster, replicas=(1, 2, 4, 6), rounds=2, seconds=3.0)
    print(capacity.markdown({"curve": result}))
    points = {p["replicas"]: p for p in result["points"]}
    assert result["full_at"] <= 4, f"the test expects a node of 2 cores or fewer: {result['node_cores']}"
    one, two, four, six = (points[n] for n in (1, 2, 4, 6))
    # Two pods at half a core each serve more than one, beyond the spread of the rounds.
    assert differs(two, one) and two["rps"] > one["rps"], (one, two)
    # Past the node's cores (4 x 500m = 2 cores), two more pods add less than half of what the second added.
    assert six["rps"] - four["rps"] < 0.5 * (two["rps"] - one["rps"]), (one, two, four, six)


def test_the_capacity_tables_render_every_point_and_shape():
    point = {"rps": 100.0, "rps_rounds": [90.0, 110.0], "latency_ms": {"p50": 4.0}}
    curve = {"cpu_limit": "500m", "node_cores": 2.0, "connections": 8, "path": "Service", "full_at": 4.0,
             "points": [{"replicas": n, "limits_cores": n / 2, **point} for n in (1, 2)]}  # fmt: skip
    crash = {"failed": 3, "requests": 100, "longest_stall_s": 1.0}
    shape = {"cpu_limit": "1", "throughput": point, "memory": {"pss_mib": 200.0}, "crash": crash}
    text = capacity.markdown({"curve": curve, "shapes": {"2 workers x 1 pod": shape, "1 worker x 2 pods": shape}})
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) == (2 + 2) + (2 + 2), text  # each table: a header, a separator, a row per point or shape
    assert "2 workers x 1 pod" in text and "3 of 100 failed" in text
