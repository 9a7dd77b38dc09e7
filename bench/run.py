"""`make bench`: our stages against what a reader would pick instead, in one run, with one client.

The same machine, the same load generator (wrk), the same request bytes, the
same model artifact:

- the in-process floor (validate + predict, no HTTP; harness/floor.py);
- stage 02 (Flask development server), stage 03 (gunicorn, 2 sync workers),
  stage 04 (the stage's image under Docker), run by the harness's own layers
  exactly as the stages run (bench/servers.py);
- FastAPI + uvicorn with the same 2 workers (bench/peers/fastapi_app.py);
- MLServer + mlserver-sklearn through the Open Inference Protocol V2
  (bench/peers/mlserver/), the very same V2 request as ours;
- two ceilings: gunicorn serving a bare WSGI app and a Flask JSON echo
  (bench/peers/ceiling.py): what the stack costs before our code runs.

How it measures: bench/measure.py. The goals and their verdicts: bench/goals.py;
why each is held or missed: bench/README.md, whose figures `make bench` renders
from the results (bench/readme.py). Results go to results/bench.json with the
machine they ran on, and a plot to results/bench.png.

    .venv/bin/python -m bench.run                   # the full run: 3 rounds, ~6 min
    .venv/bin/python -m bench.run --smoke --out F   # a second per load, no Docker, for the tests

It runs in the stages' venv (the harness's); the peers run from .venv-bench
(make bench-venv). Every server listens on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import readme
from bench.costs import costs
from bench.costs import peer_versions
from bench.goals import summarise
from bench.measure import measure
from bench.measure import write_bodies
from bench.plot import plot
from bench.servers import WORKERS
from bench.servers import servers
from harness import publish
from harness.container import Container
from harness.core import ROOT
from harness.core import train_model
from harness.scorecard import environment

RESULTS = ROOT / "results" / "bench.json"
PROFILE = ROOT / "results" / "profile-03.json"
STAGE4 = "04 container"


def record_environment() -> dict[str, Any]:
    """The machine and the stages' versions (harness.scorecard.environment), and the peers' versions."""
    return {**environment(), "load_generator": "wrk, every load", "peer_packages": peer_versions()}


def main(argv: list[str] | None = None) -> int:
    """Command line: measure every server (or ``--only`` some) into ``--out``, or ``--summarise`` it again."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="wrk duration of each load (default 4)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds over every server; the median is kept (default 3)"
    )
    parser.add_argument("--smoke", action="store_true", help="one second per load, no Docker, no costs, no plot")
    parser.add_argument("--only", nargs="*", help="run only servers whose name contains one of these")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS.relative_to(ROOT)}")
    parser.add_argument("--summarise", action="store_true", help="only recompute the summary, plot and README of --out")
    args = parser.parse_args(argv)
    if args.summarise:
        return report(json.loads(args.out.read_text()), args)
    seconds = 1.0 if args.smoke else args.seconds
    run = publish.published()  # the publishing run this is part of (make bench / make results), if any
    results: dict[str, Any] = {"run": publish.stamp(run) if run and not args.smoke else None,
                               "environment": record_environment(), "seconds_per_load": seconds, "workers": WORKERS,
                               "smoke": args.smoke}  # fmt: skip

    def wanted(name: str) -> bool:
        return not args.only or any(o in name for o in args.only)

    docker, why_not = (False, "smoke run") if args.smoke else Container.available()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        model = train_model(work)
        chosen = [s for s in servers(model, work, docker and wanted(STAGE4)) if wanted(s.name)]
        if not chosen:
            parser.error(f"no server matches --only {' '.join(args.only)}")
        measured = measure(chosen, model, write_bodies(work), seconds, 1 if args.smoke else args.rounds, args.smoke)
    results.update(measured)
    if wanted(STAGE4) and not docker:
        results["servers"][STAGE4] = {"skipped": why_not}
    if not args.smoke:
        results["costs"] = costs()
    return report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> int:
    """The summary and the goals' verdicts; results/bench.json, and for a complete run the plot and the README."""
    complete = not args.smoke and not args.only
    results["summary"] = summarise(results)
    if complete and PROFILE.exists():
        results["profile"] = json.loads(PROFILE.read_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if complete:
        plot(results, args.out.with_suffix(".png"))
    if complete and args.out.resolve() == RESULTS.resolve() and readme.update(results):
        print(f"updated the figures in {readme.README.relative_to(ROOT)}")
    for goal, g in results["summary"]["goals"].items():
        print(f"{goal:58} ratio {g['ratio']} (target {g['comparison']} {g['target']:g}): {g['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
