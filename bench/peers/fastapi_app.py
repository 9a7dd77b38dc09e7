"""The same iris API on FastAPI + uvicorn: what a reader would write instead of Flask + gunicorn.

A peer for the benchmark (bench/run.py), not a stage: it serves the very same
artifact with the very same model code (01_model_py/model.py, on PYTHONPATH)
and answers the same requests with the same status codes and JSON errors:

  POST /predict                {"instances": [{feature: cm, ...}, ...]}, 1 to 1,000 rows
  GET  /v2/health/ready        Open Inference Protocol V2 readiness
  POST /v2/models/iris/infer   FP64 tensor of shape [N, 4]

Run it with:  PYTHONPATH=01_model_py MODEL_PATH=... uvicorn --workers 2 bench.peers.fastapi_app:app
What FastAPI gives beyond speed: the request is typed (pydantic checks it), and
/docs serves an interactive documentation UI generated from those types.
"""

from __future__ import annotations

import os
from typing import Annotated
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi import HTTPException
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

import model as iris

MAX_ROWS = int(os.environ.get("MAX_ROWS", "1000"))
# A length in cm, as model.validate_rows checks it: a number (not a bool), finite, 0 to 1,000.
Cm = Annotated[float, Field(strict=True, ge=0, le=iris.MAX_CM, allow_inf_nan=False)]


class Row(BaseModel):
    """One flower: exactly the four features, no others."""

    model_config = ConfigDict(extra="forbid")
    sepal_length: Cm
    sepal_width: Cm
    petal_length: Cm
    petal_width: Cm


class PredictRequest(BaseModel):
    instances: Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS)]


class Tensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Cm] | list[list[Cm]]


class InferRequest(BaseModel):
    id: str | None = None
    inputs: Annotated[list[Tensor], Field(min_length=1, max_length=1)]


app = FastAPI(title="Iris model API (FastAPI peer)")
loaded = iris.load(os.environ.get("MODEL_PATH") or None)


@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI answers 422 with a list of problems; our API answers 400 {"error": "..."}."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"][1:])
    return JSONResponse({"error": f"{where}: {first['msg']}"}, status_code=400)


@app.exception_handler(HTTPException)
async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Every HTTP error as {"error": "..."}, as the Flask app does."""
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


@app.post("/predict")
async def predict(body: PredictRequest) -> dict[str, Any]:
    """Label and class probabilities for each row."""
    features = np.array([[r.sepal_length, r.sepal_width, r.petal_length, r.petal_width] for r in body.instances])
    return {"model_name": iris.MODEL_NAME, "model_version": loaded.version, "predictions": loaded.predict(features)}


@app.get("/v2/health/ready")
async def ready() -> dict[str, bool]:
    """V2 readiness: the model was loaded (and verified) at import."""
    return {"ready": True}


@app.post("/v2/models/{name}/infer")
async def infer(name: str, body: InferRequest) -> dict[str, Any]:
    """V2 inference: one FP64 input of shape [N, 4] -> label and probabilities tensors."""
    if name != iris.MODEL_NAME:
        raise HTTPException(404, f"unknown model '{name}'; this server has '{iris.MODEL_NAME}'")
    tensor = body.inputs[0]
    width = len(iris.FEATURES)
    if tensor.datatype != "FP64":
        raise HTTPException(400, f"input datatype must be FP64, got {tensor.datatype!r}")
    if len(tensor.shape) != 2 or tensor.shape[1] != width or not 1 <= tensor.shape[0] <= MAX_ROWS:
        raise HTTPException(400, f"input shape must be [N, {width}] with N from 1 to {MAX_ROWS}, got {tensor.shape}")
    features = np.asarray(tensor.data, dtype=np.float64)
    if features.size != tensor.shape[0] * width:
        raise HTTPException(400, f"input shape {tensor.shape} needs {tensor.shape[0] * width} values")
    predictions = loaded.predict(features.reshape(tensor.shape))
    outputs = [
        {"name": "label", "datatype": "BYTES", "shape": [len(predictions)], "data": [p["label"] for p in predictions]},
        {
            "name": "probabilities",
            "datatype": "FP64",
            "shape": [len(predictions), len(loaded.classes)],
            "data": [p["probabilities"][c] for p in predictions for c in loaded.classes],
        },
    ]
    response = {"model_name": iris.MODEL_NAME, "model_version": loaded.version, "outputs": outputs}
    if body.id is not None:
        response["id"] = body.id
    return response
