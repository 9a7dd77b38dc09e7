"""Regenerate tests/golden_predictions.json (`make golden`) from a fresh version-1 model.

Run it only when the model is meant to change; the diff of the JSON is then
part of the review.
"""

import json
import tempfile
from pathlib import Path

from harness.golden import GOLDEN_PATH
from harness.layers import model_module
from harness.layers import train_model

INPUTS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},  # a typical setosa
    {"sepal_length": 6.4, "sepal_width": 3.2, "petal_length": 4.5, "petal_width": 1.5},  # a typical versicolor
    {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5},  # a typical virginica
    {"sepal_length": 6.0, "sepal_width": 2.7, "petal_length": 5.1, "petal_width": 1.6},  # on the border
    {"sepal_length": 0, "sepal_width": 0, "petal_length": 0, "petal_width": 0},  # zeros are allowed
    {"sepal_length": 7.9, "sepal_width": 4.4, "petal_length": 6.9, "petal_width": 2.5},  # the largest in the data
]


def main() -> None:
    iris = model_module()
    with tempfile.TemporaryDirectory() as tmp:
        loaded = iris.load(train_model(Path(tmp), version="1"))
    expected = loaded.predict(iris.validate_rows(INPUTS))
    golden = {"model_version": loaded.version, "inputs": INPUTS, "expected": expected}
    GOLDEN_PATH.write_text(json.dumps(golden, indent=2) + "\n")
    print(f"wrote {len(INPUTS)} golden predictions to {GOLDEN_PATH}")


if __name__ == "__main__":
    main()
