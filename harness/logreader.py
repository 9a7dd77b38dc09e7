"""Reading a served layer's log as an operator's program does: one JSON object per line (the stages' logs.py).

A few kinds of line are not JSON, on purpose, and are named here with the reason; any other
line that is not a JSON object is a defect (tests/conftest.py checks every log the suite makes).
"""

from __future__ import annotations

import json
import re
from datetime import datetime

# What a line that is not JSON may be, and why it may be.
NOT_JSON = {
    "the Flask CLI's banner (printed with click.echo before the app logs anything)": re.compile(
        r"^ \* (Serving Flask app|Debug mode)"
    ),
    "nginx's error log (nginx has no format for it; its JSON access line says the same)": re.compile(
        r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[[a-z]+\] "
    ),
    "a bad setting's one-line message, written before logging starts": re.compile(r"^[Ee]rror: "),
    "scripts/stage3_proxy.sh's one line for the person who started it (where each server listens)": re.compile(
        r"^nginx on http://\S+ -> gunicorn on unix:"
    ),
    "gunicorn started without gunicorn.conf.py (harness.local.GunicornWithoutConfig shows what that costs)": (
        re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[[A-Z]+\] ")
    ),
}


def records(text: str) -> list[dict]:
    """The log's JSON lines, parsed, in order (every other line skipped)."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def problems(text: str) -> list[str]:
    """Lines an operator's program could not read: not a JSON object and none of NOT_JSON, or an access
    line (logger iris.access) without its request id."""
    wrong = []
    for line in text.splitlines():
        if not line.strip() or any(pattern.match(line) for pattern in NOT_JSON.values()):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            wrong.append(f"not JSON: {line[:200]}")
            continue
        if not isinstance(record, dict) or not {"timestamp", "level", "message"} <= record.keys():
            wrong.append(f"not a log record: {line[:200]}")
        elif record.get("logger") == "iris.access" and not record.get("request_id"):
            wrong.append(f"an access line without a request id: {line[:200]}")
    return wrong


#: the levels an operator is alerted on
ALERTING = ("WARNING", "ERROR", "CRITICAL")


def signals(text: str, since: float, source: str = "log") -> list[dict]:
    """The log's lines at WARNING or worse written at or after ``since`` (seconds since the epoch, as
    ``time.time()``), each as {"at_s": seconds after ``since``, "source", "text": "LEVEL message"}."""
    found = []
    for record in records(text):
        if record.get("level") not in ALERTING or "timestamp" not in record:
            continue
        at = parse_time(record["timestamp"])
        if at is not None and at >= since:
            text_ = f"{record['level']} {record.get('message', '')}"
            found.append({"at_s": round(at - since, 3), "source": f"{source} ({record.get('logger', '?')})",
                          "text": text_})  # fmt: skip
    return found


def parse_time(text: str) -> float | None:
    """An ISO 8601 / RFC 3339 time (a log line's, Docker's with nanoseconds, Kubernetes') as seconds since the
    epoch; None for anything else."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text or "")
    if not match:
        return None
    when, fraction, zone = match.groups()
    try:
        stamp = datetime.fromisoformat(when + (fraction or "")[:7] + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    return stamp.timestamp()
