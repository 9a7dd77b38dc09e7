"""One contract for every layer: the golden inputs give the golden predictions.

Every stage folder that exists, through the ``started`` fixture (conftest.py):
a layer that needs Docker or a cluster skips without it, or fails in CI.
"""

from __future__ import annotations

from harness.golden import mismatches


def test_golden_predictions_at_every_layer(started, golden):
    body = started.predict(golden["inputs"])
    assert body["model_name"] == "iris"
    assert body["model_version"] == golden["model_version"]
    assert mismatches(body["predictions"], golden) == []
