"""The measurement: every server up at once, then rounds of wrk loads that visit each in turn.

Each server answers each request once (checked) before wrk loads it: a single
row at 1 and 8 connections and a 1,000-row batch at 8, on /predict and on V2
infer. The order of the servers rotates from round to round, so background load
on a shared machine falls on every server alike; the median round is kept with
every round's rate beside it (harness.spread). The in-process floor is measured
once a round, in the stages' interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from bench.servers import ROUTES
from bench.servers import Server
from harness.core import ROOT
from harness.floor import BATCH
from harness.load import EXAMPLE_ROW
from harness.load import run_wrk
from harness.spread import median_round

#: name -> (route kind, rows per request). The V2 bodies carry the same numbers as /predict.
REQUESTS = {
    "predict_1": ("predict", 1),
    "predict_1000": ("predict", BATCH),
    "v2_1": ("v2", 1),
    "v2_1000": ("v2", BATCH),
}
#: the floor's figures, each kept as the median of the rounds with its range
FLOOR_KEYS = ("single_calls_per_s", "single_cpu_us", "batch_rows_per_s", "batch_rows_per_s_with_json")
START_TIMEOUT = 90  # seconds: MLServer and a container take a while on a busy machine


def body(kind: str, rows: int) -> dict[str, Any]:
    """The request body: /predict instances, or a V2 FP64 tensor of shape [rows, 4]."""
    if kind == "predict":
        return {"instances": [EXAMPLE_ROW] * rows}
    values = list(EXAMPLE_ROW.values())
    return {"inputs": [{"name": "input-0", "shape": [rows, 4], "datatype": "FP64", "data": values * rows}]}


def write_bodies(folder: Path) -> dict[str, Path]:
    """Every request body as a file for wrk (the same bytes to every server)."""
    files = {}
    for name, (kind, rows) in REQUESTS.items():
        files[name] = folder / f"{name}.json"
        files[name].write_text(json.dumps(body(kind, rows)))
    return files


def check_answer(server: Server, kind: str, rows: int) -> int:
    """One request before the load: it must succeed with ``rows`` predictions, or the figures mean nothing.

    Returns the size of the answer in bytes.
    """
    response = requests.post(server.layer.base_url + ROUTES[kind], json=body(kind, rows), timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"{server.name} {kind}: HTTP {response.status_code} {response.text[:300]}")
    data = response.json()
    count = len(data["predictions"]) if kind == "predict" else data["outputs"][0]["shape"][0]
    if count != rows:
        raise RuntimeError(f"{server.name} {kind}: {count} predictions for {rows} rows")
    return len(response.content)


def plan(server: Server, smoke: bool = False) -> list[tuple[str, str, int, int]]:
    """The loads a server gets: (request name, route kind, rows, connections).

    A single row at 1 and 8 connections and a batch at 8, on each route the
    server has; ``smoke`` keeps only its own route (its first). A ceiling
    gets single rows only.
    """
    loads = []
    for name, (kind, rows) in REQUESTS.items():
        if kind not in server.routes[: 1 if smoke else None] or (rows != 1 and not server.model):
            continue
        loads += [(name, kind, rows, c) for c in ((1, 8) if rows == 1 else (8,))]
    return loads


def measure_once(server: Server, name: str, kind: str, rows: int, connections: int, body_file: Path,
                 seconds: float) -> dict[str, Any]:  # fmt: skip
    """One wrk load on one server, with the server's CPU and rows/s."""
    result = run_wrk(server.layer.base_url, connections, seconds, path=ROUTES[kind], body=body_file,
                     serving_pids=server.layer.serving_pids)  # fmt: skip
    result.update(rows_per_request=rows, rows_per_s=round(result["rps"] * rows, 1))
    result["error_count"] = sum(result["errors"].values())
    p50 = result["latency_ms"].get("p50", 0)
    print(f"  {server.name:32} {name:13} c={connections}: {result['rps']:9.1f} req/s p50 {p50:7.2f} ms, "
          f"errors {result['error_count']}", flush=True)  # fmt: skip
    return result


def median_of_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median requests/s, every round's rate and the spread beside it (harness.spread),
    with the requests and errors of all rounds."""
    chosen = median_round(rounds)
    chosen["requests"] = sum(r["requests"] for r in rounds)
    chosen["error_count"] = sum(r["error_count"] for r in rounds)
    return chosen


def floor(model: Path, seconds: float) -> dict[str, Any]:
    """The in-process floor (harness.floor) in a fresh process of the stages' interpreter."""
    out = subprocess.run(
        [sys.executable, "-m", "harness.floor", str(model), str(seconds)],
        capture_output=True, text=True, check=True, timeout=seconds * 3 + 120, cwd=ROOT,
    )  # fmt: skip
    return json.loads(out.stdout)


def floor_of_rounds(floors: list[dict[str, Any]]) -> dict[str, Any]:
    """Each floor figure as the median of the rounds with its range."""
    found: dict[str, Any] = {"rounds": len(floors)}
    for key in FLOOR_KEYS:
        median = median_round(floors, key)
        found.update({key: median[key], f"{key}_min": median[f"{key}_min"], f"{key}_max": median[f"{key}_max"]})
    return found


def measure(chosen: list[Server], model: Path, bodies: dict[str, Path], seconds: float, rounds: int,
            smoke: bool) -> dict[str, Any]:  # fmt: skip
    """Start every server, check its answers, measure ``rounds`` rounds; the servers' figures and the floor."""
    measured: dict[str, dict[str, list]] = {s.name: {} for s in chosen}
    answers: dict[str, dict[str, int]] = {s.name: {} for s in chosen}
    floors = []
    with ExitStack() as stack:
        for server in chosen:
            print(f"starting {server.name}", flush=True)
            server.layer.start(START_TIMEOUT)
            stack.callback(server.layer.stop)
            for name, (kind, rows) in REQUESTS.items():
                if kind in server.routes and server.model:
                    answers[server.name][name] = check_answer(server, kind, rows)
        for number in range(rounds):
            print(f"round {number + 1}/{rounds}: in-process floor", flush=True)
            floors.append(floor(model, min(seconds, 2.0)))
            shift = number % len(chosen)
            for server in chosen[shift:] + chosen[:shift]:
                for name, kind, rows, connections in plan(server, smoke):
                    result = measure_once(server, name, kind, rows, connections, bodies[name], seconds)
                    measured[server.name].setdefault(f"{name}@{connections}", []).append(result)
    servers = {
        name: {"loads": {k: median_of_rounds(v) for k, v in loads.items()}, "answer_bytes": answers[name]}
        for name, loads in measured.items()
    }
    return {"servers": servers, "rounds": rounds, "in_process_floor": floor_of_rounds(floors)}
