"""The deliberate copies: the same model, app and server config in every stage that has them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from harness.layers import ROOT
from harness.layers import STAGES

# file -> the stage that owns it; every later stage folder holds a byte-identical copy
OWNED = {
    "model.py": 1,
    "app.py": 2,
    "gunicorn.conf.py": 3,
    "nginx.conf": 3,
    "Dockerfile": 4,
    "proxy.Dockerfile": 4,
    ".dockerignore": 4,
}
COPIES = [
    (name, owner, stage)
    for name, owner in OWNED.items()
    for stage in STAGES
    if stage > owner and STAGES[owner].is_dir() and STAGES[stage].is_dir()
]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)$")


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


@pytest.mark.parametrize(("name", "owner", "stage"), COPIES, ids=[f"{n}:{o}->{s}" for n, o, s in COPIES])
def test_copy_is_byte_identical(name, owner, stage):
    original, copy = STAGES[owner] / name, STAGES[stage] / name
    assert copy.exists(), f"{copy} is missing: run `make sync`"
    assert copy.read_bytes() == original.read_bytes(), f"{copy} differs from {original}: run `make sync`"


def test_copies_say_they_are_copies():
    for name in ("model.py", "app.py", "gunicorn.conf.py", "nginx.conf"):
        assert "DELIBERATE COPY" in (STAGES[OWNED[name]] / name).read_text()


@pytest.mark.parametrize("stage", [s for s, p in STAGES.items() if (p / "requirements.txt").exists()])
def test_stage_requirements_match_the_one_lock(stage):
    lock = pins(ROOT / "requirements.lock")
    stage_pins = pins(STAGES[stage] / "requirements.txt")
    assert stage_pins, "a stage lists its requirements with exact pins"
    wrong = {name: version for name, version in stage_pins.items() if lock.get(name) != version}
    assert not wrong, f"pins differ from requirements.lock: {wrong}"


def test_each_layer_adds_its_requirement():
    needs = {1: "scikit-learn", 2: "flask", 3: "gunicorn"}
    for stage, package in needs.items():
        for later in STAGES:
            path = STAGES[later] / "requirements.txt"
            if later >= stage and path.exists():
                assert package in pins(path), f"{path} lacks {package}"
    assert "flask" not in pins(STAGES[1] / "requirements.txt"), "stage 01 needs no web framework"


@pytest.mark.parametrize("stage", [s for s, p in STAGES.items() if (p / "requirements.txt").exists()])
def test_stage_requirements_pin_every_dependency(stage):
    """Nothing floats: every package a listed package requires is pinned too (images install only this file)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    listed = set(pins(STAGES[stage] / "requirements.txt"))
    missing = set()
    for name in listed:
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                if requirement.name.lower().replace("_", "-") not in {n.replace("_", "-") for n in listed}:
                    missing.add(f"{requirement.name} (needed by {name})")
    assert not missing, f"{STAGES[stage].name}/requirements.txt does not pin: {sorted(missing)}"


# What `make diff A=N-1 B=N` must show: the layer's own files and nothing else.
ADDS = {
    2: {"README.md", "requirements.txt", "app.py"},
    3: {"README.md", "requirements.txt", "gunicorn.conf.py", "nginx.conf"},
    4: {"README.md", "requirements.txt", "Dockerfile", "proxy.Dockerfile", ".dockerignore"},
    5: {"README.md", "kind.sh", "k8s"},
}


@pytest.mark.parametrize("stage", [s for s in ADDS if STAGES[s].is_dir()])
def test_make_diff_shows_only_what_the_layer_adds(stage):
    out = subprocess.run(
        ["make", "-s", "diff", f"A={stage - 1}", f"B={stage}"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout
    changed = {
        line.split()[-1].split("/", 1)[1].split("/")[0] for line in out.splitlines() if line.startswith("diff -ruN")
    }
    assert changed == ADDS[stage], f"make diff A={stage - 1} B={stage} touches {sorted(changed)}"
