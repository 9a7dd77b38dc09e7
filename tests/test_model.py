"""Stage 01: the model as a plain script (train, verify, refuse, predict, CLI errors)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from harness.golden import mismatches
from harness.layers import STAGES
from harness.releases import wrong_model

EXAMPLE_FLAGS = ["--sepal-length", "5.1", "--sepal-width", "3.5", "--petal-length", "1.4", "--petal-width", "0.2"]


def cli(*args: str, stdin: str | None = None, model=None) -> subprocess.CompletedProcess:
    """Run `python model.py ...` in stage 01 exactly as a reader does."""
    extra = ["--model", str(model)] if model else []
    return subprocess.run(
        [sys.executable, "model.py", *args, *extra],
        cwd=STAGES[1],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_training_is_deterministic_and_accurate(iris, tmp_path, model_v1, golden):
    again = iris.train("1", 1.0, tmp_path / "again.joblib")
    first = iris.load(model_v1).metadata
    assert again["training_data_sha256"] == first["training_data_sha256"]
    assert again["test_accuracy"] == first["test_accuracy"] >= 0.9
    assert again["sklearn_version"] == first["sklearn_version"]
    rows = iris.validate_rows(golden["inputs"])
    first_predictions = iris.load(model_v1).predict(rows)
    assert iris.load(tmp_path / "again.joblib").predict(rows) == first_predictions, "two trainings, same predictions"


def test_metadata_sidecar_names_everything(iris, model_v1):
    meta = json.loads(model_v1.with_suffix(".json").read_text())
    assert meta["model_name"] == "iris"
    assert meta["model_version"] == "1"
    assert set(meta) >= {"sklearn_version", "training_data_sha256", "artifact_sha256", "test_accuracy"}
    assert meta["features"] == list(iris.FEATURES)


def test_version_two_is_distinguishable(iris, model_v1, model_v2, golden):
    v1, v2 = iris.load(model_v1), iris.load(model_v2)
    rows = iris.validate_rows(golden["inputs"])
    assert v2.version == "2"
    assert mismatches(v1.predict(rows), golden) == []
    assert mismatches(v2.predict(rows), golden) != [], "version 2 must give visibly different probabilities"


def test_refuses_a_corrupted_artifact_before_unpickling_it(iris, fresh_model, monkeypatch):
    with fresh_model.open("ab") as f:
        f.write(b"tampered")
    unpickled = []
    monkeypatch.setattr(iris.joblib, "load", lambda *a, **k: unpickled.append(a))
    with pytest.raises(iris.ArtifactError, match="SHA-256"):
        iris.load(fresh_model)
    assert unpickled == [], "the hash is checked before anything is unpickled"


def test_an_artifact_rewritten_with_its_sidecar_is_loaded(iris, model_v2, fresh_model):
    """What the hash does not guard against: whoever rewrites both files is trusted (the README says so)."""
    import json
    import shutil

    shutil.copyfile(model_v2, fresh_model)  # another artifact...
    meta = json.loads(iris.metadata_path(fresh_model).read_text())
    meta["artifact_sha256"] = iris._sha256(fresh_model)  # ...and a sidecar rewritten to match it
    meta["model_version"] = "1"
    iris.metadata_path(fresh_model).write_text(json.dumps(meta))
    assert iris.load(fresh_model).version == "1", "loaded: the pair is consistent, so the hash cannot tell"


def test_refuses_another_sklearn_version(iris, fresh_model):
    meta_path = fresh_model.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["sklearn_version"] = "0.24.2"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(iris.ArtifactError, match="scikit-learn 0.24.2"):
        iris.load(fresh_model)


def test_inconsistent_version_warning_is_an_error(iris, fresh_model, monkeypatch):
    # Pretend this is another scikit-learn that agrees with the metadata: only
    # scikit-learn's own InconsistentVersionWarning (raised on unpickling) can
    # catch the mismatch, and model.load turns it into a refusal.
    import sklearn.base

    meta_path = fresh_model.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["sklearn_version"] = "9.9.9"
    meta_path.write_text(json.dumps(meta))
    monkeypatch.setattr(iris.sklearn, "__version__", "9.9.9")
    monkeypatch.setattr(sklearn.base, "__version__", "9.9.9")
    with pytest.raises(iris.ArtifactError, match="Trying to unpickle estimator"):
        iris.load(fresh_model)


def test_install_validates_before_replacing(iris, fresh_model, model_v2, tmp_path):
    broken = tmp_path / "broken" / "iris.joblib"
    iris.install(model_v2, broken)
    broken.write_bytes(b"not a model")
    with pytest.raises(iris.ArtifactError):
        iris.install(broken, fresh_model)
    assert iris.load(fresh_model).version == "1", "a refused install must leave the served model alone"
    iris.install(model_v2, fresh_model)
    assert iris.load(fresh_model).version == "2"


def test_install_refuses_a_model_that_names_a_canary_flower_wrongly(iris, fresh_model, tmp_path):
    """A model that loads (hash and version check out) but learnt shifted labels never replaces the served one."""
    wrong = wrong_model(tmp_path / "wrong")
    assert iris.load(wrong).version == "3", "it loads: only its answers are wrong"
    with pytest.raises(iris.ArtifactError) as refused:
        iris.install(wrong, fresh_model)
    assert str(refused.value) == (
        f"{wrong} answers 'versicolor' for a textbook setosa (5.1, 3.5, 1.4, 0.2): refusing to install it"
    )
    assert iris.load(fresh_model).version == "1", "a refused install must leave the served model alone"


def test_every_model_the_tutorial_trains_names_the_canaries(iris, model_v1, model_v2):
    assert [iris.canary_problem(iris.load(m)) for m in (model_v1, model_v2)] == [None, None]


def test_a_model_fit_on_other_features_fails_the_canaries_instead_of_raising(iris, model_v1):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    three = iris.LoadedModel(LogisticRegression().fit(data.data[:, :3], data.target), iris.load(model_v1).metadata)
    assert iris.canary_problem(three).startswith("cannot predict the canary flowers: ValueError: X has 4 features")


def test_cli_predicts_one_flower(model_v1, golden):
    result = cli("predict", *EXAMPLE_FLAGS, model=model_v1)
    assert result.returncode == 0, result.stderr
    assert mismatches([json.loads(result.stdout)], {"expected": golden["expected"][:1]}) == []


def test_cli_predicts_json_rows_from_stdin(model_v1, golden):
    result = cli("predict", stdin=json.dumps({"instances": golden["inputs"]}), model=model_v1)
    assert result.returncode == 0, result.stderr
    predictions = [json.loads(line) for line in result.stdout.splitlines()]
    assert mismatches(predictions, golden) == []


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--sepal-length", "5.1"], None, "missing --sepal-width"),
        (["--sepal-length", "abc"], None, "invalid float value: 'abc'"),
        ([*EXAMPLE_FLAGS[:1], "nan", *EXAMPLE_FLAGS[2:]], None, "must be finite"),
        ([*EXAMPLE_FLAGS[:1], "inf", *EXAMPLE_FLAGS[2:]], None, "must be finite"),
        ([*EXAMPLE_FLAGS[:1], "-1", *EXAMPLE_FLAGS[2:]], None, "from 0 to 1000"),
        ([], "{not json", "stdin is not valid JSON"),
        ([], '[{"sepal_length": 1, "sepal_width": 1, "petal_length": 1}]', "missing feature(s) petal_width"),
        ([], '[{"sepal_length": 1, "sepal_width": 1, "petal_length": 1, "petal_width": 1, "x": 2}]', "unknown"),
        ([], '[{"sepal_length": "1", "sepal_width": 1, "petal_length": 1, "petal_width": 1}]', "must be a number"),
        ([], '[{"sepal_length": true, "sepal_width": 1, "petal_length": 1, "petal_width": 1}]', "must be a number"),
        ([], "[]", "non-empty list"),
        ([], "[" * 50_000, "nested too deeply"),
    ],
)
def test_cli_bad_input_is_one_line(iris, model_v1, args, stdin, message, capsys, monkeypatch):
    """model.main in this process (test_cli_missing_or_tampered_model_is_one_line runs the real command):
    an exception it let through would fail the test, as a traceback would fail a reader."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
    code = iris.main(["predict", *args, "--model", str(model_v1)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", out
    assert err.count("\n") == 1 and message in err, err


def test_cli_missing_or_tampered_model_is_one_line(tmp_path, fresh_model):
    missing = cli("predict", *EXAMPLE_FLAGS, model=tmp_path / "nothing.joblib")
    assert missing.returncode == 2 and "no model at" in missing.stderr and "Traceback" not in missing.stderr
    fresh_model.write_bytes(b"garbage")
    tampered = cli("verify", model=fresh_model)
    assert tampered.returncode == 2 and "SHA-256" in tampered.stderr and tampered.stderr.count("\n") == 1


def test_cli_unwritable_model_path_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = cli("train", model=tmp_path / "a-file" / "iris.joblib")
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_metadata_that_is_not_an_object_is_refused(iris, fresh_model):
    fresh_model.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(iris.ArtifactError, match="unreadable metadata"):
        iris.load(fresh_model)


def test_cli_train_verify_install_round_trip(tmp_path):
    target = tmp_path / "served" / "iris.joblib"
    assert cli("train", "--version", "7", "--C", "0.5", model=tmp_path / "new" / "iris.joblib").returncode == 0
    installed = cli("install", str(tmp_path / "new" / "iris.joblib"), model=target)
    assert installed.returncode == 0, installed.stderr
    assert json.loads(cli("verify", model=target).stdout)["model_version"] == "7"
    assert cli("train", "--C", "-1", model=target).stderr.startswith("error: C must be a positive number")
