"""Reading a results file (results/scorecard.json): the entries every renderer looks up.

Below readme, decide and agree, which all read results, so none of them imports another to do it.
"""

from __future__ import annotations

from typing import Any


def stage_of(results: dict[str, Any], number: int) -> dict[str, Any] | None:
    """Stage ``number``'s entry in a results file (None: not measured)."""
    return next((s for s in results["stages"] if s["stage"] == number), None)
