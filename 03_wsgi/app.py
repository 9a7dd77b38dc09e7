# DELIBERATE COPY: this file is byte-identical in 02_rest_api, 03_wsgi,
# 04_container and 05_kubernetes: every later layer serves this exact app.
# tests/test_stage_copies.py enforces it; edit 02_rest_api/app.py and run
# `make sync` to copy it into the later stages.
"""The iris model over HTTP: one JSON API served unchanged by every later layer.

Endpoints (all JSON; errors are always {"error": "..."}):
  POST /predict              {"instances": [{feature: cm, ...}, ...]} -> a label and probabilities per row
  GET  /v2/health/live       liveness: the process answers
  GET  /v2/health/ready      readiness: the model is loaded, verified and names the canary flowers
  GET  /openapi.json         the OpenAPI description of every endpoint (openapi.json)
  GET  /metrics              counters and histograms in Prometheus' text format (metrics.py)
  /v2/...                    the Open Inference Protocol V2 for V2 clients (v2.py)

Every response carries an X-Request-ID header (the caller's, or a new one), and every request
writes one JSON access line with it (logs.py).

Settings come from the environment (or the ``config`` dict in tests):
  MODEL_PATH     artifact to serve (default: artifacts/iris.joblib beside model.py)
  MAX_ROWS       rows accepted per request (default 1000)
  OBSERVE        config only: False builds the app without its request ids, access lines and counts
                 (the benchmark measures what they cost; `app:create_app({"OBSERVE": False})`)
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from flask import Flask
from flask import Response
from flask import g
from flask import jsonify
from flask import request
from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import HTTPException

import logs
import metrics
import model as iris
from inputs import check_rows
from inputs import json_body
from inputs import loaded_model
from inputs import validated
from v2 import v2

MAX_BODY_BYTES = 1024 * 1024
OPENAPI = Path(__file__).with_name("openapi.json")
log = logging.getLogger("iris")


def positive_int(name: str, default: int) -> int:
    """A whole-number setting from the environment; a bad one stops the server with one line naming it."""
    value = os.environ.get(name, str(default))
    if not value.isdigit() or int(value) < 1:
        # One line, no traceback, and exit code 4, which gunicorn reads as "App failed to load":
        # it stops instead of restarting workers that can never boot.
        log.error("%s must be a whole number of at least 1, got %r", name, value)
        raise SystemExit(4)
    return int(value)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app and load the model, verified, once per process."""
    logs.configure_logging()
    app = Flask(__name__)
    app.config.from_mapping(
        MODEL_PATH=os.environ.get("MODEL_PATH") or str(iris.model_path()),
        MAX_ROWS=positive_int("MAX_ROWS", 1000),
        OBSERVE=True,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
    )
    app.config.from_mapping(config or {})
    # Refuse to start with a missing or corrupted model: better no server than wrong answers. One line
    # naming the file and why, and exit code 4, as for a bad setting (gunicorn then stops, not loops).
    try:
        loaded = iris.load(app.config["MODEL_PATH"])
    except iris.ArtifactError as exc:
        log.error("MODEL_PATH: %s", exc)
        raise SystemExit(4) from None
    app.extensions["iris_model"] = loaded
    log.info("loaded model %s version %s (pid %d)", iris.MODEL_NAME, loaded.version, os.getpid())
    metrics.model_loaded(loaded.version)
    # A model that loads but names a textbook flower wrongly: the server runs, and says it is not
    # ready. A layer that routes by readiness (stage 05) sends it no requests; the others cannot tell.
    app.extensions["canary_problem"] = iris.canary_problem(loaded)
    if app.extensions["canary_problem"]:
        log.error("model version %s %s: not ready", loaded.version, app.extensions["canary_problem"])
    app.extensions["openapi"] = openapi_document(app.config["MAX_ROWS"])
    _register_errors(app)
    if app.config["OBSERVE"]:
        _register_observers(app)
    _register_routes(app)
    app.register_blueprint(v2)
    return app


def openapi_document(max_rows: int) -> dict[str, Any]:
    """openapi.json with its two row limits set to ``max_rows``, so the document never lies."""
    doc = json.loads(OPENAPI.read_text())
    schemas = doc["components"]["schemas"]
    schemas["PredictRequest"]["properties"]["instances"]["maxItems"] = max_rows
    schemas["InferRequest"]["properties"]["inputs"]["items"]["properties"]["shape"]["prefixItems"][0]["maximum"] = (
        max_rows
    )
    return doc


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


def _register_observers(app: Flask) -> None:
    """A request id for every request, then one access line and the metrics when it is answered."""

    @app.before_request
    def arrived() -> None:
        g.arrived = time.perf_counter()
        logs.current_request_id.set(logs.request_id(request.headers.get("X-Request-ID", "")))

    @app.after_request
    def answered(response: Response) -> Response:
        seconds = time.perf_counter() - g.arrived
        response.headers["X-Request-ID"] = logs.current_request_id.get()
        version = app.extensions["iris_model"].version
        logs.log_access(request.method, request.path, response.status_code, seconds, version)
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"  # a path no route has
        metrics.observe(endpoint, request.method, response.status_code, seconds)
        if "labels" in g:  # a prediction request's rows, by predicted label
            metrics.count_predictions(g.labels)
        return response

    @app.teardown_request
    def done(_error: BaseException | None) -> None:
        logs.current_request_id.set(None)


def _register_routes(app: Flask) -> None:
    @app.post("/predict")
    def predict():
        """Label and class probabilities for each row of {"instances": [...]}."""
        body = json_body()
        if "instances" not in body:
            raise BadRequest("missing 'instances': a list of rows")
        rows = body["instances"]
        if isinstance(rows, list):
            check_rows(len(rows))
        features = validated(rows)
        loaded = loaded_model()
        predictions = loaded.predict(features)
        g.labels = [row["label"] for row in predictions]  # counted once answered (_register_observers)
        return jsonify(model_name=iris.MODEL_NAME, model_version=loaded.version, predictions=predictions)

    @app.get("/v2/health/live")
    def live():
        """Liveness: the process answers HTTP."""
        return jsonify(live=True)

    @app.get("/v2/health/ready")
    def ready():
        """Readiness: create_app has loaded and verified the model, and it names the canary flowers right."""
        if app.extensions["canary_problem"]:
            return jsonify(error=f"the model {app.extensions['canary_problem']}"), 503
        return jsonify(ready=True)

    @app.get("/openapi.json")
    def openapi():
        """The OpenAPI 3.1 document of this API."""
        return jsonify(app.extensions["openapi"])

    @app.get("/metrics")
    def prometheus_metrics():
        """Every metric in Prometheus' text format, summed over the server's worker processes."""
        return Response(metrics.exposition(), content_type=metrics.CONTENT_TYPE)
