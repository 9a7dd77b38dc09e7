"""Each stage README opens with the post it grew from and ends with the figures that test it (harness.post)."""

from __future__ import annotations

import json

import pytest

from harness import readme
from harness.paths import STAGES
from harness.scorecard import RESULTS

POST = "https://github.com/dantegates/why-kubernetes/blob/master/"


@pytest.mark.parametrize("number", list(STAGES))
def test_a_stage_readme_opens_with_the_post_and_ends_with_its_figures(number):
    """The post's words open the README; its figures close it, just before the pointer to the next stage."""
    text = (STAGES[number] / "README.md").read_text()
    head = text.split("\n## ", 1)[0]
    assert "\n> " in head and "> — Dante Gates, " in head and f"]({POST}" in head and ".png)" in head
    body = text.rsplit("\n## Next\n", 1)[0]
    assert body.rstrip().endswith(f"<!-- /figures:post{number} -->")


def test_a_stage_missing_from_the_results_is_said_not_measured():
    results = json.loads(RESULTS.read_text())
    results["stages"] = [s for s in results["stages"] if s["stage"] != 4]
    results["not_measured"] = {"4": "no Docker engine"}
    assert readme.render("post4", results) == "- Not measured in the last scorecard run: no Docker engine.\n"
    assert "| 04 (not measured) |" in readme.render("post5", results)  # the previous stage's column


def test_a_block_the_run_lacks_says_so_even_outside_a_publishing_run():
    """`make scorecard` (no `make results`) writes "run": None; a block it lacks must still render, and say so."""
    results = json.loads(RESULTS.read_text())
    results["run"] = None
    results.pop("capacity", None)
    assert "outside a publishing run" in readme.render("capacity", results)
    assert "bad releases" in readme.render("stage3", {**results, "stages": [
        {k: v for k, v in s.items() if k != "bad_release"} for s in results["stages"]]})  # fmt: skip
