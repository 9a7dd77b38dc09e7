"""One contract for every layer: the golden inputs give the golden predictions.

Parametrized over every stage folder that exists; stage 04 needs Docker and
stage 05 a cluster (their markers skip or require them, see conftest.py).
"""

from __future__ import annotations

import pytest

from harness.golden import mismatches
from harness.layers import layer_class
from harness.paths import existing_stages

MARKS = {2: [pytest.mark.slow], 3: [pytest.mark.slow], 4: [pytest.mark.docker], 5: [pytest.mark.cluster]}


@pytest.mark.parametrize(
    "stage", [pytest.param(s, marks=MARKS.get(s, []), id=f"stage{s:02d}") for s in existing_stages()]
)
def test_golden_predictions_at_every_layer(stage, model_v1, golden, request):
    if stage == 5:  # the session's deployment (skips without a cluster)
        body = request.getfixturevalue("cluster").predict(golden["inputs"])
    else:
        if stage == 4:
            request.getfixturevalue("stage4_image")  # builds (or requires) the image; skips without Docker
        with layer_class(stage)(model_v1) as layer:
            body = layer.predict(golden["inputs"])
    assert body["model_name"] == "iris"
    assert body["model_version"] == golden["model_version"]
    assert mismatches(body["predictions"], golden) == []
