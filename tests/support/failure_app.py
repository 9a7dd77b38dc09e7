"""The stage's app plus two routes only the failure tests need: a request that holds a worker, a bug.

Never part of a stage: the tests serve it in place of ``app:create_app()``
(gunicorn ``failure_app:create_app()`` with this folder on PYTHONPATH, or an
image that adds this file, see Dockerfile here), so the production code has
no test-only routes.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from flask import Flask
from flask import jsonify
from flask import request
from werkzeug.exceptions import BadRequest

import app as stage_app

log = logging.getLogger("iris")
# What a harness server layer needs to serve this app instead of the stage's: Gunicorn(model, **SERVE).
SERVE = {"app": "failure_app:create_app()", "env": {"PYTHONPATH": str(Path(__file__).resolve().parent)}}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The stage's own app, with /_test/sleep and /_test/fail added."""
    app = stage_app.create_app(config)

    @app.get("/_test/sleep")
    def sleep():
        """Hold a worker busy for ?seconds= (at most 600)."""
        seconds = request.args.get("seconds", "1")
        try:
            duration = min(float(seconds), 600)
        except ValueError:
            raise BadRequest("seconds must be a number") from None
        # Logged on entry, so a test knows the request is in flight before it signals.
        log.info("test endpoint: sleeping %.1f s (pid %d)", duration, os.getpid())
        time.sleep(duration)
        return jsonify(slept=duration, pid=os.getpid())

    @app.get("/_test/fail")
    def fail():
        """Raise an unexpected exception: the app must answer 500 JSON and keep serving."""
        raise RuntimeError("deliberate failure for the tests")

    return app
