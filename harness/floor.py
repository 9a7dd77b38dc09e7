"""The in-process floor: validate + predict with no HTTP at all, on one core.

One measurement with three users: the machine's calibration (harness.quiet
repeats the single-row rate and reads its spread as noise), the scorecard's
stage-01 row and the benchmark's floor (bench/measure.py), all in .venv, so
the floor uses exactly the packages the servers use.

    .venv/bin/python -m harness.floor MODEL_PATH SECONDS   # one JSON line
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core import model_module

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BATCH = 1000
MAX_CALLS = 200_000  # a bound on every loop besides time


def timed_calls(fn: Callable[[], Any], seconds: float) -> list[float]:
    """Call ``fn`` for ``seconds`` (at most MAX_CALLS times) after one warm-up call; each call's seconds."""
    fn()  # first-call imports and caches
    timings: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(timings) < MAX_CALLS and time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return timings


def single_row(model_path: Path, seconds: float) -> dict[str, Any]:
    """Single-row validate + predict: calls/s and latency percentiles (ms) and CPU per call (us)."""
    iris = model_module()
    loaded = iris.load(model_path)
    rows = [ROW]
    cpu0 = time.process_time()
    timings = timed_calls(lambda: loaded.predict(iris.validate_rows(rows)), seconds)
    cpu = time.process_time() - cpu0
    q = statistics.quantiles(timings, n=100)
    return {
        "single_calls_per_s": round(len(timings) / sum(timings), 1),
        "single_cpu_us": round(cpu / (len(timings) + 1) * 1e6, 1),
        "latency_ms": {"p50": round(q[49] * 1e3, 3), "p95": round(q[94] * 1e3, 3), "p99": round(q[98] * 1e3, 3)},
        "calls": len(timings),
    }


def batch(model_path: Path, seconds: float) -> dict[str, Any]:
    """A 1,000-row batch: rows/s, and rows/s with the JSON decode and encode a server adds (sorted keys)."""
    iris = model_module()
    loaded = iris.load(model_path)
    rows = [ROW] * BATCH
    text = json.dumps({"instances": rows})

    def with_json() -> str:
        decoded = json.loads(text)["instances"]
        return json.dumps({"predictions": loaded.predict(iris.validate_rows(decoded))}, sort_keys=True)

    plain = timed_calls(lambda: loaded.predict(iris.validate_rows(rows)), seconds)
    encoded = timed_calls(with_json, seconds)
    return {
        "batch_rows_per_s": round(BATCH * len(plain) / sum(plain), 1),
        "batch_rows_per_s_with_json": round(BATCH * len(encoded) / sum(encoded), 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: MODEL_PATH SECONDS -> one JSON line with the single-row and batch figures."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m harness.floor MODEL_PATH SECONDS", file=sys.stderr)
        return 2
    model, seconds = Path(args[0]), float(args[1])
    print(json.dumps({**single_row(model, seconds), **batch(model, seconds)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
