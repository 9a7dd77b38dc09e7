"""Fixtures shared by every test: trained artifacts, the golden file, the stage folders.

Servers are started through the harness (harness/layers.py), the same code the
notebooks and `make scorecard` use.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import app as stage_app  # 02_rest_api/app.py (pytest's pythonpath), identical in every later stage
from harness import logreader
from harness.cluster import Cluster
from harness.container import Container
from harness.container import build_image
from harness.container import docker
from harness.golden import load_golden
from harness.layers import LAYERS
from harness.layers import Layer
from harness.layers import model_module
from harness.layers import train_model
from harness.local import ServerProcess
from harness.proxy import ProxiedContainer

# In CI a missing Docker engine is a failure, never a silent skip.
REQUIRE_DOCKER = os.environ.get("CI") == "true" or os.environ.get("REQUIRE_DOCKER") == "1"
# In CI the cluster tests run on the local cluster `.ci/run` starts: a missing cluster fails them.
# REQUIRE_CLUSTER=0 lets a CI job without a cluster skip them (the hosted CI runs them in its kind job).
# The failure tests serve the stage's app wrapped with two test-only routes (support/failure_app.py).
SUPPORT = Path(__file__).resolve().parent / "support"
REQUIRE_CLUSTER = os.environ.get("REQUIRE_CLUSTER", "1" if os.environ.get("CI") == "true" else "0") == "1"
REQUIRED = {"docker": REQUIRE_DOCKER, "cluster": REQUIRE_CLUSTER}  # by what a layer ``needs``


def require(layer: type[Layer]) -> None:
    """Skip the calling test when ``layer`` cannot run here (``Layer.available``); where CI requires it, fail."""
    available, reason = layer.available()
    if not available:
        if REQUIRED.get(layer.needs):
            pytest.fail(f"CI requires {layer.needs}, but {reason}", pytrace=False)
        pytest.skip(reason)


def layer_params(served_only: bool = False) -> list:
    """Every layer whose stage folder exists, as pytest params marked by what it needs (slow: a local server)."""
    params = []
    for stage, layer in LAYERS.items():
        if layer.folder_exists() and (layer.serves_http or not served_only):
            mark = layer.needs or ("slow" if layer.serves_http else "")
            params.append(
                pytest.param(layer, marks=[getattr(pytest.mark, mark)] if mark else [], id=f"stage{stage:02d}")
            )
    return params


def start_layer(request, layer: type[Layer], model: Path, env: dict[str, str] | None = None):
    """The one way a test gets a started layer (with ``env`` added to the server's environment): the
    session's own where the layer is ``shared`` (its settings are its manifests')."""
    require(layer)
    if layer.shared:
        yield request.getfixturevalue("cluster")
        return
    with layer(model, env=env) as started:
        yield started


@pytest.fixture(scope="module", params=layer_params())
def started(request, model_v1):
    """Each layer in turn, started with version 1 (module-scoped: the tests of one module share it)."""
    yield from start_layer(request, request.param, model_v1)


@pytest.fixture(scope="module", params=layer_params(served_only=True))
def served(request, model_v1):
    """Each layer that serves over HTTP in turn, started with version 1."""
    yield from start_layer(request, request.param, model_v1)


@pytest.fixture(scope="session", autouse=True)
def every_log_line_is_json():
    """Every line any served layer logs during the suite, read just before the layer stops (a container's log
    goes with it), is a JSON record, or one of the few named in harness.logreader.NOT_JSON; every access line
    carries its request id. The suite fails at its end otherwise, naming the lines."""
    unreadable: dict[str, str] = {}

    def checking(stop):
        def stop_after_reading_the_log(self, *args, **kwargs):
            try:
                text = self.log()
            except Exception:  # noqa: BLE001 (a layer that never started has no log to read)
                text = ""
            unreadable.update(dict.fromkeys(logreader.problems(text), self.name))
            return stop(self, *args, **kwargs)

        return stop_after_reading_the_log

    with pytest.MonkeyPatch.context() as patch:
        for layer in (ServerProcess, Container, ProxiedContainer):
            patch.setattr(layer, "stop", checking(layer.stop))
        yield
    if unreadable:
        lines = "\n".join(f"  {name}: {line}" for line, name in list(unreadable.items())[:20])
        pytest.fail(f"{len(unreadable)} log lines an operator's program cannot read:\n{lines}", pytrace=False)


@pytest.fixture(scope="module", params=layer_params(served_only=True))
def watched(request, model_v1, tmp_path_factory):
    """Each served layer, serving its own copy of version 1 (a test may damage it) with a 3 s worker timeout,
    so a hung worker is noticed in seconds."""
    served = tmp_path_factory.mktemp("watched") / "iris.joblib"
    model_module().install(model_v1, served)
    yield from start_layer(request, request.param, served, env={"GUNICORN_TIMEOUT": "3"})


@pytest.fixture(scope="session")
def iris():
    """The model module (identical in every stage), imported from stage 01."""
    return model_module()


@pytest.fixture(scope="session")
def model_v1(tmp_path_factory) -> Path:
    """A version-1 artifact, trained once per session. Do not overwrite it: use fresh_model."""
    return train_model(tmp_path_factory.mktemp("model_v1"), version="1", c=1.0)


@pytest.fixture(scope="session")
def model_v2(tmp_path_factory) -> Path:
    """A distinguishable version 2 (stronger regularisation, different probabilities)."""
    return train_model(tmp_path_factory.mktemp("model_v2"), version="2", c=0.05)


@pytest.fixture
def fresh_model(iris, model_v1, tmp_path) -> Path:
    """A private copy of version 1 that a test may upgrade in place."""
    target = tmp_path / "served" / "iris.joblib"
    iris.install(model_v1, target)
    return target


@pytest.fixture(scope="session")
def golden() -> dict:
    """The committed golden inputs and expected predictions."""
    return load_golden()


@pytest.fixture
def app(model_v1):
    """The served app, built by its factory as gunicorn builds it (Flask's tutorial layout), MAX_ROWS 50."""
    return stage_app.create_app({"MODEL_PATH": str(model_v1), "MAX_ROWS": 50})


@pytest.fixture
def client(app):
    """Flask's test client for ``app``: requests without a network."""
    return app.test_client()


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine that answers (skips without one; fails in CI)."""
    require(Container)


@pytest.fixture(scope="session")
def stage4_image() -> str:
    """Tag of the stage-04 image, built once per session (reused while 04_container/ is unchanged)."""
    require(Container)
    return build_image()


@pytest.fixture(scope="session")
def failure_image(stage4_image) -> str:
    """The stage-04 image plus the failure tests' routes (support/Dockerfile): never shipped."""
    tag = f"{stage4_image}-failure"
    docker("build", "--quiet", "--build-arg", f"IMAGE={stage4_image}", "--tag", tag, str(SUPPORT), timeout=300)
    return tag


@pytest.fixture(scope="session")
def cluster(request):
    """Stage 05: the stage-04 image deployed on kind or the local cluster (skips without one; removed afterwards)."""
    require(Cluster)
    # Only now build the image: without a cluster the skip costs nothing.
    layer = Cluster(image=request.getfixturevalue("stage4_image"))
    seconds = layer.start()
    print(f"\nstage 05 up (cluster reused or created, image loaded, rollout done) in {seconds:.1f} s")
    yield layer
    layer.stop()
