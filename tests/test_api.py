"""The API every served stage shares, through Flask's test client (no network, fast)."""

from __future__ import annotations

import json

import pytest

import app as api  # 02_rest_api/app.py (pytest's pythonpath), identical in every later stage
import failure_app
from harness.golden import mismatches
from harness.load import EXAMPLE_LABEL
from harness.load import EXAMPLE_ROW
from harness.releases import wrong_model

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def tensor(rows, shape=None, datatype="FP64"):
    data = [[row[f] for f in ("sepal_length", "sepal_width", "petal_length", "petal_width")] for row in rows]
    return {"inputs": [{"name": "input-0", "shape": shape or [len(rows), 4], "datatype": datatype, "data": data}]}


def test_predict_golden(client, golden):
    response = client.post("/predict", json={"instances": golden["inputs"]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model_name"] == "iris" and body["model_version"] == "1"
    assert mismatches(body["predictions"], golden) == []


def test_v2_infer_golden_flat_and_nested(client, golden):
    nested = tensor(golden["inputs"])
    flat = tensor(golden["inputs"])
    flat["inputs"][0]["data"] = [v for row in flat["inputs"][0]["data"] for v in row]
    for body in (nested, flat):
        response = client.post("/v2/models/iris/infer", json={**body, "id": "req-1"})
        assert response.status_code == 200, response.get_json()
        out = response.get_json()
        assert out["model_name"] == "iris" and out["model_version"] == "1" and out["id"] == "req-1"
        outputs = {o["name"]: o for o in out["outputs"]}
        n = len(golden["inputs"])
        assert outputs["label"]["shape"] == [n] and outputs["label"]["datatype"] == "BYTES"
        assert outputs["probabilities"]["shape"] == [n, 3] and outputs["probabilities"]["datatype"] == "FP64"
        probs = outputs["probabilities"]["data"]
        predictions = [
            {
                "label": label,
                "probabilities": dict(zip(("setosa", "versicolor", "virginica"), probs[i * 3 : i * 3 + 3])),
            }
            for i, label in enumerate(outputs["label"]["data"])
        ]
        assert mismatches(predictions, golden) == []


def test_v2_infer_selects_requested_outputs(client):
    body = {**tensor([ROW]), "outputs": [{"name": "label"}]}
    out = client.post("/v2/models/iris/infer", json=body).get_json()
    assert [o["name"] for o in out["outputs"]] == ["label"]


def test_v2_health_and_metadata(client, app):
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2/models/iris/ready").status_code == 200
    meta = client.get("/v2/models/iris").get_json()
    assert meta["name"] == "iris" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert client.get("/v2").get_json() == {"name": "iris-serving-tutorial", "version": "1", "extensions": []}


def test_refuses_to_start_with_a_corrupted_model_in_one_line(fresh_model, caplog):
    fresh_model.write_bytes(b"corrupted")
    with pytest.raises(SystemExit) as stopped:
        api.create_app({"MODEL_PATH": str(fresh_model)})
    assert stopped.value.code == 4, "gunicorn's 'App failed to load': it stops instead of respawning workers"
    assert caplog.messages == [
        f"MODEL_PATH: {fresh_model} does not match the SHA-256 in {fresh_model.stem}.json: refusing to load it"
    ]


def test_a_model_that_names_a_canary_wrongly_answers_but_is_not_ready(tmp_path, caplog):
    """The server runs and says it is not ready: a layer that routes by readiness (stage 05) keeps clients
    away from it; to a layer that does not, it answers, wrongly."""
    wrong = wrong_model(tmp_path)
    client = api.create_app({"MODEL_PATH": str(wrong)}).test_client()
    problem = "answers 'versicolor' for a textbook setosa (5.1, 3.5, 1.4, 0.2)"
    for path in ("/v2/health/ready", "/v2/models/iris/ready"):
        response = client.get(path)
        assert (response.status_code, response.get_json()) == (503, {"error": f"the model {problem}"}), path
    assert client.get("/v2/health/live").status_code == 200, "alive: a restart would load the same model"
    answer = client.post("/predict", json={"instances": [EXAMPLE_ROW]}).get_json()["predictions"][0]["label"]
    assert answer == "versicolor" != EXAMPLE_LABEL
    assert f"model version 3 {problem}: not ready" in caplog.messages


def test_openapi_document_lists_every_route(client, app):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    routes = {rule.rule.replace("<name>", "{name}") for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    documented = set(doc["paths"])
    assert routes == documented, f"undocumented: {routes - documented}; no such route: {documented - routes}"


def test_openapi_shape_is_n_rows_of_4_features(client):
    """The documented tensor shape accepts exactly the shapes the server does (JSON Schema 2020-12)."""
    from jsonschema import Draft202012Validator

    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1"), "prefixItems needs OpenAPI 3.1"
    body = doc["components"]["schemas"]["InferRequest"]
    shape = Draft202012Validator(body["properties"]["inputs"]["items"]["properties"]["shape"])
    for good in ([1, 4], [50, 4]):
        assert shape.is_valid(good), good
    for bad in ([0, 0], [0, 4], [1, 3], [51, 4], [1, 4, 1], [4], [1.5, 4]):
        assert not shape.is_valid(bad), bad


def test_openapi_limits_are_the_servers_own(client, iris):
    """The data file says 1000 rows; the served document says what this server accepts (MAX_ROWS 50 here)."""
    doc = client.get("/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    assert schemas["PredictRequest"]["properties"]["instances"]["maxItems"] == 50
    assert {p["maximum"] for p in schemas["Row"]["properties"].values()} == {iris.MAX_CM}
    assert set(schemas["Row"]["required"]) == set(iris.FEATURES)
    assert client.post("/predict", json={"instances": [ROW] * 50}).status_code == 200
    assert client.post("/predict", json={"instances": [ROW] * 51}).status_code == 413


@pytest.mark.parametrize("value", ["lots", "0", "-3", "1.5", ""])
def test_a_max_rows_that_is_not_a_whole_number_is_one_line_naming_it(monkeypatch, caplog, model_v1, value):
    monkeypatch.setenv("MAX_ROWS", value)
    with pytest.raises(SystemExit) as stopped:
        api.create_app({"MODEL_PATH": str(model_v1)})
    assert stopped.value.code == 4, "gunicorn's 'App failed to load': it stops instead of respawning workers"
    assert caplog.messages == [f"MAX_ROWS must be a whole number of at least 1, got {value!r}"]


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [("/v2/models/iris/infer", {"id": "no-header", "inputs": None}, "outputs"), ("/predict", None, "predictions")],
)
def test_json_without_a_content_type_is_read_as_json(client, path, body, key):
    """What V2 clients (tritonclient.http) send: JSON with no Content-Type header at all."""
    payload = {"instances": [ROW]} if body is None else {**tensor([ROW]), "id": body["id"]}
    response = client.post(path, data=json.dumps(payload))
    assert response.request.content_type is None
    assert response.status_code == 200, response.get_json()
    assert key in response.get_json()


BAD = [
    # (method, path, kwargs, status, words the message must contain)
    ("post", "/predict", {"data": "{not json", "content_type": "application/json"}, 400, "JSON"),
    ("post", "/predict", {"data": "x=1", "content_type": "text/plain"}, 415, "Content-Type"),
    ("post", "/predict", {"json": [ROW]}, 400, "JSON object"),
    ("post", "/predict", {"json": {"rows": [ROW]}}, 400, "missing 'instances'"),
    ("post", "/predict", {"json": {"instances": []}}, 400, "non-empty list"),
    ("post", "/predict", {"json": {"instances": [{**ROW, "petal_width": None}]}}, 400, "must be a number"),
    ("post", "/predict", {"json": {"instances": [{k: v for k, v in ROW.items() if k != "sepal_width"}]}}, 400,
     "missing feature(s) sepal_width"),
    ("post", "/predict", {"json": {"instances": [{**ROW, "color": 1}]}}, 400, "unknown feature(s) color"),
    ("post", "/predict", {"json": {"instances": [{**ROW, "sepal_length": "5.1"}]}}, 400, "must be a number"),
    ("post", "/predict", {"data": '{"instances": [{"sepal_length": NaN, "sepal_width": 1, "petal_length": 1, '
                          '"petal_width": 1}]}', "content_type": "application/json"}, 400, "finite"),
    ("post", "/predict", {"json": {"instances": [{**ROW, "sepal_length": -0.1}]}}, 400, "from 0 to 1000"),
    ("post", "/predict", {"json": {"instances": [{**ROW, "sepal_length": 10**400}]}}, 400, "finite"),
    ("post", "/predict", {"json": {"instances": [ROW] * 51}}, 413, "limit is 50"),
    ("post", "/predict", {"data": "[" + " " * (1024 * 1024) + "]", "content_type": "application/json"}, 413, ""),
    ("get", "/predict", {}, 405, "not allowed"),
    ("get", "/nowhere", {}, 404, "not found"),
    ("get", "/v2/models/dogs", {}, 404, "unknown model 'dogs'"),
    ("post", "/v2/models/dogs/infer", {"json": tensor([ROW])}, 404, "unknown model"),
    ("post", "/v2/models/iris/infer", {"json": {"inputs": []}}, 400, "exactly one tensor"),
    ("post", "/v2/models/iris/infer", {"json": tensor([ROW], datatype="INT32")}, 400, "FP64"),
    ("post", "/v2/models/iris/infer", {"json": tensor([ROW], shape=[1, 3])}, 400, "shape must be [N, 4]"),
    ("post", "/v2/models/iris/infer", {"json": tensor([ROW], shape=[2, 4])}, 400, "needs 8 values, got 4"),
    ("post", "/v2/models/iris/infer", {"json": tensor([ROW] * 51)}, 413, "limit is 50"),
    ("post", "/v2/models/iris/infer", {"json": {**tensor([ROW]), "outputs": [{"name": "x"}]}}, 400, "unknown output"),
    ("post", "/v2/models/iris/infer", {"json": {**tensor([ROW]), "outputs": [{"name": []}]}}, 400, "'name' string"),
    # V2's binary tensor extension (tritonclient's default, binary_data=True): JSON, then raw bytes.
    ("post", "/v2/models/iris/infer", {"data": b'{"inputs": []}' + bytes(32),
     "headers": {"Inference-Header-Content-Length": "14"}}, 415, "binary tensor data"),
    ("post", "/predict", {"data": "[" * 50_000, "content_type": "application/json"}, 400, "nested too deeply"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "words"), BAD, ids=[f"{b[3]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_input_gets_a_clear_json_error(client, method, path, kwargs, status, words):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error"} and words.lower() in body["error"].lower(), body


def test_405_names_the_allowed_methods(client):
    response = client.get("/predict")
    assert "POST" in response.headers["Allow"]


def test_unexpected_exception_is_a_500_without_traceback_and_the_next_request_works(model_v1):
    client = failure_app.create_app({"MODEL_PATH": str(model_v1)}).test_client()
    response = client.get("/_test/fail")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal server error"}
    assert "Traceback" not in response.get_data(as_text=True)
    assert client.post("/predict", json={"instances": [ROW]}).status_code == 200


def test_the_served_app_has_no_test_only_routes(app):
    assert not [rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/_test")]
