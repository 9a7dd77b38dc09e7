"""Stage 01's checks: the script, run as its README runs it (``python model.py`` in the folder)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from exercises.common import Fail
from exercises.common import answers
from exercises.common import golden_rows
from exercises.common import last_line
from exercises.common import model_cli
from exercises.common import train
from harness.golden import mismatches
from harness.load import EXAMPLE_ROW


def predictions(stdout: str) -> list[dict]:
    """The JSON lines ``model.py predict`` printed, one per row."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def check_01_1(folder: Path) -> None:
    """Question: which class loses the most probability from version 1 to version 2 (C=0.05)?"""
    given = answers(folder, "01.1", ("loses", "label_changes"))
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in EXAMPLE_ROW.items()]
    answered = {}
    with tempfile.TemporaryDirectory(prefix="ex-01.1-") as tmp:
        for version, c in (("1", 1.0), ("2", 0.05)):
            model = train(folder, Path(tmp) / f"v{version}" / "iris.joblib", version, c)
            result = model_cli(folder, "predict", "--model", str(model), *flags)
            if result.returncode != 0:
                raise Fail(f"`predict` failing: {last_line(result.stderr)}", "a prediction for the example flower")
            answered[version] = predictions(result.stdout)[0]
    p1, p2 = answered["1"]["probabilities"], answered["2"]["probabilities"]
    loses = max(p1, key=lambda cls: p1[cls] - p2[cls])
    changes = answered["1"]["label"] != answered["2"]["label"]
    if str(given["loses"]).strip().lower() != loses:
        raise Fail(f"loses = {given['loses']!r}", "the class whose probability drops most (run both models)")
    if given["label_changes"] is not changes:
        raise Fail(f"label_changes = {given['label_changes']!r}", f"{str(changes).lower()} (compare the labels)")


def check_01_2(folder: Path) -> None:
    """A petal longer than its sepal is refused by the CLI with a message naming both."""
    bad = {"sepal_length": 5.0, "sepal_width": 3.0, "petal_length": 6.0, "petal_width": 2.0}
    with tempfile.TemporaryDirectory(prefix="ex-01.2-") as tmp:
        model = train(folder, Path(tmp) / "iris.joblib")
        result = model_cli(folder, "predict", "--model", str(model), stdin=json.dumps([bad]))
        if result.returncode == 0:
            raise Fail(
                "the CLI predicted a flower whose petal (6.0 cm) is longer than its sepal (5.0 cm)",
                "exit code 2 and an error naming petal_length and sepal_length",
            )
        message = last_line(result.stderr)
        if result.returncode != 2 or "petal_length" not in message or "sepal_length" not in message:
            raise Fail(
                f"exit {result.returncode}: {message}", "exit code 2 and one line naming petal_length and sepal_length"
            )
        if "Traceback" in result.stderr:
            raise Fail("a traceback", "one line starting with 'error:'")
        good = model_cli(folder, "predict", "--model", str(model), stdin=json.dumps(golden_rows()))
        if good.returncode != 0:
            raise Fail(f"the golden inputs refused: {last_line(good.stderr)}", "real flowers still accepted")
        problems = mismatches(predictions(good.stdout))
        if problems:
            raise Fail(problems[0], "the golden predictions unchanged")


def check_01_3(folder: Path) -> None:
    """CSV on stdin (a header of the four feature names) gives the same predictions as JSON."""
    golden = golden_rows()
    names = list(golden[0])
    csv_text = ",".join(names) + "\n" + "".join(",".join(str(r[n]) for n in names) + "\n" for r in golden)
    with tempfile.TemporaryDirectory(prefix="ex-01.3-") as tmp:
        model = train(folder, Path(tmp) / "iris.joblib")
        result = model_cli(folder, "predict", "--model", str(model), stdin=csv_text)
        if result.returncode != 0:
            raise Fail(f"exit {result.returncode}: {last_line(result.stderr)}", f"{len(golden)} predictions from CSV")
        problems = mismatches(predictions(result.stdout))
        if problems:
            raise Fail(problems[0], "the golden predictions")
        not_a_number = csv_text.replace(str(golden[0][names[0]]), "abc", 1)
        bad = model_cli(folder, "predict", "--model", str(model), stdin=not_a_number)
        if bad.returncode != 2 or "Traceback" in bad.stderr or "error:" not in bad.stderr:
            raise Fail(
                f"exit {bad.returncode} for a CSV cell 'abc': {last_line(bad.stderr)}", "exit 2, one 'error:' line"
            )
