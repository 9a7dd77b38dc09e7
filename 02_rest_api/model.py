# DELIBERATE COPY: this file is byte-identical in every stage folder
# (01_model_py, 02_rest_api, 03_wsgi, 04_container, 05_kubernetes) so that each
# stage is self-contained and the model never changes between layers.
# tests/test_stage_copies.py enforces the identity; edit 01_model_py/model.py
# and run `make sync` to copy it into the other stages.
"""The iris model: train it, save it with metadata, load it back verified, predict.

Run ``python model.py --help`` for the command line. The functions here are
also what the REST API of later stages imports, so the CLI and every server
validate input and predict with exactly the same code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.datasets import load_iris
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

MODEL_NAME = "iris"
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
MAX_CM = 1000.0  # no flower is 10 m long; beyond this a value is a unit or typing error
# Three textbook flowers, one of each species (rows 0, 96 and 100 of the iris data), which this
# pipeline names right for any C from 0.001 to 100; one trained on shifted labels or on other features
# does not. `install` refuses a model that fails them, and a server that loaded one is not ready (app.py).
CANARIES = (
    ({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}, "setosa"),
    ({"sepal_length": 5.7, "sepal_width": 2.9, "petal_length": 4.2, "petal_width": 1.3}, "versicolor"),
    ({"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}, "virginica"),
)
# The model lives next to this file unless MODEL_PATH says otherwise, so it
# never depends on the directory you start Python from.
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "artifacts" / "iris.joblib"


class InputError(ValueError):
    """Client input that cannot be scored; the message names the problem."""


class ArtifactError(RuntimeError):
    """A model artifact that is missing, corrupted (its hash differs from its sidecar) or from another scikit-learn."""


@dataclass(frozen=True)
class LoadedModel:
    """A verified pipeline together with the metadata it was saved with."""

    pipeline: Pipeline
    metadata: dict[str, Any]

    @property
    def version(self) -> str:
        """The model version label given at training time."""
        return self.metadata["model_version"]

    @property
    def classes(self) -> list[str]:
        """Class labels in the order of the probability columns."""
        return self.metadata["classes"]

    def predict(self, features: np.ndarray) -> list[dict[str, Any]]:
        """Label and per-class probability for each row of a validated (N, 4) array."""
        labels, probabilities = self.predict_arrays(features)
        return [
            {"label": label, "probabilities": dict(zip(self.classes, row))}
            for label, row in zip(labels, probabilities.tolist())
        ]

    def predict_arrays(self, features: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The same as columns: one label per row, and the (N, classes) probability array."""
        probabilities = self.pipeline.predict_proba(features)
        # One argmax for the whole batch: per-row numpy calls cost more than the model.
        return [self.classes[i] for i in probabilities.argmax(axis=1).tolist()], probabilities


def model_path() -> Path:
    """The artifact path: $MODEL_PATH if set, else artifacts/iris.joblib beside this file."""
    return Path(os.environ.get("MODEL_PATH", DEFAULT_MODEL_PATH))


def metadata_path(artifact: Path) -> Path:
    """The metadata sidecar that belongs to an artifact (same name, .json)."""
    return artifact.with_suffix(".json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(version: str = "1", c: float = 1.0, out: Path | None = None) -> dict[str, Any]:
    """Train the pipeline deterministically, save artifact + metadata, return the metadata.

    ``c`` is the inverse regularisation strength of the logistic regression:
    a different value gives a "version 2" whose probabilities visibly differ.
    """
    if not (math.isfinite(c) and c > 0):
        raise InputError(f"C must be a positive number, got {c}")
    out = out or model_path()
    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data, iris.target, test_size=0.3, random_state=0, stratify=iris.target
    )
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
    pipeline.fit(x_train, y_train)

    out.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary name and rename: a server reading the path never
    # sees half a file.
    tmp = out.with_name(out.name + ".tmp")
    joblib.dump(pipeline, tmp)
    metadata = {
        "model_name": MODEL_NAME,
        "model_version": str(version),
        "C": c,
        "features": list(FEATURES),
        "classes": [str(name) for name in iris.target_names],
        "sklearn_version": sklearn.__version__,
        "training_data_sha256": hashlib.sha256(iris.data.tobytes() + iris.target.tobytes()).hexdigest(),
        "artifact_sha256": _sha256(tmp),
        "test_accuracy": round(float(pipeline.score(x_test, y_test)), 4),
    }
    meta_tmp = metadata_path(tmp)
    meta_tmp.write_text(json.dumps(metadata, indent=2) + "\n")
    os.replace(meta_tmp, metadata_path(out))
    os.replace(tmp, out)
    return metadata


def install(source: Path, target: Path | None = None) -> dict[str, Any]:
    """Verify the artifact at ``source``, then atomically put it (with metadata) at ``target``.

    A broken or corrupted artifact, or one that names a canary flower wrongly,
    raises ArtifactError and leaves ``target`` untouched: validate first, so a
    reload never swaps in a model that cannot load or answers wrongly.
    Returns the installed metadata.
    """
    source, target = Path(source), Path(target or model_path())
    loaded = load(source)
    problem = canary_problem(loaded)
    if problem:
        raise ArtifactError(f"{source} {problem}: refusing to install it")
    metadata = loaded.metadata
    target.parent.mkdir(parents=True, exist_ok=True)
    for src, dst in ((metadata_path(source), metadata_path(target)), (source, target)):
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return metadata


def load(path: Path | None = None) -> LoadedModel:
    """Load an artifact, refusing it unless its hash and scikit-learn version match.

    Raises ArtifactError with a one-line reason; unpickling happens only after
    the hash check, and a scikit-learn version mismatch warning is an error.
    """
    path = Path(path or model_path())
    meta_file = metadata_path(path)
    if not path.is_file() or not meta_file.is_file():
        raise ArtifactError(f"no model at {path} (train one with: python model.py train)")
    try:
        metadata = json.loads(meta_file.read_text())
        expected_hash = metadata["artifact_sha256"]
        saved_with = metadata["sklearn_version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"unreadable metadata {meta_file}: {exc}") from None
    if _sha256(path) != expected_hash:
        raise ArtifactError(f"{path} does not match the SHA-256 in {meta_file.name}: refusing to load it")
    if saved_with != sklearn.__version__:
        raise ArtifactError(f"{path} was saved by scikit-learn {saved_with}, this is {sklearn.__version__}: retrain it")
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            pipeline = joblib.load(path)
        except InconsistentVersionWarning as exc:
            raise ArtifactError(f"{path}: {exc}") from None
        except Exception as exc:  # a corrupt pickle can raise almost anything
            raise ArtifactError(f"cannot unpickle {path}: {type(exc).__name__}: {exc}") from None
    return LoadedModel(pipeline=pipeline, metadata=metadata)


def canary_problem(loaded: LoadedModel) -> str | None:
    """What ``loaded`` gets wrong about the CANARIES (one line), or None when it names all three.

    Three rows: a millisecond, cheap enough to run before every install and every server start.
    """
    try:
        labels = [p["label"] for p in loaded.predict(validate_rows([row for row, _ in CANARIES]))]
    except Exception as exc:  # a pipeline fit on other features fails here, not in load()
        return f"cannot predict the canary flowers: {type(exc).__name__}: {exc}"
    for (row, expected), label in zip(CANARIES, labels):
        if label != expected:
            return f"answers {label!r} for a textbook {expected} {tuple(row.values())}"
    return None


def validate_rows(rows: Any) -> np.ndarray:
    """Turn a list of {feature: number} objects into an (N, 4) float array or raise InputError.

    Three checks, each over every row, each naming the first row that fails:
    the shape (objects with exactly the four features), the types (numbers),
    then the values (finite lengths from 0 to MAX_CM), in one numpy step, so a
    1,000-row batch costs about a millisecond.
    """
    if not isinstance(rows, list) or not rows:
        raise InputError("expected a non-empty list of rows")
    features = set(FEATURES)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError(f"row {i}: expected an object with keys {', '.join(FEATURES)}")
        if row.keys() != features:
            missing = [f for f in FEATURES if f not in row]
            if missing:
                raise InputError(f"row {i}: missing feature(s) {', '.join(missing)}")
            raise InputError(f"row {i}: unknown feature(s) {', '.join(sorted(set(row) - features))}")
    return validate_values([[row[f] for f in FEATURES] for row in rows])


def validate_values(values: list[list[Any]]) -> np.ndarray:
    """The types and values checks of validate_rows for rows already in FEATURES order (a V2 tensor)."""
    # type(), not isinstance(): True is an int to Python, but not a length in cm.
    if not {type(v) for row in values for v in row} <= {int, float}:
        i, j = next((i, j) for i, row in enumerate(values) for j, v in enumerate(row) if type(v) not in (int, float))
        raise InputError(f"row {i}: '{FEATURES[j]}' must be a number, got {json.dumps(values[i][j])}")
    try:
        matrix = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond any float: infinite, as far as a length goes
        matrix = np.array([[v if abs(v) < 2.0**1023 else math.inf for v in row] for row in values])
    if not (np.isfinite(matrix).all() and matrix.min() >= 0 and matrix.max() <= MAX_CM):
        i, j = np.argwhere(~(np.isfinite(matrix) & (matrix >= 0) & (matrix <= MAX_CM)))[0]
        value, where = values[i][j], f"row {i}: '{FEATURES[j]}'"
        if not math.isfinite(matrix[i, j]):
            raise InputError(f"{where} must be finite, got {value}")
        raise InputError(f"{where} must be a length in cm from 0 to {MAX_CM:g}, got {value}")
    return matrix


def _parse_stdin_rows(text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"stdin is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError("stdin is not valid JSON: nested too deeply") from None
    if isinstance(data, dict) and "instances" in data:
        data = data["instances"]
    return data if isinstance(data, list) else [data]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage block
        raise InputError(message)


def _cli(argv: list[str]) -> int:
    parser = _Parser(prog="model.py", description=__doc__.splitlines()[0])
    common = _Parser(add_help=False)
    common.add_argument("--model", type=Path, help="artifact path (default: $MODEL_PATH or artifacts/iris.joblib)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", parents=[common], help="train and save the model")
    p_train.add_argument("--version", default="1", help="version label stored in the metadata (default 1)")
    p_train.add_argument("--C", dest="c", type=float, default=1.0, help="inverse regularisation (default 1.0)")
    p_predict = sub.add_parser("predict", parents=[common], help="predict one row from flags, or JSON rows from stdin")
    for feature in FEATURES:
        p_predict.add_argument("--" + feature.replace("_", "-"), type=float, metavar="CM")
    sub.add_parser("verify", parents=[common], help="load the artifact with every check and print its metadata")
    p_install = sub.add_parser(
        "install", parents=[common], help="verify an artifact, then atomically copy it to --model"
    )
    p_install.add_argument("source", type=Path, help="the new artifact (.joblib, with its .json beside it)")

    args = parser.parse_args(argv)
    if args.command == "train":
        metadata = train(args.version, args.c, args.model)
        print(json.dumps(metadata))
        return 0
    if args.command == "install":
        print(json.dumps(install(args.source, args.model)))
        return 0
    model = load(args.model)
    if args.command == "verify":
        print(json.dumps(model.metadata))
        return 0
    flags = {f: getattr(args, f) for f in FEATURES}
    if any(v is not None for v in flags.values()):
        missing = [f for f, v in flags.items() if v is None]
        if missing:
            raise InputError("missing " + ", ".join("--" + f.replace("_", "-") for f in missing))
        rows = [flags]
    else:
        if sys.stdin.isatty():
            raise InputError("give all four --feature flags, or JSON rows on stdin")
        rows = _parse_stdin_rows(sys.stdin.read())
    for prediction in model.predict(validate_rows(rows)):
        print(json.dumps(prediction))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: errors become one line on stderr and exit code 2."""
    try:
        return _cli(sys.argv[1:] if argv is None else argv)
    except (InputError, ArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. --model in a folder that cannot be created
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
