# DELIBERATE COPY: this file is byte-identical in 02_rest_api, 03_wsgi,
# 04_container and 05_kubernetes: every later layer serves this exact app.
# tests/test_stage_copies.py enforces it; edit 02_rest_api/app.py and run
# `make sync` to copy it into the later stages.
"""The iris model over HTTP: one JSON API served unchanged by every later layer.

Endpoints (all JSON; errors are always {"error": "..."}):
  POST /predict                  {"instances": [{feature: cm, ...}, ...]}
  GET  /v2/health/live           Open Inference Protocol V2 (KServe, MLServer, Triton)
  GET  /v2/health/ready
  GET  /v2/models/iris           model metadata
  GET  /v2/models/iris/ready
  POST /v2/models/iris/infer     FP64 tensor of shape [N, 4]
  GET  /openapi.json             OpenAPI 3 description of all of the above

Settings come from the environment (or the ``config`` dict in tests):
  MODEL_PATH     artifact to serve (default: artifacts/iris.joblib beside model.py)
  MAX_ROWS       rows accepted per request (default 1000)
  TEST_ENDPOINTS 1 adds /_test/sleep and /_test/fail for the failure tests; never in production
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from flask import Flask
from flask import jsonify
from flask import request
from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import NotFound
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.exceptions import UnsupportedMediaType

import model as iris

MAX_BODY_BYTES = 1024 * 1024
log = logging.getLogger("iris")


def configure_logging() -> None:
    """Log to stdout once per process (servers and containers collect stdout)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app and load the model, verified, once per process."""
    configure_logging()
    app = Flask(__name__)
    app.config.from_mapping(
        MODEL_PATH=os.environ.get("MODEL_PATH") or str(iris.model_path()),
        MAX_ROWS=int(os.environ.get("MAX_ROWS", "1000")),
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        TEST_ENDPOINTS=os.environ.get("TEST_ENDPOINTS") == "1",
    )
    app.config.from_mapping(config or {})
    # Refuse to start with a missing or tampered model: better no server than wrong answers.
    app.extensions["iris_model"] = iris.load(app.config["MODEL_PATH"])
    log.info("loaded model %s version %s (pid %d)", iris.MODEL_NAME, _model(app).version, os.getpid())
    _register_errors(app)
    _register_routes(app)
    if app.config["TEST_ENDPOINTS"]:
        _register_test_routes(app)
    return app


def _model(app: Flask) -> iris.LoadedModel:
    loaded = app.extensions.get("iris_model")
    if loaded is None:
        raise ServiceUnavailable("model not loaded")
    return loaded


def _json_body() -> dict[str, Any]:
    # V2 clients (tritonclient.http) send their JSON with no Content-Type at all; the protocol
    # asks for none. So a body without a Content-Type is read as JSON, on /predict too (one rule
    # for both); a body that says it is something else is refused.
    if request.content_type and not request.is_json:
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {request.content_type!r}")
    try:
        # get_data enforces MAX_CONTENT_LENGTH (413) before anything is parsed.
        body = json.loads(request.get_data(cache=True))
    except ValueError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("malformed JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _refuse_binary_tensors() -> None:
    # V2's binary tensor extension sends raw bytes after the JSON, with this header saying where the
    # JSON ends. This server does not implement it (GET /v2 lists no extensions), so it says so
    # instead of failing to parse the bytes as JSON.
    if "Inference-Header-Content-Length" in request.headers:
        raise UnsupportedMediaType(
            "binary tensor data (Inference-Header-Content-Length) is not supported: "
            "send the input tensor as JSON 'data' (binary_data=False)"
        )


def _check_rows(count: int, max_rows: int) -> None:
    if count > max_rows:
        raise RequestEntityTooLarge(f"{count} rows in one request; the limit is {max_rows}")


def _validated(rows: Any) -> Any:
    try:
        return iris.validate_rows(rows)
    except iris.InputError as exc:
        raise BadRequest(str(exc)) from None


def _register_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        """Every HTTP error as JSON, keeping headers such as Allow on a 405."""
        response = exc.get_response()
        response.data = app.json.dumps({"error": exc.description})
        response.content_type = "application/json"
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        """A bug answers 500 JSON without a traceback; the process keeps serving."""
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify(error="internal server error"), 500


def _register_routes(app: Flask) -> None:
    @app.post("/predict")
    def predict():
        """Label and class probabilities for each row of {"instances": [...]}."""
        body = _json_body()
        if "instances" not in body:
            raise BadRequest("missing 'instances': a list of rows")
        rows = body["instances"]
        if isinstance(rows, list):
            _check_rows(len(rows), app.config["MAX_ROWS"])
        features = _validated(rows)
        loaded = _model(app)
        return jsonify(model_name=iris.MODEL_NAME, model_version=loaded.version, predictions=loaded.predict(features))

    @app.get("/v2/health/live")
    def live():
        """Liveness: the process answers HTTP."""
        return jsonify(live=True)

    @app.get("/v2/health/ready")
    @app.get(f"/v2/models/{iris.MODEL_NAME}/ready")
    def ready():
        """Readiness: the model is loaded and verified (503 until then)."""
        _model(app)
        return jsonify(ready=True)

    @app.get("/v2")
    def server_metadata():
        """Server metadata as the V2 protocol specifies."""
        return jsonify(name="iris-serving-tutorial", version="1", extensions=[])

    @app.get("/v2/models/<name>")
    def model_metadata(name: str):
        """Model metadata: versions, input and output tensors."""
        _known_model(name)
        loaded = _model(app)
        classes = len(loaded.classes)
        return jsonify(
            name=iris.MODEL_NAME,
            versions=[loaded.version],
            platform="sklearn",
            inputs=[{"name": "input-0", "datatype": "FP64", "shape": [-1, len(iris.FEATURES)]}],
            outputs=[
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, classes]},
            ],
            parameters={"features": list(iris.FEATURES), "classes": loaded.classes},
        )

    @app.post("/v2/models/<name>/infer")
    def infer(name: str):
        """V2 inference: one FP64 input of shape [N, 4] -> label and probabilities tensors."""
        _known_model(name)
        _refuse_binary_tensors()
        body = _json_body()
        features = _validated(_tensor_rows(body, app.config["MAX_ROWS"]))
        loaded = _model(app)
        predictions = loaded.predict(features)
        outputs = {
            "label": {"datatype": "BYTES", "shape": [len(predictions)], "data": [p["label"] for p in predictions]},
            "probabilities": {
                "datatype": "FP64",
                "shape": [len(predictions), len(loaded.classes)],
                "data": [p["probabilities"][c] for p in predictions for c in loaded.classes],
            },
        }
        wanted = _requested_outputs(body, outputs)
        response = {
            "model_name": iris.MODEL_NAME,
            "model_version": loaded.version,
            "outputs": [{"name": n, **outputs[n]} for n in wanted],
        }
        if isinstance(body.get("id"), str):
            response["id"] = body["id"]
        return jsonify(response)

    @app.get("/openapi.json")
    def openapi():
        """The OpenAPI 3 document of this API."""
        return jsonify(openapi_document(app.config["MAX_ROWS"]))


def _register_test_routes(app: Flask) -> None:
    @app.get("/_test/sleep")
    def sleep():
        """Hold a worker busy (failure tests only)."""
        seconds = request.args.get("seconds", "1")
        try:
            duration = min(float(seconds), 600)
        except ValueError:
            raise BadRequest("seconds must be a number") from None
        # Logged on entry, so a test knows the request is in flight before it signals.
        log.info("test endpoint: sleeping %.1f s (pid %d)", duration, os.getpid())
        time.sleep(duration)
        return jsonify(slept=float(seconds), pid=os.getpid())

    @app.get("/_test/fail")
    def fail():
        """Raise an unexpected exception (failure tests only)."""
        raise RuntimeError("deliberate failure for the tests")


def _known_model(name: str) -> None:
    if name != iris.MODEL_NAME:
        raise NotFound(f"unknown model '{name}'; this server has '{iris.MODEL_NAME}'")


def _tensor_rows(body: dict[str, Any], max_rows: int) -> list[dict[str, Any]]:
    """Check the V2 input tensor and turn it into named rows for validate_rows."""
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
    _check_rows(shape[0], max_rows)
    if not isinstance(data, list):
        raise BadRequest("input 'data' must be a list of numbers (flat or nested by row)")
    if all(isinstance(row, list) for row in data):
        data = [value for row in data for value in row]
    if len(data) != shape[0] * width:
        raise BadRequest(f"input shape {shape} needs {shape[0] * width} values, got {len(data)}")
    return [dict(zip(iris.FEATURES, data[i : i + width])) for i in range(0, len(data), width)]


def _requested_outputs(body: dict[str, Any], outputs: dict[str, Any]) -> list[str]:
    requested = body.get("outputs")
    if requested is None:
        return list(outputs)
    if not isinstance(requested, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
    ):
        raise BadRequest("'outputs' must be a list of objects with a 'name' string")
    names = [o.get("name") for o in requested]
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise BadRequest(f"unknown output(s) {unknown}; available: {', '.join(outputs)}")
    return names


def openapi_document(max_rows: int) -> dict[str, Any]:
    """OpenAPI 3.1 description of every endpoint and its error responses."""
    number = {"type": "number", "minimum": 0, "maximum": iris.MAX_CM}
    row = {
        "type": "object",
        "properties": {f: number for f in iris.FEATURES},
        "required": list(iris.FEATURES),
        "additionalProperties": False,
    }
    error = {
        "description": "Error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }

    def ok(schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": "OK", "content": {"application/json": {"schema": schema}}}

    def body(schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    model_name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [iris.MODEL_NAME]},
    }
    errors = {code: error for code in ("400", "404", "405", "413", "415", "500")}
    probabilities = {"type": "object", "additionalProperties": {"type": "number"}}
    tensor_out = {
        "type": "object",
        "required": ["name", "datatype", "shape", "data"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "data": {"type": "array"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Iris model API", "version": "1.0.0"},
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Predict label and class probabilities for 1 to MAX_ROWS rows",
                    "requestBody": body(
                        {
                            "type": "object",
                            "required": ["instances"],
                            "properties": {
                                "instances": {"type": "array", "minItems": 1, "maxItems": max_rows, "items": row}
                            },
                        }
                    ),
                    "responses": {
                        "200": ok(
                            {
                                "type": "object",
                                "required": ["model_name", "model_version", "predictions"],
                                "properties": {
                                    "model_name": {"type": "string"},
                                    "model_version": {"type": "string"},
                                    "predictions": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["label", "probabilities"],
                                            "properties": {"label": {"type": "string"}, "probabilities": probabilities},
                                        },
                                    },
                                },
                            }
                        ),
                        **errors,
                    },
                }
            },
            "/v2/health/live": {"get": {"summary": "Liveness", "responses": {"200": ok({"type": "object"}), **errors}}},
            "/v2/health/ready": {
                "get": {"summary": "Readiness", "responses": {"200": ok({"type": "object"}), "503": error, **errors}}
            },
            "/v2": {"get": {"summary": "Server metadata", "responses": {"200": ok({"type": "object"}), **errors}}},
            "/v2/models/{name}/ready": {
                "get": {
                    "summary": "Model readiness",
                    "parameters": [model_name],
                    "responses": {"200": ok({"type": "object"}), "503": error, **errors},
                }
            },
            "/v2/models/{name}": {
                "get": {
                    "summary": "Model metadata",
                    "parameters": [model_name],
                    "responses": {"200": ok({"type": "object"}), **errors},
                }
            },
            "/v2/models/{name}/infer": {
                "post": {
                    "summary": "Open Inference Protocol V2 inference on an FP64 tensor of shape [N, 4]",
                    "parameters": [model_name],
                    "requestBody": body(
                        {
                            "type": "object",
                            "required": ["inputs"],
                            "properties": {
                                "id": {"type": "string"},
                                "inputs": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["name", "shape", "datatype", "data"],
                                        "properties": {
                                            "name": {"type": "string"},
                                            # [N, 4]: 1 to max_rows rows of 4 features (prefixItems
                                            # types each position: OpenAPI 3.1 is JSON Schema 2020-12).
                                            "shape": {
                                                "type": "array",
                                                "prefixItems": [
                                                    {"type": "integer", "minimum": 1, "maximum": max_rows},
                                                    {"type": "integer", "const": len(iris.FEATURES)},
                                                ],
                                                "minItems": 2,
                                                "maxItems": 2,
                                            },
                                            "datatype": {"type": "string", "enum": ["FP64"]},
                                            "data": {"type": "array", "items": number},
                                        },
                                    },
                                },
                            },
                        }
                    ),
                    "responses": {
                        "200": ok(
                            {
                                "type": "object",
                                "required": ["model_name", "outputs"],
                                "properties": {
                                    "model_name": {"type": "string"},
                                    "model_version": {"type": "string"},
                                    "id": {"type": "string"},
                                    "outputs": {"type": "array", "items": tensor_out},
                                },
                            }
                        ),
                        **errors,
                    },
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": ok({"type": "object"}), **errors}}
            },
        },
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}
        },
    }
