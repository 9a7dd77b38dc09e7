# DELIBERATE COPY: this file is byte-identical in 02_rest_api, 03_wsgi,
# 04_container and 05_kubernetes (tests/test_stage_copies.py); edit
# 02_rest_api/metrics.py and run `make sync` to copy it into the later stages.
"""Metrics: GET /metrics in Prometheus' text format, counted across every worker.

What is counted (Prometheus' client library, prometheus-client):
  iris_requests_total{endpoint, method, status}               requests answered
  iris_request_duration_seconds{endpoint, method, status}     how long the app took (a histogram)
  iris_predictions_total{label}                               rows predicted, by predicted flower
  iris_rows_per_request                                       rows in each prediction request (a histogram)
  iris_model_loaded{model_version}                            processes serving that model version

The trap under gunicorn: each worker is its own process with its own counters, and a
scrape reaches one worker, so a per-process registry reports that worker's share, a
different number at each scrape. In multiprocess mode (PROMETHEUS_MULTIPROC_DIR, which
gunicorn.conf.py sets to a fresh directory per server) every worker writes its counts
to files there and /metrics adds them up; gunicorn.conf.py tells the library when a
worker dies, and the dead worker's counts stay in the sum.
(https://prometheus.github.io/client_python/multiprocess/)
A single process (Flask's development server, stage 02) uses the ordinary registry.
"""

from __future__ import annotations

import os
from collections import Counter as Tally

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import REGISTRY
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client import multiprocess

CONTENT_TYPE = CONTENT_TYPE_LATEST  # text/plain; version=0.0.4
if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # gunicorn.conf.py names the folder; the first process to count makes it
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
LABELS = ("endpoint", "method", "status")
REQUESTS = Counter("iris_requests_total", "Requests answered", LABELS)
DURATION = Histogram(
    "iris_request_duration_seconds",
    "Time from the request reaching the app to its response",
    LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
PREDICTIONS = Counter("iris_predictions_total", "Rows predicted, by predicted label", ("label",))
ROWS = Histogram("iris_rows_per_request", "Rows in each prediction request", buckets=(1, 10, 100, 1000))
# livesum: the sum over live processes (a dead worker's 1 leaves the sum); with preload_app the
# master, which loaded the model before forking, counts too.
MODEL = Gauge("iris_model_loaded", "Processes that loaded this model version", ("model_version",),
              multiprocess_mode="livesum")  # fmt: skip


def model_loaded(version: str) -> None:
    """This process has loaded (and verified) this model version."""
    MODEL.labels(version).set(1)


def observe(endpoint: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request. ``endpoint`` is the route's pattern (/v2/models/<name>/infer), not the
    path, so callers trying names cannot add series without end."""
    REQUESTS.labels(endpoint, method, status).inc()
    DURATION.labels(endpoint, method, status).observe(seconds)


def count_predictions(labels: list[str]) -> None:
    """Count one prediction request's rows and their predicted labels."""
    ROWS.observe(len(labels))
    for label, rows in Tally(labels).items():
        PREDICTIONS.labels(label).inc(rows)


def exposition() -> bytes:
    """Every metric in Prometheus' text format: summed over the server's processes in multiprocess mode."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
