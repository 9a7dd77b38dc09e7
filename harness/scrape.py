"""Reading a layer's /metrics as Prometheus would, and the per-worker trap measured (03 README, notebook 03).

The text is parsed by the Prometheus client's own parser, as a scrape would read it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from harness.load import EXAMPLE_ROW


def counted(metrics_text: str, endpoint: str = "/predict") -> float:
    """iris_requests_total for ``endpoint`` (its route), summed over methods and statuses."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "iris_requests_total" and sample.labels["endpoint"] == endpoint
    )


def scrape(base_url: str) -> str:
    """One GET /metrics."""
    response = requests.get(f"{base_url}/metrics", timeout=10)
    response.raise_for_status()
    return response.text


def predict_rows(base_url: str, count: int, clients: int = 4) -> None:
    """``count`` single-row predictions from ``clients`` at once: one client at a time finds the same idle
    worker waiting in accept() every time, and the other workers would count nothing."""

    def post(_: int) -> None:
        requests.post(f"{base_url}/predict", json={"instances": [EXAMPLE_ROW]}, timeout=10).raise_for_status()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, range(count)))


def across_workers(model: Path, sent: int = 40, scrapes: int = 12, workers: int = 2) -> dict[str, Any]:
    """Stage 03 with ``workers`` workers, with its gunicorn.conf.py and without it: ``sent`` predictions, then
    what each of ``scrapes`` scrapes of /metrics counts as /predict requests."""
    from harness.local import Gunicorn  # the layers import the harness, this module among it
    from harness.local import GunicornWithoutConfig

    found: dict[str, Any] = {"sent": sent, "workers": workers}
    for key, layer in (("summed", Gunicorn), ("per_process", GunicornWithoutConfig)):
        with layer(model, env={"WEB_CONCURRENCY": str(workers)}) as server:
            predict_rows(server.base_url, sent)
            found[key] = [counted(scrape(server.base_url)) for _ in range(scrapes)]
    return found
