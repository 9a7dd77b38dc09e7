"""The documentation states only what the code produced, and points only at what exists."""

from __future__ import annotations

import json
import re

import pytest

from harness import readme
from harness.layers import ROOT
from harness.scorecard import RESULTS

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
DOCS = [p for p in [*readme.readmes(), ROOT / "EXERCISES.md"] if p.exists()]


@pytest.mark.parametrize("path", readme.readmes(), ids=lambda p: str(p.relative_to(ROOT)))
def test_figures_in_readmes_are_the_measured_ones(path):
    """Every figure block equals what `make scorecard` renders from results/scorecard.json."""
    if not path.exists():
        pytest.skip(f"{path} does not exist yet")
    results = json.loads(RESULTS.read_text())
    assert path.read_text() == readme.rendered(path, results), f"{path}: run `make scorecard` (or fix the block)"


def test_every_stage_readme_has_a_figures_block():
    for path in readme.readmes()[1:]:
        if path.exists():
            name = path.parent.name[:2].lstrip("0")
            assert f"<!-- figures:stage{name} -->" in path.read_text(), path


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(path):
    for target in LINK.findall(path.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


def test_readme_quickstart_is_tour_then_test():
    text = (ROOT / "README.md").read_text()
    quickstart = text.split("## Quickstart", 1)[1].split("##", 1)[0]
    commands = [line.split("#")[0].strip() for line in quickstart.splitlines() if line.startswith("make ")]
    assert commands == ["make tour", "make test"]
