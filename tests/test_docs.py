"""The documentation states only what the code produced, and points only at what exists."""

from __future__ import annotations

import json
import re

import pytest

from harness import readme
from harness.layers import ROOT
from harness.scorecard import RESULTS

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PAGES = [*readme.readmes(), ROOT / "EXERCISES.md", ROOT / "GLOSSARY.md", ROOT / "bench" / "README.md"]
DOCS = [p for p in PAGES if p.exists()]
DOCS += sorted((ROOT / "docs").glob("*.md"))  # the facilitators' and CI's pages


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


# A measured figure: a number with a unit of time, size, rate or ratio.
UNIT = r"(?:ms|s|sec|seconds?|min|minutes?|MiB|MB|GiB|GB|KiB|kB|rps|req/s|requests/s|x|×|%)"
FIGURE = re.compile(rf"(?<![\w.\-/:])~?\d[\d,]*(?:\.\d+)?\s?{UNIT}(?![\w/])")
GENERATED = re.compile(r"<!-- figures:(\w+) -->.*?<!-- /figures:\1 -->", re.S)


def prose(markdown: str) -> str:
    """What a reader takes as a statement: no generated blocks, no code (settings and commands), no link targets."""
    text = GENERATED.sub("", markdown)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


def markdown_of(path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return path.read_text()


PROSE = [*DOCS, *(p for p in [ROOT / "FACILITATORS.md"] if p.exists()), *sorted((ROOT / "notebooks").glob("*.ipynb"))]


@pytest.mark.parametrize("path", PROSE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_figure_is_typed_by_hand(path):
    """A figure with a unit comes from code: a generated block in a README, a cell's output in a notebook.

    Settings and commands are code (in backticks) and may carry numbers; prose may not.
    """
    typed = [m.group() for line in prose(markdown_of(path)).splitlines() for m in FIGURE.finditer(line)]
    assert not typed, f"{path.relative_to(ROOT)}: figures typed by hand, render them from results: {typed}"


def test_the_figure_check_sees_figures():
    assert FIGURE.findall(prose("took ~6 min, then 2.5x faster at 1,200 req/s and 88 MiB, 95 %")) == [
        "~6 min", "2.5x", "1,200 req/s", "88 MiB", "95 %",
    ]  # fmt: skip
    assert not FIGURE.findall(prose("`--timeout=30s` in `make stage-3`, Python 3.11, HTTP 4xx, v1.37.2"))
    assert not FIGURE.findall(prose("<!-- figures:x -->\n3.2 s\n<!-- /figures:x -->"))
