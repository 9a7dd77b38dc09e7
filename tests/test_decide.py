"""The decision a reader can run (harness.decide, notebooks/07_should_you.ipynb), on the committed figures.

Fast: it reads results/scorecard.json and the committed notebook.
"""

import json
import subprocess
import sys

from harness import decide
from harness.layers import ROOT


def test_the_example_situations_get_at_least_three_different_answers():
    results = decide.load()
    answers = [decide.decide(s, results)["answer"] for s in decide.EXAMPLES]
    assert len(set(answers)) >= 3, answers


def test_the_answer_is_the_cheapest_layer_that_meets_every_constraint():
    results = decide.load()
    for situation in decide.EXAMPLES:
        decision = decide.decide(situation, results)
        verdicts = list(decision["checks"].values())
        meets = [all(c["met"] for c in found) for found in verdicts]
        expected = list(decision["checks"])[meets.index(True)] if True in meets else None
        assert decision["answer"] == expected, (situation.name, decision)


def test_each_check_cites_a_committed_figure():
    """Every verdict on a measured constraint quotes the figure it was decided on, from the results file."""
    results = decide.load()
    lenient = decide.Situation("all", False, 0.5, True, 100, True, True)
    for number in decide.CANDIDATES:
        stage = decide.stage_of(results, number)
        cited = " ".join(c["because"] for c in decide.checks(lenient, stage))
        assert f"{decide.best_upgrade(stage)['requests']} requests" in cited, cited
        assert f"{decide.capacity(stage)['rps']:.0f}" in cited, cited


def test_a_stricter_situation_never_gets_a_cheaper_answer():
    results = decide.load()
    order = [decide.stage_of(results, n)["layer"] for n in decide.CANDIDATES] + [None]
    easy = decide.Situation("easy", True, 60, False, 10, False, True)
    hard = decide.Situation("hard", False, 0.5, True, 10, True, True)
    assert order.index(decide.decide(easy, results)["answer"]) <= order.index(decide.decide(hard, results)["answer"])


def test_the_readme_table_and_notebook_07_agree():
    """The top README's closing table is the notebook's, both from the committed results."""
    table = decide.markdown(decide.EXAMPLES, decide.load()).strip()
    assert table in (ROOT / "README.md").read_text()
    notebook = json.loads((ROOT / "notebooks" / "07_should_you.ipynb").read_text())
    outputs = [o for cell in notebook["cells"] for o in cell.get("outputs", [])]
    shown = ["".join(o.get("data", {}).get("text/markdown", "")).strip() for o in outputs]
    assert table in shown, "refresh the notebook: make notebooks"


def test_the_command_line_answers_a_situation_and_refuses_a_bad_answer():
    run = [sys.executable, "-m", "harness.decide"]
    ok = subprocess.run([*run, "--failed-ok", "yes", "--max-stall", "60", "--recover-alone", "no"],
                        capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert ok.returncode == 0 and "run: " in ok.stdout, ok.stderr
    bad = subprocess.run([*run, "--failed-ok", "maybe"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "yes or no, got 'maybe'" in bad.stderr and "Traceback" not in bad.stderr
