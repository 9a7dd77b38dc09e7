# DELIBERATE COPY: this file is byte-identical in 02_rest_api, 03_wsgi,
# 04_container and 05_kubernetes (tests/test_stage_copies.py); edit
# 02_rest_api/logs.py and run `make sync` to copy it into the later stages.
"""Structured logs: one JSON object per line, and one access line per request.

A person reads a log line; a program (`jq`, Loki, Elasticsearch, CloudWatch) searches
millions of them. JSON lines serve both, if every line has the same fields:

  {"timestamp": "2026-12-07T08:01:02.345Z", "level": "INFO", "logger": "iris.access",
   "pid": 4242, "message": "POST /predict 200", "request_id": "5f0c...", "method": "POST",
   "path": "/predict", "status": 200, "duration_ms": 1.21, "model_version": "1"}

The request id ties the lines of one request together across layers: the server takes
the caller's X-Request-ID header (nginx in front sets one when the caller did not) or makes
one, logs it, and sends it back in the response's X-Request-ID header.

The app writes the access line itself, the same in every stage, because only the app knows
the request id and the model version; gunicorn's own access log is off (gunicorn.conf.py)
and gunicorn's other lines use JsonFormatter too. Flask's development server (stage 02)
keeps its start-up lines, through JsonFormatter, and drops its own request lines.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC
from datetime import datetime

# A caller's request id is kept if it is a plausible id (an UUID, a trace id): letters,
# digits, dots, dashes and underscores, at most 128 of them. Anything else is replaced, so a
# header cannot write arbitrary text into the logs.
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# The request being served in this thread (app.py sets it when a request arrives, clears it after):
# every line logged meanwhile carries its id. No Flask here: gunicorn's master imports this module
# for its formatter and never serves a request.
current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# A terminal's colour codes (the development server's warnings wear them) mean nothing in a log search.
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
# The fields an access line adds, in the order they are written.
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "model_version")
access = logging.getLogger("iris.access")


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON: timestamp (UTC), level, logger, message, the request's id and fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker, under gunicorn
            "message": ANSI_COLOUR.sub("", record.getMessage()).rstrip("\n"),
        }
        if current_request_id.get():
            line["request_id"] = current_request_id.get()
        line.update((field, getattr(record, field)) for field in ACCESS_FIELDS if hasattr(record, field))
        if record.exc_info:  # a traceback stays on one line: JSON escapes its newlines
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging() -> None:
    """JSON lines on stdout, once per process (servers and containers collect stdout)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    # The development server's own line per request ('127.0.0.1 - - [date] "POST /predict HTTP/1.1" 200 -')
    # would repeat the access line without its fields; its start-up lines stay.
    logging.getLogger("werkzeug").addFilter(lambda record: not str(record.msg).endswith('"%s" %s %s'))


def request_id(given: str) -> str:
    """The caller's X-Request-ID if it is a plausible id, else a new one."""
    return given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def log_access(method: str, path: str, status: int, seconds: float, model_version: str) -> None:
    """One access line for an answered request (its id comes from current_request_id)."""
    fields = {"method": method, "path": path, "status": status, "duration_ms": round(seconds * 1000, 3)}
    access.info("%s %s %s", method, path, status, extra={**fields, "model_version": model_version})
