"""Stage 02's checks: the REST API, served by Flask's development server from the folder (harness.local.DevServer)."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

from exercises.common import Fail
from exercises.common import crash_answers
from exercises.common import error_of
from exercises.common import get
from exercises.common import post
from exercises.common import rows
from exercises.common import serving
from exercises.common import train
from harness import logreader
from harness.local import DevServer

ROW_LIMIT = 100  # 02.1: the default MAX_ROWS asked for: one row more gets a 413 naming it, exactly this many a 200


@contextlib.contextmanager
def dev_server(folder: Path) -> Iterator[str]:
    """`make stage-2` run from ``folder`` on a free loopback port, serving version 1; yields its base URL."""
    with (
        tempfile.TemporaryDirectory(prefix="ex-02-") as tmp,
        serving(DevServer(train(folder, Path(tmp) / "iris.joblib"), folder=folder)) as server,
    ):
        yield server.base_url


def check_02_1(folder: Path) -> None:
    """MAX_ROWS defaults to ROW_LIMIT (100): one row more gets a 413 naming the limit, exactly ROW_LIMIT a 200."""
    with dev_server(folder) as url:
        over = post(f"{url}/predict", rows(ROW_LIMIT + 1))
        if over.status_code != 413:
            raise Fail(
                f"HTTP {over.status_code} for {ROW_LIMIT + 1} rows (no MAX_ROWS set)",
                f"413: the default limit is {ROW_LIMIT}",
            )
        if str(ROW_LIMIT) not in error_of(over):
            raise Fail(f"the error {error_of(over)!r}", f"a message naming the limit, {ROW_LIMIT}")
        at = post(f"{url}/predict", rows(ROW_LIMIT))
        if at.status_code != 200:
            raise Fail(f"HTTP {at.status_code} for exactly {ROW_LIMIT} rows", f"200: {ROW_LIMIT} rows are allowed")
        doc = get(f"{url}/openapi.json").json()
        limit = doc["components"]["schemas"]["PredictRequest"]["properties"]["instances"].get("maxItems")
        if limit != ROW_LIMIT:
            raise Fail(f"openapi.json saying maxItems {limit}", f"the document to say {ROW_LIMIT} too")


def check_02_2(folder: Path) -> None:
    """GET /v2/models/iris/versions/<v>: 200 for the loaded version, a JSON 404 for any other."""
    with dev_server(folder) as url:
        found = get(f"{url}/v2/models/iris/versions/1")
        if found.status_code != 200:
            raise Fail(f"HTTP {found.status_code} for /v2/models/iris/versions/1", "200 with the model metadata")
        body = found.json()
        if body.get("name") != "iris" or body.get("versions") != ["1"]:
            raise Fail(
                f"{json.dumps(body)[:120]}", 'the metadata of /v2/models/iris ("name": "iris", "versions": ["1"])'
            )
        for path in ("/v2/models/iris/versions/7", "/v2/models/rose/versions/1"):
            missing = get(url + path)
            if missing.status_code != 404 or "error" not in (missing.json() if missing.content else {}):
                raise Fail(f"HTTP {missing.status_code} for {path}", 'a 404 with {"error": "..."}')
        if "7" not in error_of(get(f"{url}/v2/models/iris/versions/7")):
            raise Fail("a 404 that does not name version 7", "an error message naming the version asked for")


def check_02_4(folder: Path) -> None:
    """The access line of POST /predict says how many rows it predicted ("rows"): 3 for 3 rows, 0 when refused."""
    with (
        tempfile.TemporaryDirectory(prefix="ex-02-") as tmp,
        serving(DevServer(train(folder, Path(tmp) / "iris.joblib"), folder=folder)) as server,
    ):
        post(f"{server.base_url}/predict", rows(3), headers={"X-Request-ID": "ex-three-rows"})
        post(f"{server.base_url}/predict", {"instances": "nope"}, headers={"X-Request-ID": "ex-refused"})
        lines = {r.get("request_id"): r for r in logreader.records(server.log()) if r.get("logger") == "iris.access"}
    for request_id, expected in (("ex-three-rows", 3), ("ex-refused", 0)):
        line = lines.get(request_id)
        if line is None:
            raise Fail(f"no access line with request_id {request_id!r}", "one JSON access line per request, as before")
        if line.get("rows") != expected:
            raise Fail(f'"rows": {line.get("rows")!r} on the access line of {request_id}', f'"rows": {expected}')


def check_02_3(folder: Path) -> None:
    """Question: the development server killed under load: do requests fail, and does it come back by itself?"""
    with tempfile.TemporaryDirectory(prefix="ex-02.3-") as tmp:
        crash_answers(folder, "02.3", DevServer(train(folder, Path(tmp) / "iris.joblib"), folder=folder))
