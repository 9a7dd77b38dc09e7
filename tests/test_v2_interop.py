"""Open Inference Protocol V2 as a real client speaks it: NVIDIA Triton's `tritonclient.http`.

Nobody here wrote this client, so it checks the protocol, not our reading of it.
Every served stage, through the ``served`` fixture (conftest.py), like
tests/test_contract.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from urllib.parse import urlsplit

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from harness.golden import mismatches
from harness.layers import STAGES

CLASSES = ("setosa", "versicolor", "virginica")


@pytest.fixture(scope="module")
def client(served):
    """NVIDIA Triton's HTTP client for that stage (it takes host:port, no scheme)."""
    client = httpclient.InferenceServerClient(url=urlsplit(served.base_url).netloc)
    yield client
    client.close()


def features(golden) -> np.ndarray:
    """The golden rows as the [N, 4] FP64 array a V2 client sends."""
    return np.array([[row[f] for f in ("sepal_length", "sepal_width", "petal_length", "petal_width")]
                     for row in golden["inputs"]], dtype=np.float64)  # fmt: skip


def json_input(array: np.ndarray) -> httpclient.InferInput:
    """The input tensor as JSON 'data' (binary_data=False): this server has no binary extension."""
    tensor = httpclient.InferInput("input-0", list(array.shape), "FP64")
    tensor.set_data_from_numpy(array, binary_data=False)
    return tensor


def test_server_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()


def test_model_ready(client):
    assert client.is_model_ready("iris")


def test_model_metadata(client):
    meta = client.get_model_metadata("iris")
    assert meta["name"] == "iris" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert client.get_server_metadata()["extensions"] == [], "no extension claimed, binary_tensor_data included"


def test_infer_without_requested_outputs_gives_the_golden_answers(client, golden):
    """No outputs named: every output comes back (the client asks for binary; JSON is what it gets, and reads)."""
    result = client.infer("iris", [json_input(features(golden))], request_id="golden-1")
    response = result.get_response()
    assert response["id"] == "golden-1", "the request id is echoed"
    assert response["model_name"] == "iris" and response["model_version"] == golden["model_version"]
    labels, probabilities = result.as_numpy("label"), result.as_numpy("probabilities")
    assert probabilities.shape == (len(golden["inputs"]), len(CLASSES))
    predictions = [
        {"label": str(label), "probabilities": dict(zip(CLASSES, row.tolist()))}
        for label, row in zip(labels, probabilities)
    ]
    assert mismatches(predictions, golden) == []


@pytest.mark.parametrize("binary_data", [False, True], ids=["json-output", "binary-output-asked"])
def test_infer_with_requested_outputs_returns_only_those(client, golden, binary_data):
    """An output asked for in binary comes back as JSON (the extension is optional), which the client reads."""
    wanted = [httpclient.InferRequestedOutput("label", binary_data=binary_data)]
    result = client.infer("iris", [json_input(features(golden))], outputs=wanted, request_id="labels-only")
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert result.get_response()["id"] == "labels-only"
    assert result.as_numpy("probabilities") is None
    assert [str(label) for label in result.as_numpy("label")] == [e["label"] for e in golden["expected"]]


@pytest.mark.parametrize(
    ("call", "status", "message"),
    [
        (lambda c: c.infer("iris", [json_input(np.ones((1, 3)))]), "400", "input shape must be [N, 4], got [1, 3]"),
        (lambda c: c.get_model_metadata("dogs"), "404", "unknown model 'dogs'; this server has 'iris'"),
    ],
    ids=["wrong-shape", "unknown-model"],
)
def test_a_bad_request_is_the_clients_exception_with_our_message(client, call, status, message):
    with pytest.raises(InferenceServerException) as caught:
        call(client)
    assert caught.value.status() == status
    assert caught.value.message() == message


def test_binary_tensor_input_is_refused_with_a_clear_error(client, golden):
    """tritonclient's default (binary_data=True) sends raw bytes after the JSON: not supported here, and said so."""
    tensor = httpclient.InferInput("input-0", [len(golden["inputs"]), 4], "FP64")
    tensor.set_data_from_numpy(features(golden))  # binary_data=True by default
    with pytest.raises(InferenceServerException) as caught:
        client.infer("iris", [tensor])
    assert caught.value.status() == "415"
    assert "binary tensor data (Inference-Header-Content-Length) is not supported" in caught.value.message()
    assert "binary_data=False" in caught.value.message()


def readme_calls() -> tuple[list[tuple[str, str]], list[str]]:
    """The stage-02 README's three V2 calls as (language, code), and the lines it says they print."""
    text = (STAGES[2] / "README.md").read_text()
    section = text.split("### Three clients, one protocol", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.DOTALL)
    calls = [(language, code) for language, code in blocks if language]
    printed = next(code for language, code in blocks if not language).splitlines()
    return calls, printed


def test_the_readme_calls_print_what_the_readme_shows(served):
    """curl, requests and tritonclient exactly as 02_rest_api/README.md shows them ("..." elides digits)."""
    calls, printed = readme_calls()
    assert [language for language, _ in calls] == ["bash", "python", "python"] and len(printed) == len(calls)
    for (language, code), shown in zip(calls, printed):
        code = code.replace("127.0.0.1:8000", urlsplit(served.base_url).netloc)
        command = ["bash", "-c", code] if language == "bash" else [sys.executable, "-c", code]
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        assert re.fullmatch(".*".join(map(re.escape, shown.split("..."))), out), f"README: {shown}\n{language}: {out}"
