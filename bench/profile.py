"""`make bench-profile`: where a stage-03 worker spends its CPU under single-row load.

Starts stage 03 exactly as `make stage-3` does (the harness's Gunicorn layer,
2 sync workers), loads it with wrk (one row, 8 connections) and samples one
worker with py-spy from .venv-bench (``--nonblocking``: the worker is never paused). Every sample is put in
the layer its innermost recognised frame belongs to (gunicorn, its access log,
Flask + Werkzeug, JSON, our app.py, model.py, scikit-learn + numpy), and each
layer's share of the CPU is turned into microseconds per request from the
workers' measured CPU time. Writes results/profile-03.json.

    .venv/bin/python -m bench.profile [--seconds 12] [--env GUNICORN_MAX_REQUESTS=0 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.servers import PEERS_BIN
from bench.servers import WORKERS
from harness import publish
from harness.core import ROOT
from harness.core import train_model
from harness.load import run_wrk
from harness.local import Gunicorn

# Layers, innermost first wins: (name, pattern on the frame's file). A sample
# whose innermost frames are the standard library (socket, inspect, abc) is
# charged to the first caller that matches.
LAYERS = (
    ("access log (gunicorn glogging + logging)", r"gunicorn/glogging\.py|/logging/"),
    ("scikit-learn + numpy (predict_proba)", r"sklearn/|numpy/|scipy/|narwhals/|threadpoolctl"),
    ("JSON encode/decode", r"/json/"),
    ("model.py (validate_rows, label dicts)", r"\(model\.py:"),
    ("app.py (routes, checks)", r"\(app\.py:"),
    ("Flask + Werkzeug (request, routing, response)", r"flask/|werkzeug/"),
    ("gunicorn (accept, parse, write, close)", r"gunicorn/"),
)
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*):(?P<line>\d+)\)$")


def layer_of(frames: list[str]) -> str:
    """The layer a sample belongs to: the innermost frame that matches one."""
    for frame in reversed(frames):
        for name, pattern in LAYERS:
            if re.search(pattern, frame):
                return name
    return "other (interpreter, standard library)"


def analyse(raw: Path) -> dict[str, Any]:
    """Shares of samples by layer, and the top functions by self time, from py-spy's collapsed stacks."""
    layers: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any("load_wsgi" in f for f in frames):  # a worker booting is not serving: counted apart
            layers["worker boot (import, load model)"] += int(count)
        else:
            layers[layer_of(frames)] += int(count)
        leaves[frames[-1]] += int(count)
        total += int(count)
    return {
        "samples": total,
        "layers": {k: round(v / total, 4) for k, v in layers.most_common()},
        "top_self": {k: round(v / total, 4) for k, v in leaves.most_common(15)},
    }


def profile(seconds: float, extra_env: dict[str, str], idle: bool = False) -> dict[str, Any]:
    """Start stage 03, load it, sample one worker; the figures as a dict."""
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        work = Path(tmp)
        raw = work / "worker.txt"
        with Gunicorn(train_model(work), env={"WEB_CONCURRENCY": str(WORKERS), **extra_env}) as layer:
            spy_args = ["record", "--pid", str(layer.workers()[0]), "--nonblocking", "--rate", "250",
                        "--duration", str(int(seconds) - 1), "--format", "raw", "--output", str(raw)]  # fmt: skip
            spy = subprocess.Popen(
                [str(PEERS_BIN / "py-spy"), *spy_args, *(["--idle"] * idle)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            load = run_wrk(layer.base_url, 8, seconds, serving_pids=layer.serving_pids)
            spy.wait(60)
            boots = layer.log().count("Booting worker")
        found = analyse(raw)
    per_request = load["server_cpu_us_per_request"]
    found["layers_us_per_request"] = {k: round(v * per_request, 1) for k, v in found["layers"].items()}
    return {
        "env": extra_env,
        "idle_sampled": idle,
        "rps_while_sampled": load["rps"],  # py-spy attached: not a throughput figure
        "latency_ms": load.get("latency_ms"),
        "client_cpu_cores": load.get("client_cpu_cores"),
        "server_cpu_us_per_request": per_request,
        "worker_boots": boots,
        **found,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--idle", action="store_true", help="sample waiting too (py-spy --idle): where wall time goes")
    parser.add_argument("--env", nargs="*", default=[], help="extra NAME=VALUE for gunicorn (an A/B)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "profile-03.json")
    args = parser.parse_args(argv)
    extra = dict(e.split("=", 1) for e in args.env)
    result = profile(args.seconds, extra, args.idle)
    run = publish.published()  # the publishing run this is part of (make bench / make results), if any
    result["run"] = publish.stamp(run) if run else None
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    rate, cpu = result["rps_while_sampled"], result["server_cpu_us_per_request"]
    print(f"{rate} req/s while sampled, {cpu} us of server CPU a request")
    for name, us in result["layers_us_per_request"].items():
        print(f"  {us:7.1f} us  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
