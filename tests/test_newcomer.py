"""`make test` on a newcomer's machine: each missing tool is a skip with its reason, never a failure.

CI has everything; a newcomer often has Docker installed but not running, no
wrk and no kind. Each state below reruns the tests that met such a machine
first (and once failed there) in a child pytest, with the environment of
that machine: a PATH without the tool, or a DOCKER_HOST where nothing answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core import ROOT

pytestmark = pytest.mark.slow

DOCKER = [
    "tests/test_container.py",
    "tests/test_scorecard.py::test_a_layer_that_will_not_start_is_an_error_message_not_a_traceback",
]
WRK = [
    "tests/test_harness.py::test_wrk_against_a_dead_port_reports_errors",
    "tests/test_scorecard.py::test_scorecard_smoke_run_writes_every_figure",
]
KIND = ["tests/test_local_cluster.py::test_make_stage_5_names_a_missing_kind"]
# What notebook 01 and `make scorecard` ask first: the machine's description (a Docker client
# without an engine once made it fail).
DESCRIBE = (
    "from harness.scorecard import available_stages, environment; print(environment()['tools'], available_stages())"
)


def path_without(tmp: Path, *tools: str) -> str:
    """The current PATH, with each directory holding one of ``tools`` replaced by a copy of it without them."""
    dirs = []
    for directory in os.environ["PATH"].split(os.pathsep):
        folder = Path(directory)
        if not any((folder / tool).exists() for tool in tools):
            dirs.append(directory)
            continue
        stand_in = tmp / f"bin{len(dirs)}"
        stand_in.mkdir()
        for entry in folder.iterdir():
            if entry.name not in tools:
                (stand_in / entry.name).symlink_to(entry)
        dirs.append(str(stand_in))
    return os.pathsep.join(dirs)


# state -> (tools missing, environment, what the run must say (a skip's reason), the tests that meet it first)
NO_ENGINE = "unix:///nonexistent/docker.sock"
STATES = {
    "no docker client": ({"docker"}, {}, "the docker command is not installed", DOCKER),
    "a client with no engine": (
        set(),
        {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        "Docker engine is not running",
        DOCKER,
    ),
    "no wrk": ({"wrk"}, {}, "wrk is not installed", WRK),
    "no kind": ({"kind"}, {"CLUSTER": "kind"}, "1 passed", KIND),  # make stage-5 names what is missing
}


@pytest.mark.parametrize("state", STATES)
def test_a_newcomers_machine_skips_with_reasons(state, tmp_path):
    missing, extra_env, reason, selection = STATES[state]
    if "docker" not in missing and not extra_env and shutil.which("docker") is None:
        pytest.skip("no docker client here to take away")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "REQUIRE_DOCKER", "REQUIRE_CLUSTER")}
    env.update(PATH=path_without(tmp_path, *missing), **extra_env)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *selection],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    tail = result.stdout[-3000:]
    assert result.returncode == 0, f"{state}: make test would fail here:\n{tail}"
    assert reason in tail, f"{state}: the skip does not say why ({reason!r}):\n{tail}"
    described = subprocess.run([sys.executable, "-c", DESCRIBE], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=120)  # fmt: skip
    assert described.returncode == 0, described.stderr[-2000:]
