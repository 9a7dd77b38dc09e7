"""Two ceilings for the benchmark: what gunicorn and Flask cost before any model code runs.

    gunicorn -c ../../03_wsgi/gunicorn.conf.py ceiling:bare   # WSGI with no framework
    gunicorn -c ../../03_wsgi/gunicorn.conf.py ceiling:echo   # Flask: parse the JSON body, answer it back

Same gunicorn config as stage 03 (2 sync workers, access log). The gap from
these to stage 03 is what validation, the model and our app code cost.
"""

from __future__ import annotations

from flask import Flask
from flask import jsonify
from flask import request

ANSWER = b'{"ready": true}'


def bare(environ, start_response):
    """The least a WSGI app can do: read the body, answer fixed JSON."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]


echo = Flask(__name__)


@echo.get("/v2/health/ready")
def ready():
    """Readiness, so the benchmark starts it like any other server."""
    return jsonify(ready=True)


@echo.post("/predict")
def predict():
    """Parse the JSON body and answer it back: Flask's request and response cost, no model."""
    return jsonify(request.get_json())
