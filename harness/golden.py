"""The golden predictions: committed inputs and the answers every layer must give."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

GOLDEN_PATH = Path(__file__).resolve().parent.parent / "tests" / "golden_predictions.json"
# Same model, same numpy: answers agree far below this (different BLAS builds
# may differ in the last bits, which is not a different model).
REL_TOL = 1e-9


def load_golden() -> dict[str, Any]:
    """{"model_version", "inputs": [row, ...], "expected": [{"label", "probabilities"}, ...]}."""
    return json.loads(GOLDEN_PATH.read_text())


def mismatches(predictions: list[dict[str, Any]], golden: dict[str, Any] | None = None) -> list[str]:
    """Every way ``predictions`` differ from the golden answers; empty when they agree."""
    golden = golden or load_golden()
    expected = golden["expected"]
    if len(predictions) != len(expected):
        return [f"{len(predictions)} predictions for {len(expected)} golden inputs"]
    problems = []
    for i, (got, want) in enumerate(zip(predictions, expected)):
        if got["label"] != want["label"]:
            problems.append(f"row {i}: label {got['label']!r} != {want['label']!r}")
        for cls, p in want["probabilities"].items():
            q = got["probabilities"].get(cls)
            if q is None or not math.isclose(q, p, rel_tol=REL_TOL, abs_tol=1e-12):
                problems.append(f"row {i}: P({cls}) {q} != {p}")
    return problems
