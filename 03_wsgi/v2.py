# DELIBERATE COPY: this file is byte-identical in 02_rest_api, 03_wsgi,
# 04_container and 05_kubernetes (tests/test_stage_copies.py); edit
# 02_rest_api/v2.py, then `make sync`.
"""The Open Inference Protocol V2 (KServe, MLServer, Triton) as a Flask blueprint.

A V2 client (tritonclient, KServe's) talks to this server as to any V2 server:
  GET  /v2                       server metadata
  GET  /v2/models/iris           model metadata: versions, input and output tensors
  GET  /v2/models/iris/ready     model readiness
  POST /v2/models/iris/infer     FP64 tensor of shape [N, 4] -> label and probabilities tensors
(/v2/health/live and /v2/health/ready are the app's own health checks, in app.py.)
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import current_app
from flask import g
from flask import jsonify
from flask import request
from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import NotFound
from werkzeug.exceptions import UnsupportedMediaType

import model as iris
from inputs import check_rows
from inputs import json_body
from inputs import loaded_model
from inputs import validated

v2 = Blueprint("v2", __name__, url_prefix="/v2")


@v2.get("")
def server_metadata():
    """Server metadata as the V2 protocol specifies."""
    return jsonify(name="iris-serving-tutorial", version="1", extensions=[])


@v2.get("/models/<name>")
def model_metadata(name: str):
    """Model metadata: versions, input and output tensors."""
    _known_model(name)
    loaded = loaded_model()
    return jsonify(
        name=iris.MODEL_NAME,
        versions=[loaded.version],
        platform="sklearn",
        inputs=[{"name": "input-0", "datatype": "FP64", "shape": [-1, len(iris.FEATURES)]}],
        outputs=[
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(loaded.classes)]},
        ],
        parameters={"features": list(iris.FEATURES), "classes": loaded.classes},
    )


@v2.get("/models/<name>/ready")
def model_ready(name: str):
    """Model readiness: as /v2/health/ready (loaded, verified, the canary flowers named right)."""
    _known_model(name)
    problem = current_app.extensions["canary_problem"]
    if problem:
        return jsonify(error=f"the model {problem}"), 503
    return jsonify(ready=True)


@v2.post("/models/<name>/infer")
def infer(name: str):
    """V2 inference: one FP64 input of shape [N, 4] -> label and probabilities tensors."""
    _known_model(name)
    _refuse_binary_tensors()
    body = json_body()
    features = validated(_tensor_rows(body), iris.validate_values)
    loaded = loaded_model()
    labels, probabilities = loaded.predict_arrays(features)
    g.labels = labels  # counted once answered (app._register_observers)
    outputs = {
        "label": {"datatype": "BYTES", "shape": [len(labels)], "data": labels},
        "probabilities": {
            "datatype": "FP64",
            "shape": list(probabilities.shape),
            "data": probabilities.ravel().tolist(),
        },
    }
    response = {
        "model_name": iris.MODEL_NAME,
        "model_version": loaded.version,
        "outputs": [{"name": n, **outputs[n]} for n in _requested_outputs(body, outputs)],
    }
    if isinstance(body.get("id"), str):
        response["id"] = body["id"]
    return jsonify(response)


def _known_model(name: str) -> None:
    if name != iris.MODEL_NAME:
        raise NotFound(f"unknown model '{name}'; this server has '{iris.MODEL_NAME}'")


def _refuse_binary_tensors() -> None:
    # V2's binary tensor extension sends raw bytes after the JSON, with this header saying where the
    # JSON ends. This server does not implement it (GET /v2 lists no extensions), so it says so
    # instead of failing to parse the bytes as JSON.
    if "Inference-Header-Content-Length" in request.headers:
        raise UnsupportedMediaType(
            "binary tensor data (Inference-Header-Content-Length) is not supported: "
            "send the input tensor as JSON 'data' (binary_data=False)"
        )


def _tensor_rows(body: dict[str, Any]) -> list[list[Any]]:
    """Check the V2 input tensor and cut its flat data into rows of the four features, in order (a tensor has
    no names: MLServer's codecs decode it the same way, straight into rows of numbers)."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest("'inputs' must be a list with exactly one tensor")
    tensor = inputs[0]
    if tensor.get("datatype") != "FP64":
        raise BadRequest(f"input datatype must be FP64, got {tensor.get('datatype')!r}")
    shape, data = tensor.get("shape"), tensor.get("data")
    width = len(iris.FEATURES)
    if not (isinstance(shape, list) and len(shape) == 2 and all(type(d) is int for d in shape) and shape[1] == width):
        raise BadRequest(f"input shape must be [N, {width}], got {shape!r}")
    if shape[0] < 1:
        raise BadRequest(f"input shape must have at least one row, got {shape!r}")
    check_rows(shape[0])
    if not isinstance(data, list):
        raise BadRequest("input 'data' must be a list of numbers (flat or nested by row)")
    if all(isinstance(row, list) for row in data):
        data = [value for row in data for value in row]
    if len(data) != shape[0] * width:
        raise BadRequest(f"input shape {shape} needs {shape[0] * width} values, got {len(data)}")
    return [data[i : i + width] for i in range(0, len(data), width)]


def _requested_outputs(body: dict[str, Any], outputs: dict[str, Any]) -> list[str]:
    requested = body.get("outputs")
    if requested is None:
        return list(outputs)
    if not isinstance(requested, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
    ):
        raise BadRequest("'outputs' must be a list of objects with a 'name' string")
    names = [o["name"] for o in requested]
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise BadRequest(f"unknown output(s) {unknown}; available: {', '.join(outputs)}")
    return names
