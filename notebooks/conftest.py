"""Skip (with the reason) the notebooks whose tools this machine lacks; in CI they are required.

nbmake collects each notebook as one test. Stages 04 and 05 need a Docker
engine; the benchmarks in 02 to 04 need the wrk load generator.

Under pytest the notebooks run QUICK (harness.core.QUICK): every cell, with
shorter loads and windows. NOTEBOOK_QUICK=0 runs them in full, as
`make notebooks` does for the outputs committed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.container import docker_available

NEEDS_DOCKER = {"04_container.ipynb", "05_kubernetes.ipynb"}
NEEDS_WRK = {"02_rest_api.ipynb", "03_wsgi.ipynb", "04_container.ipynb", "05_kubernetes.ipynb"}
REQUIRED = os.environ.get("CI") == "true"  # CI installs both: a missing one must fail there
os.environ.setdefault("NOTEBOOK_QUICK", "1")  # the kernels nbmake starts inherit it


# A notebook is one test item: pytest's per-test limit (pyproject) would cut the longest ones
# (stage 05: a rollout, the crashes, the autoscaler) while every cell is within nbmake's own limit.
NOTEBOOK_TIMEOUT_S = 900


def pytest_collection_modifyitems(config, items):
    notebooks = [item for item in items if Path(str(item.fspath)).suffix == ".ipynb"]
    for item in notebooks:
        item.add_marker(pytest.mark.timeout(NOTEBOOK_TIMEOUT_S))
    if not notebooks or REQUIRED:
        return
    docker_ok, docker_reason = docker_available()
    for item in notebooks:
        name = Path(str(item.fspath)).name
        if name in NEEDS_DOCKER:
            item.add_marker(pytest.mark.docker)
            if not docker_ok:
                item.add_marker(pytest.mark.skip(reason=f"no Docker: {docker_reason}"))
        if name in NEEDS_WRK and shutil.which("wrk") is None:
            item.add_marker(pytest.mark.skip(reason="wrk is not installed (apt-get install wrk, brew install wrk)"))
