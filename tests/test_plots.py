"""Every plot says what it shows: a title, labelled axes, a legend where series share a panel.

harness.plots.show refuses a figure that does not; the notebooks show every figure through it
(the notebooks are executed by `make test`, so a plot cell that loses its title fails there).
"""

from __future__ import annotations

import json
import re

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from harness import plots  # noqa: E402
from harness.paths import ROOT  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def labelled_figure():
    fig, (left, right) = plt.subplots(1, 2)
    plots.bars(left, ["02", "03"], [1.0, 2.0])
    left.set(title="Throughput", ylabel="requests per second")
    right.plot([0, 1], [1, 2], label="ready pods")
    right.plot([0, 1], [2, 2], label="desired")
    right.set(title="Pods", xlabel="time (s)", ylabel="pods")
    right.legend()
    return fig, left, right


def test_a_labelled_figure_passes():
    fig, _, _ = labelled_figure()
    assert plots.missing(fig) == []
    plt.close(fig)


@pytest.mark.parametrize(
    "mutation, expected",
    [
        (lambda left, right: left.set_title(""), "panel 1: no title"),
        (lambda left, right: left.set_ylabel(""), "Throughput: no y-axis label"),
        (lambda left, right: right.set_xlabel(""), "Pods: no x-axis label"),
        (lambda left, right: right.get_legend().remove(), "Pods: 2 labelled series and no legend"),
    ],
    ids=["title", "y label", "x label", "legend"],
)
def test_a_plot_that_loses_its_title_labels_or_legend_is_refused(mutation, expected):
    fig, left, right = labelled_figure()
    mutation(left, right)
    assert expected in plots.missing(fig)
    with pytest.raises(plots.Unlabelled, match=re.escape(expected)):
        plots.show(fig)
    plt.close(fig)


def code_cells(path):
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_show_every_figure_through_the_check(path):
    for source in code_cells(path):
        assert "plt.show()" not in source, f"{path.name}: plt.show() skips the check, use plots.show(fig)"
        if re.search(r"plt\.(subplots|figure)\(|plots\.(bad_releases|autoscale)\(", source):
            assert "plots.show(" in source, f"{path.name}: a cell draws a figure and never shows it through plots.show"
