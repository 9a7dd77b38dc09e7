"""Reading a results file (results/scorecard.json): the entries every renderer looks up.

Below readme, post, decide and agree, which all read results, so none of them imports another to do it.
"""

from __future__ import annotations

from typing import Any


def stage_of(results: dict[str, Any], number: int) -> dict[str, Any] | None:
    """Stage ``number``'s entry in a results file (None: not measured)."""
    return next((s for s in results["stages"] if s["stage"] == number), None)


def brought_along_mib(stage: dict[str, Any]) -> float | None:
    """Memory of what the layer brings beside the model's processes: the engine, the cluster, a sidecar."""
    cost = stage["cost"]
    parts = [cost.get("engine", {}).get("pss_mib"), cost.get("cluster", {}).get("pss_mib"), cost.get("sidecar_pss_mib")]
    parts = [p for p in parts if p is not None]
    return round(sum(parts), 1) if parts else None
