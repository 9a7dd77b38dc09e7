# DELIBERATE COPY: this file is byte-identical in 02_rest_api, 03_wsgi,
# 04_container and 05_kubernetes (tests/test_stage_copies.py); edit
# 02_rest_api/inputs.py, then `make sync`.
"""Reading a request: its JSON body, the row limit and the row checks, each as a clear 4xx.

Shared by /predict (app.py) and the V2 protocol (v2.py), so both endpoints
refuse the same bad input with the same status code and message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import current_app
from flask import request
from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.exceptions import UnsupportedMediaType

import model as iris


def json_body() -> dict[str, Any]:
    """The request body as a JSON object, or a 400/413/415 that says what is wrong."""
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


def check_rows(count: int) -> None:
    """413 when a request holds more rows than MAX_ROWS."""
    limit = current_app.config["MAX_ROWS"]
    if count > limit:
        raise RequestEntityTooLarge(f"{count} rows in one request; the limit is {limit}")


def validated(rows: Any, validate: Callable[[Any], Any] = iris.validate_rows) -> Any:
    """The rows as a feature array for the model (``validate``: named rows by default), or a 400 naming the
    first problem."""
    try:
        return validate(rows)
    except iris.InputError as exc:
        raise BadRequest(str(exc)) from None


def loaded_model() -> iris.LoadedModel:
    """The model this app loaded and verified at start (create_app refuses to start without one)."""
    return current_app.extensions["iris_model"]
