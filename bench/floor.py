"""The in-process floor: validate + predict with no HTTP at all, on one core.

Run by bench/run.py with the stages' own interpreter (.venv), so the floor
uses exactly the packages the servers use. Prints one JSON line:
calls/s for one row, rows/s for a 1,000-row batch (also with the JSON
decode and encode a server adds), and the CPU time of one single-row call
(validate + predict) in microseconds.

    PYTHONPATH=01_model_py .venv/bin/python bench/floor.py MODEL_PATH SECONDS
"""

from __future__ import annotations

import json
import sys
import time

import model as iris  # 01_model_py on PYTHONPATH (run.py sets it): the model code every stage has

MAX_CALLS = 200_000  # a bound on the loop besides time


def _rate(fn, seconds: float) -> tuple[int, float, float]:
    """Call ``fn`` for ``seconds`` (at most MAX_CALLS times): calls, wall seconds, CPU seconds."""
    fn()  # warm up (first-call imports, caches)
    calls, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while calls < MAX_CALLS and time.perf_counter() - wall0 < seconds:
        fn()
        calls += 1
    return calls, time.perf_counter() - wall0, time.process_time() - cpu0


def main(model_path: str, seconds: float) -> dict:
    """Figures for one row and for a 1,000-row batch."""
    loaded = iris.load(model_path)
    row = [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]
    batch = row * 1000
    calls, wall, cpu = _rate(lambda: loaded.predict(iris.validate_rows(row)), seconds)
    batches, bwall, _ = _rate(lambda: loaded.predict(iris.validate_rows(batch)), seconds)
    # The same with the JSON a server must also decode and encode (sorted keys, as Flask's jsonify).
    text = json.dumps({"instances": batch})

    def with_json() -> str:
        rows = json.loads(text)["instances"]
        return json.dumps({"predictions": loaded.predict(iris.validate_rows(rows))}, sort_keys=True)

    json_batches, jwall, _ = _rate(with_json, seconds)
    return {
        "single_calls_per_s": round(calls / wall, 1),
        "single_cpu_us": round(cpu / calls * 1e6, 1),
        "batch_rows_per_s": round(batches * 1000 / bwall, 1),
        "batch_rows_per_s_with_json": round(json_batches * 1000 / jwall, 1),
        "calls": calls,
        "batches": batches,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], float(sys.argv[2]))))
