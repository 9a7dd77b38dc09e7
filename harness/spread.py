"""Rates as medians of rounds with their spread, and comparisons that say when there is no difference.

A rate measured once on a shared machine measures the machine. Every rate the
scorecard and the benchmark publish is the median of several interleaved rounds,
with each round kept beside it; two rates differ measurably only when their
ranges (min to max over the rounds) do not overlap.
"""

from __future__ import annotations

import statistics
from typing import Any

#: a rate whose middle rounds spread wider than this (the interquartile range over the median) is flagged as
#: unstable. The range (min to max) is what tables show and comparisons use; the bound is on the middle half,
#: because the quiet 2-core virtual machine here dips on its own: the same in-process loop runs 1,700 to
#: 3,100 calls/s from one second to the next, with nothing else running and no steal reported.
MAX_SPREAD = 0.35
SAME = "no measurable difference"


def median_round(rounds: list[dict[str, Any]], key: str = "rps") -> dict[str, Any]:
    """The round with the median ``key``, with every round's value, the range and the spread beside it."""
    ordered = sorted(rounds, key=lambda r: r[key])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    values = [r[key] for r in rounds]
    chosen.update(
        {
            f"{key}_rounds": values,
            f"{key}_min": min(values),
            f"{key}_max": max(values),
            f"{key}_spread": spread(values),
            f"{key}_iqr_spread": iqr_spread(values),
        }
    )
    return chosen


def iqr_spread(values: list[float]) -> float | None:
    """The interquartile range over the median: how far the middle half of ``values`` spreads (robust to one
    round that a dip of the machine hit); None for fewer than two values or a zero median."""
    if len(values) < 2:
        return None
    q1, median, q3 = statistics.quantiles(values, n=4)
    return round((q3 - q1) / median, 3) if median else None


def spread(values: list[float]) -> float | None:
    """(max - min) / median of ``values``; None when the median is 0 or there are none."""
    if not values:
        return None
    ordered = sorted(values)
    median = ordered[(len(ordered) - 1) // 2]
    return round((ordered[-1] - ordered[0]) / median, 3) if median else None


def bounds(entry: dict[str, Any], key: str = "rps") -> tuple[float, float]:
    """The (min, max) of a median-of-rounds entry; a single measurement is its own range."""
    return entry.get(f"{key}_min", entry[key]), entry.get(f"{key}_max", entry[key])


def differs(a: dict[str, Any], b: dict[str, Any], key: str = "rps") -> bool:
    """Whether ``a`` and ``b`` differ beyond their spread: their ranges do not overlap."""
    (a_lo, a_hi), (b_lo, b_hi) = bounds(a, key), bounds(b, key)
    return a_lo > b_hi or b_lo > a_hi


def ratio(a: dict[str, Any], b: dict[str, Any], key: str = "rps") -> str:
    """``a`` over ``b`` as "1.23x", or "no measurable difference" when the ranges overlap."""
    if not a.get(key) or not b.get(key):
        return "not measured"
    return f"{a[key] / b[key]:.2f}x" if differs(a, b, key) else SAME


def plus_minus(entry: dict[str, Any], key: str = "rps") -> str:
    """The median with half its range, e.g. "1896±41" (just the value for a single measurement)."""
    lo, hi = bounds(entry, key)
    half = (hi - lo) / 2
    return f"{entry[key]:.0f}±{half:.0f}" if hi > lo else f"{entry[key]:.0f}"
