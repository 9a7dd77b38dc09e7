"""The committed notebooks carry the outputs of a real top-to-bottom run (refresh them with `make notebooks`).

Fast: this reads the .ipynb files; `make test` executes them (nbmake).
"""

from __future__ import annotations

import json

import pytest

from harness.layers import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_notebook_is_linked_from_a_readme():
    """A reader finds each notebook from the README of the repository or of its stage."""
    readmes = " ".join(p.read_text() for p in [ROOT / "README.md", *ROOT.glob("0*/README.md")])
    unlinked = [p.name for p in NOTEBOOKS if f"notebooks/{p.name})" not in readmes]
    assert NOTEBOOKS and not unlinked, f"no README links to {unlinked}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_ran_in_order_without_errors(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{path.name}: run `make notebooks` (execution counts {counts})"
    errors = [o.get("ename") for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{path.name}: committed with errors {errors}"
    stderr = [o["text"] for c in cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not any("Warning" in "".join(text) for text in stderr), f"{path.name}: warnings in the outputs: {stderr}"
