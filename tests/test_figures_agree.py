"""One run, one truth: every committed figure comes from one stamped quiet run, and the documents agree.

Fast: this reads the committed files. `make results` writes them (harness.publish);
harness.agree reads each document's quantities and sets them side by side.
"""

from __future__ import annotations

import copy
import json

import pytest

from harness import agree
from harness.layers import ROOT


@pytest.fixture(scope="module")
def docs() -> dict:
    return agree.documents()


def test_every_committed_document_carries_the_same_run_id():
    ids = agree.run_ids()
    assert {"results/scorecard.json", "results/bench.json", "results/run.json"} <= ids.keys()
    assert len(ids) >= 3 + len(list((ROOT / "notebooks").glob("*.ipynb"))), ids
    assert None not in ids.values(), f"documents without a run id (refresh them with `make results`): {ids}"
    assert len(set(ids.values())) == 1, f"documents from different runs (`make results` publishes one): {ids}"


def test_the_run_was_calibrated_quiet_before_and_after():
    run = json.loads((ROOT / "results" / "run.json").read_text())
    for when in ("calibration", "calibration_after"):
        calibration = run[when]
        assert calibration["contended"] is False and calibration["problems"] == [], (when, calibration)
        assert calibration["floor"]["noise"] <= calibration["limits"]["floor_noise"], calibration["floor"]
    assert run["contended"] is False


def test_the_published_quantities_are_in_more_than_one_document(docs):
    """The consistency check has something to check: each named quantity appears in at least two documents."""
    wanted = ["stage3 direct rps@8", "stage4 published port over stage3 direct rps@8", "floor calls/s",
              "stage2 crash", "stage3 crash", "stage3 upgrade", "stage4 crash", "stage4 upgrade"]  # fmt: skip
    for quantity in wanted:
        where = [name for name, figures in docs.items() if quantity in figures]
        assert len(where) >= 2, f"{quantity} is in {where} only"


def test_no_two_committed_documents_disagree(docs):
    problems = agree.disagreements(docs, agree.noise())
    assert not problems, "the documents tell different stories:\n" + "\n".join(problems)


def test_a_figure_edited_by_hand_is_caught(docs):
    """Tripling stage 03's rate in one document, or changing one failed-request count, breaks the agreement."""
    noise = agree.noise()
    edited = copy.deepcopy(docs)
    entry = edited["results/scorecard.json"]["stage3 direct rps@8"]
    for key in ("rps", "rps_min", "rps_max"):
        entry[key] *= 3
    assert any(p.startswith("stage3 direct rps@8:") for p in agree.disagreements(edited, noise))
    edited = copy.deepcopy(docs)
    notebook = next(name for name, figures in edited.items() if "stage3 upgrade" in figures and "notebooks" in name)
    edited[notebook]["stage3 upgrade"]["failed"] += 4
    assert any(p.startswith("stage3 upgrade:") for p in agree.disagreements(edited, noise))


def test_ranges_that_overlap_agree_and_ranges_apart_do_not():
    a = {"rps": 100, "rps_min": 95, "rps_max": 105}
    assert agree.same(a, {"rps": 108, "rps_min": 104, "rps_max": 112}, 0.0)
    assert not agree.same(a, {"rps": 120, "rps_min": 115, "rps_max": 125}, 0.0)
    assert agree.same(a, {"rps": 120, "rps_min": 115, "rps_max": 125}, 0.05), "widened by the run's noise"
    ratio = agree.ratio_range({"rps": 90, "rps_min": 80, "rps_max": 100}, a)
    assert ratio["rps_min"] == pytest.approx(80 / 105) and ratio["rps_max"] == pytest.approx(100 / 95)
    assert not agree.same({"failed": 0, "recovered": True}, {"failed": 4, "recovered": True}, 0.5)
