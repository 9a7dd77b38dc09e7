"""Is this machine quiet enough to publish a figure? Measured, not assumed.

Before a run whose figures are committed, three readings (as pyperf's
`system show` and hyperfine's outlier warning do it):

- how busy the CPUs are with other work: the non-idle share of every core over
  a short sample from /proc/stat, while this process sleeps, and the 1-minute
  load average against the core count;
- CPU steal (a virtual machine's host taking cycles back), from the same sample;
- noise: the in-process floor (harness.floor) repeated in short rounds, whose
  spread (of the middle half: the interquartile range) is what any figure of the run can be trusted to.

A busy machine is refused with one line saying what was seen and what is needed;
``FORCE=1`` runs anyway and marks the results contended, and every place that shows
them says so.

    python -m harness.quiet            # the readings, exit 1 (one line) on a busy machine
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import floor
from harness.core import procfs
from harness.core import train_model
from harness.spread import iqr_spread

#: the bounds a publishing run needs (the readings are shares of all cores, or of the floor's median)
LIMITS = {
    "busy_share": 0.25,  # other work on the CPUs: a burner on one of two cores is 0.5
    "load_per_core": 0.75,  # the 1-minute load average over the core count
    "steal_share": 0.05,
    "floor_noise": 0.25,  # the floor's rounds: interquartile range over the median
}
SAMPLE_S = 2.0
FLOOR_ROUNDS = 9
FLOOR_ROUND_S = 0.3


class Busy(RuntimeError):
    """The machine is too busy to publish figures from; the message is the one line to print."""


def cpu_times() -> list[int]:
    """The aggregate CPU line of /proc/stat: user nice system idle iowait irq softirq steal (jiffies)."""
    return [int(x) for x in procfs("stat").read_text().split("\n", 1)[0].split()[1:9]]


def cpu_shares(before: list[int], after: list[int]) -> dict[str, float]:
    """Busy (everything but idle and iowait) and steal shares of all cores between two readings."""
    delta = [b - a for a, b in zip(before, after)]
    total = sum(delta) or 1
    idle = delta[3] + delta[4]
    return {"busy_share": round((total - idle) / total, 3), "steal_share": round(delta[7] / total, 3)}


def floor_rounds(model: Path, rounds: int = FLOOR_ROUNDS, seconds: float = FLOOR_ROUND_S) -> dict[str, Any]:
    """The single-row floor ``rounds`` times: each round's calls/s, the median, the range and its spread, and the
    noise (the middle half's spread: one dip of the machine widens the range, not the noise)."""
    rates = [floor.single_row(model, seconds)["single_calls_per_s"] for _ in range(rounds)]
    median = statistics.median(rates)
    return {
        "calls_per_s": rates,
        "median": median,
        "min": min(rates),
        "max": max(rates),
        "spread": round((max(rates) - min(rates)) / median, 3) if median else None,
        "noise": iqr_spread(rates),
    }


def calibrate(sample_s: float = SAMPLE_S) -> dict[str, Any]:
    """The readings: other work on the CPUs (sampled while we sleep), load, steal, and the floor's noise."""
    cores = os.cpu_count() or 1
    before = cpu_times()
    time.sleep(sample_s)
    shares = cpu_shares(before, cpu_times())
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        noise = floor_rounds(train_model(Path(tmp)))
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": cores,
        "load_average": [round(x, 2) for x in load],
        "load_per_core": round(load[0] / cores, 2),
        **shares,
        "sample_s": sample_s,
        "floor": noise,
        "floor_noise": noise["noise"],
        "limits": LIMITS,
    }


def problems(calibration: dict[str, Any]) -> list[str]:
    """Each reading beyond its limit, as a short phrase; empty on a quiet machine."""
    found = []
    for key, limit in LIMITS.items():
        value = calibration.get(key)
        if value is not None and value > limit:
            found.append(f"{key.replace('_', ' ')} {value:g} (needs <= {limit:g})")
    return found


def check(force: bool = False, calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Calibrate (or take ``calibration``) and return it with ``contended`` and ``problems`` set.

    Raises Busy with one line when the machine is busy, unless ``force``.
    """
    calibration = dict(calibration or calibrate())
    found = problems(calibration)
    calibration.update(contended=bool(found), problems=found)
    if found and not force:
        raise Busy(
            f"the machine is busy ({'; '.join(found)}): stop what else runs and retry, "
            "or FORCE=1 to publish figures marked contended"
        )
    return calibration


def forced() -> bool:
    """Whether the operator asked to run on a busy machine (FORCE=1)."""
    value = os.environ.get("FORCE", "")
    if value not in ("", "0", "1"):
        raise Busy(f"FORCE must be 0 or 1, got {value!r}")
    return value == "1"


def warning(calibration: dict[str, Any] | None) -> str:
    """The visible warning every rendering of contended figures carries ("" for a quiet run)."""
    if not calibration or not calibration.get("contended"):
        return ""
    return "WARNING: measured on a busy machine (FORCE=1): " + "; ".join(calibration["problems"])


def main(argv: list[str] | None = None) -> int:
    """Command line: print the readings; exit 1 with one line when the machine is busy."""
    try:
        calibration = check(force=True)
    except Busy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(calibration, indent=2))
    if calibration["contended"]:
        print(f"busy: {'; '.join(calibration['problems'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
