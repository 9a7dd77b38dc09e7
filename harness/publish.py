"""One run, one truth: every committed figure comes from one stamped run on a quiet machine.

`make results` runs this: it calibrates the machine (harness.quiet) and refuses
a busy one, gives the run an id, then produces every committed figure in one
sitting, each part stamped with the same id and calibration:

1. the scorecard (results/scorecard.json and the READMEs' figure blocks);
2. the benchmark against the peers (results/profile-03.json, results/bench.json, bench.png);
3. the notebooks' committed outputs (they read the figures of this run; see ``figures``).

Then it calibrates again, so the record shows the machine stayed quiet, and
writes results/run.json. The publishing targets run alone (`make scorecard`,
`make bench`, `make notebooks`) check the machine the same way and stamp a run of
their own, which tests/test_figures_agree.py then reports as a second run id.

    python -m harness.publish          # what `make results` runs (FORCE=1: on a busy machine, marked)
    python -m harness.publish begin    # calibrate, refuse or record a run; print the run file's path
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import agree
from harness import quiet
from harness.core import QUICK
from harness.paths import ROOT
from harness.readme import rate

#: the environment variable through which the parts of a run find its record
RUN_ENV = "RESULTS_RUN"
RUN_FILE = ROOT / "build" / "run.json"
RECORD = ROOT / "results" / "run.json"
RESULTS = ROOT / "results"


def commit() -> str:
    """The checkout's commit, with "+changes" when files differ from it ("unknown" outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def begin(force: bool = False, calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Calibrate (refusing a busy machine unless ``force``), give the run an id, write its record."""
    calibration = quiet.check(force=force, calibration=calibration)
    run = {
        "run_id": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + commit(),
        "contended": calibration["contended"],
        "calibration": calibration,
    }
    RUN_FILE.parent.mkdir(parents=True, exist_ok=True)
    RUN_FILE.write_text(json.dumps(run, indent=2) + "\n")
    return run


def current() -> dict[str, Any]:
    """The run this process is part of (``RESULTS_RUN``), or a new one of its own (FORCE=1 on a busy machine).

    Raises quiet.Busy with one line on a busy machine.
    """
    path = os.environ.get(RUN_ENV)
    if path:
        return json.loads(Path(path).read_text())
    run = begin(force=quiet.forced())
    os.environ[RUN_ENV] = str(RUN_FILE)  # what this process starts is part of the same run
    return run


def stamp(run: dict[str, Any]) -> dict[str, Any]:
    """What a results file carries of its run: the id, whether it was contended, the calibration."""
    return {"run_id": run["run_id"], "contended": run["contended"], "calibration": run["calibration"]}


def banner(run: dict[str, Any] | None) -> str:
    """One line naming the run and its calibration, with the contention warning when there is one."""
    if not run:
        return "live: measured now on this machine, not the published run (make results publishes one)"
    c = run["calibration"]
    floor = c["floor"]
    text = (
        f"run {run['run_id']}: calibrated on {c['cores']} cores, other work {c['busy_share']:.0%} of the CPUs, "
        f"load {c['load_average'][0]}, steal {c['steal_share']:.0%}, in-process floor {floor['median']:,.0f} calls/s "
        f"over {len(floor['calls_per_s'])} rounds (noise {floor['noise']:.1%}, range {floor['spread']:.1%})"
    )
    warning = quiet.warning(c)
    return f"{warning}\n{text}" if warning else text


def published() -> dict[str, Any] | None:
    """In a notebook: the run being published (``make results`` / ``make notebooks``), else None (live)."""
    path = os.environ.get(RUN_ENV)
    return json.loads(Path(path).read_text()) if path else None


def results(name: str) -> dict[str, Any]:
    """A committed results file (``scorecard``, ``bench``, ...) as a dict."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def scorecard_or(stage: int, *keys: str | int | Callable[[Any], Any], live: Callable[[], Any]) -> Any:
    """In a notebook: the scorecard's figure ``keys`` of ``stage`` while publishing, else ``live()`` measured now.

    Each key indexes the stage's results, or is a function that picks from them (``readme.rate``).

    A crash, an upgrade or a rate the scorecard measures is then the same event in every committed
    document (one run, one truth); a learner running the notebook measures it on their own machine.
    Under `make test` (QUICK) the committed figure is read too: the tests of each layer and the
    scorecard's smoke run measure these scenarios already, so the notebook is not made to wait for
    them a second time (the cells' other code, the plots and the prose still run).
    """
    if published() is None and not QUICK:
        return live()
    value: Any = next(s for s in results("scorecard")["stages"] if s["stage"] == stage)
    for key in keys:
        value = key(value) if callable(key) else value[key]
    return value


def rate_or(stage: int, connections: int, live: Callable[[], Any], path: str | None = None) -> dict[str, Any]:
    """``scorecard_or`` for a rate: ``stage``'s entry at ``connections`` clients on ``path`` (its own by default)."""
    return scorecard_or(stage, lambda s: rate(s, connections, path), live=live)


def show(markdown: str, **figures: dict[str, Any] | float) -> None:
    """In a notebook: display ``markdown``, with the quantities it states in the output's metadata
    (``{"figures": ...}``), where tests/test_figures_agree.py sets them against every other committed document.

    Name a quantity as the other documents do: ``stage3 direct rps@8``, ``stage4 over stage3 direct rps@8``,
    ``floor calls/s``; a rate is its entry (median with ``rps_min``/``rps_max``), a ratio a number.
    """
    from IPython.display import Markdown
    from IPython.display import display

    display(Markdown(markdown), metadata={"figures": {name: comparable(f) for name, f in figures.items()}})


def comparable(figure: Any) -> Any:
    """What harness.agree compares of a figure: a rate's median and range, an event's outcome."""
    if isinstance(figure, dict):
        keys = ("rps", "rps_min", "rps_max") if "rps" in figure else agree.EVENT_KEYS
        return {k: figure[k] for k in keys if k in figure}
    return figure


def step(title: str, command: list[str]) -> float:
    """Run one part of the publishing run; its seconds. Stops the run when the part fails."""
    print(f"\n==> {title}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True)
    return round(time.monotonic() - started, 1)


def main(argv: list[str] | None = None) -> int:
    """`make results` (no argument), or ``begin``: calibrate and record a run for a target run alone."""
    args = sys.argv[1:] if argv is None else argv
    try:
        run = begin(force=quiet.forced())
    except quiet.Busy as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    if args == ["begin"]:
        print(RUN_FILE)
        return 0
    os.environ[RUN_ENV] = str(RUN_FILE)
    print(banner(run), flush=True)
    started = time.monotonic()
    seconds = {
        "scorecard": step("scorecard", [sys.executable, "-m", "harness.scorecard"]),
        "bench": step("bench", ["make", "-s", "bench"]),
        "notebooks": step("notebooks", ["make", "-s", "notebooks"]),
    }
    after = quiet.check(force=True)
    record = {
        **stamp(run),
        "calibration_after": after,
        "contended": run["contended"] or after["contended"],
        "seconds": {**seconds, "total": round(time.monotonic() - started, 1)},
    }
    RECORD.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {RECORD.relative_to(ROOT)}: run {run['run_id']} in {record['seconds']['total']:.0f} s")
    if after["contended"]:
        print(f"warning: the machine was busy by the end: {'; '.join(after['problems'])}", file=sys.stderr)
    print("\n==> do the documents agree? (python -m harness.agree)", flush=True)
    return agree.main()


if __name__ == "__main__":
    sys.exit(main())
