"""What an operator sees: JSON log lines with request ids, and /metrics that add up across workers.

Every log line the whole suite makes is checked too, by conftest's ``every_log_line_is_json``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import logs as stage_logs  # 02_rest_api/logs.py, identical in every later stage
from harness import logreader
from harness import notice
from harness import scrape
from harness.core import wait_until
from harness.load import EXAMPLE_ROW
from harness.local import Gunicorn

ROW = EXAMPLE_ROW


def answering_pids(log: str) -> set[int]:
    """The processes that wrote a /predict access line."""
    return {r["pid"] for r in logreader.records(log) if r.get("logger") == "iris.access" and r["path"] == "/predict"}


# --- request ids and access lines (Flask's test client) ------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("trace-7f3a.b_2", True), ("", False), ("two words", False), ("x" * 129, False), ('"}{"level": "CRITICAL', False)],
    ids=["plausible", "none", "space", "too long", "injection"],
)
def test_every_response_carries_a_request_id_the_callers_when_plausible(client, sent, kept):
    response = client.get("/v2/health/live", headers={"X-Request-ID": sent} if sent else {})
    answered = response.headers["X-Request-ID"]
    if kept:
        assert answered == sent
    else:
        assert answered != sent and len(answered) == 32 and int(answered, 16) >= 0, answered


@pytest.fixture
def access_lines():
    """What the app's access logger writes while the test runs, formatted as the servers format it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(stage_logs.JsonFormatter())
    logger = logging.getLogger("iris.access")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # pytest's own handlers leave the root logger at WARNING
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_each_request_writes_one_json_access_line_with_every_field(client, access_lines):
    client.post("/predict", json={"instances": [ROW]}, headers={"X-Request-ID": "req-1"})
    client.post("/predict", json={"instances": "nope"}, headers={"X-Request-ID": "req-2"})
    client.get("/no/such/path")
    first, bad, missing = access_lines()
    assert {k: first[k] for k in ("request_id", "method", "path", "status", "model_version")} == {
        "request_id": "req-1", "method": "POST", "path": "/predict", "status": 200, "model_version": "1",
    }  # fmt: skip
    assert first["level"] == "INFO" and first["timestamp"].endswith("Z") and first["duration_ms"] > 0
    assert (bad["request_id"], bad["status"]) == ("req-2", 400)
    assert missing["status"] == 404 and len(missing["request_id"]) == 32


def test_a_line_logged_while_serving_carries_the_requests_id_and_a_traceback_stays_one_line():
    formatter = stage_logs.JsonFormatter()
    token = stage_logs.current_request_id.set("req-9")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("iris", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info())
        line = formatter.format(record)
    finally:
        stage_logs.current_request_id.reset(token)
    assert "\n" not in line
    parsed = json.loads(line)
    assert (parsed["request_id"], parsed["message"], parsed["level"]) == ("req-9", "failed: x", "ERROR")
    assert "ValueError: boom" in parsed["exception"]


def test_the_log_reader_names_what_an_operator_cannot_read():
    good = json.dumps({"timestamp": "t", "level": "INFO", "message": "m"})
    access = json.dumps({"timestamp": "t", "level": "INFO", "message": "m", "logger": "iris.access"})
    nginx = "2026/12/07 08:00:00 [error] 31#31: *1 connect() failed (111: Connection refused)"
    text = "\n".join([good, nginx, " * Debug mode: off", "Traceback (most recent call last):", access])
    found = logreader.problems(text)
    assert len(found) == 2 and found[0].startswith("not JSON: Traceback") and "without a request id" in found[1]
    assert logreader.records(text) == [json.loads(good), json.loads(access)]


# --- /metrics -----------------------------------------------------------------------------------------------


def test_metrics_are_prometheus_text_that_counts_requests_predictions_and_rows(client):
    before = client.get("/metrics").get_data(as_text=True)
    client.post("/predict", json={"instances": [ROW, ROW, ROW]})
    client.post("/predict", json={"instances": [ROW]})
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.get_data(as_text=True))}
    assert scrape.counted(response.get_data(as_text=True)) - scrape.counted(before) == 2

    def value(name: str, sample: str, **labels: str) -> float:
        return next(s.value for s in families[name].samples if s.name == sample and labels.items() <= s.labels.items())

    old = {f.name: f for f in text_string_to_metric_families(before)}
    old_setosa = next((s.value for s in old["iris_predictions"].samples if s.labels.get("label") == "setosa"), 0)
    assert value("iris_predictions", "iris_predictions_total", label="setosa") - old_setosa == 4
    assert families["iris_rows_per_request"].type == "histogram"
    assert value("iris_model_loaded", "iris_model_loaded", model_version="1") >= 1
    assert families["iris_request_duration_seconds"].type == "histogram"


@pytest.mark.slow
def test_metrics_add_up_across_workers_and_survive_a_worker_killed_and_respawned(model_v1):
    with Gunicorn(model_v1, env={"WEB_CONCURRENCY": "2"}) as layer:
        scrape.predict_rows(layer.base_url, 40)
        assert len(answering_pids(layer.log())) == 2, "both workers served"
        scraped = [scrape.scrape(layer.base_url) for _ in range(4)]
        assert {scrape.counted(text) for text in scraped} == {40}, "every scrape, whichever worker answers it"

        victim, survivor = layer.workers()
        os.kill(victim, signal.SIGKILL)
        replacement = layer.wait_workers(1, exclude={victim, survivor})
        assert layer.wait_booted(replacement), "the new worker never loaded the model"
        scrape.predict_rows(layer.base_url, 10)
        scraped = [scrape.scrape(layer.base_url) for _ in range(4)]
        assert {scrape.counted(text) for text in scraped} == {50}, "the dead worker's counts stay in the sum"
        families = text_string_to_metric_families(scraped[0])
        loaded = [s for f in families for s in f.samples if s.name == "iris_model_loaded"]
        assert [s.value for s in loaded] == [2.0], "live workers serving version 1: the dead one left the gauge"
        assert list(Path(tempfile.gettempdir()).glob(f"gunicorn-{layer.port}-*-metrics")), "gunicorn.conf.py made it"
    assert not list(Path(tempfile.gettempdir()).glob(f"gunicorn-{layer.port}-*-metrics")), "and removed it at exit"


@pytest.mark.slow
def test_without_the_config_each_worker_reports_only_its_own_share(model_v1):
    """The trap: gunicorn without gunicorn.conf.py keeps one registry per worker, so a scrape sees one worker."""
    found = scrape.across_workers(model_v1, sent=40, scrapes=12)
    assert set(found["summed"]) == {40}, found
    # each scrape is one worker's share, never the total (often the same worker's: an idle one waits in accept())
    assert 0 < min(found["per_process"]) and max(found["per_process"]) < 40, f"one worker's share each: {found}"


@pytest.mark.slow
def test_a_served_stage_logs_json_lines_and_echoes_request_ids(served):
    """Every served layer (02 to 05, by the shared fixture): the id goes through every layer in front of the app."""
    response = requests.get(f"{served.base_url}/v2/health/ready", headers={"X-Request-ID": "op-42"}, timeout=10)
    assert response.headers.get("X-Request-ID") == "op-42"
    generated = requests.get(f"{served.base_url}/v2/health/ready", timeout=10).headers.get("X-Request-ID", "")
    assert len(generated) == 32, "a request without an id gets one"
    if hasattr(served, "log"):
        assert wait_until(lambda: '"request_id": "op-42"' in served.log(), 10), "the access line names the id"
        assert logreader.problems(served.log()) == []


# --- time to notice -----------------------------------------------------------------------------------------

# What an operator must see for each fault, per layer: a word some signal says, or None for "nothing at all"
# (no watchdog, no supervisor). Stage 05: a probe's event or gunicorn's timeout, whichever comes first.
NOTICED = {
    "DevServer": {"hung": None, "crash_loop": None},
    "Gunicorn": {"hung": "WORKER TIMEOUT", "crash_loop": "MODEL_PATH"},
    "Container": {"hung": "WORKER TIMEOUT", "crash_loop": "MODEL_PATH"},
    "Cluster": {"hung": "", "crash_loop": "MODEL_PATH"},
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(notice.FAULTS))
def test_each_fault_is_noticed_where_the_layer_can_notice_it(watched, fault):
    expected = NOTICED[type(watched).__name__][fault]
    seen = notice.time_to_notice(watched, fault, observe=12 if expected is None else notice.OBSERVE_S)
    texts = [s["text"] for s in seen["signals"]]
    if expected is None:
        assert seen["first_signal"] is None, f"{watched.name} has nothing that notices, yet: {texts}"
    else:
        assert seen["first_signal"] is not None, f"no signal within {seen['observed_s']} s: {seen['command']}"
        assert any(expected in text for text in texts), f"no signal says {expected!r}: {texts}"
    assert watched.ready(), "the fault was undone and the layer answers again"
