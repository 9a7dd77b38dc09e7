"""`make setup`: uv.lock is the one lock, uv the installer, pip still enough for a stage folder."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest

from harness import requirements
from harness.layers import ROOT
from tests.test_stage_copies import pins

UV = ROOT / ".venv" / "bin" / "uv"  # the lock pins uv itself (the tests group)
PROJECTS = [".", "bench", ".ci"]  # the stages' environment, the benchmark's peers, checkov


def locked_versions(project: str) -> dict[str, str]:
    lock = tomllib.loads((ROOT / project / "uv.lock").read_text())
    return {package["name"]: package.get("version", "") for package in lock["package"]}


@pytest.mark.parametrize("project", PROJECTS)
def test_each_lock_matches_its_pyproject(project):
    """`uv sync --locked` refuses a stale lock; this says so before a learner's setup does (offline, cache only)."""
    check = subprocess.run(
        [str(UV), "lock", "--check", "--offline", "--project", project],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, f"{project}/uv.lock is stale: run `make lock`\n{check.stderr}"


@pytest.mark.parametrize("project", PROJECTS)
def test_every_locked_file_carries_a_hash(project):
    """Hashes everywhere pip or uv installs: every wheel and sdist in each lock has its sha256."""
    lock = tomllib.loads((ROOT / project / "uv.lock").read_text())
    files = [f for p in lock["package"] for f in [p.get("sdist"), *p.get("wheels", [])] if f]
    assert files and all(re.fullmatch(r"sha256:[0-9a-f]{64}", f.get("hash", "")) for f in files)


def test_the_bootstrapped_uv_is_the_locked_one():
    """The uv `make setup` installs where there is none (Makefile UV_VERSION, the bootstrap file) is uv.lock's."""
    pinned = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert locked_versions(".")["uv"] == pinned
    assert pins(requirements.BOOTSTRAP) == {"uv": pinned}
    assert "--hash=sha256:" in requirements.BOOTSTRAP.read_text()


def test_no_other_lock_or_pip_requirements_source():
    """uv.lock is the only lock of the stages' environment: no requirements.in/.lock left beside it."""
    others = [p.name for p in ROOT.glob("requirements*") if p.is_file()]
    assert others == [], f"a second lock beside uv.lock: {others}"


def test_setup_needs_only_python_and_the_network(tmp_path):
    """With no uv on PATH, `make setup` would install the pinned uv with pip first (a dry run shows the plan)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    if shutil.which("uv", path=env["PATH"]):
        pytest.skip("this machine has uv in /usr/bin: make uses it, nothing to bootstrap")
    plan = subprocess.run(
        ["make", "-n", "--always-make", "setup"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    uv_home = f"{tmp_path}/.cache/model-serving-layers/uv-{locked_versions('.')['uv']}"
    assert f"-m venv {uv_home}" in plan.stdout, plan.stdout
    assert (
        f"{uv_home}/bin/pip install --quiet --disable-pip-version-check --require-hashes -r scripts/uv-bootstrap.txt"
        in plan.stdout
    )
    assert f"{uv_home}/bin/uv --no-python-downloads --system-certs sync --locked" in plan.stdout, plan.stdout
