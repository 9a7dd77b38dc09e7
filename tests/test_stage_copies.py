"""The deliberate copies: the same model, app and server config in every stage that has them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from harness import diff as harness_diff
from harness import requirements
from harness.layers import ROOT
from harness.layers import STAGES

# file -> the stage that owns it; every later stage folder holds a byte-identical copy
OWNED = {
    "model.py": 1,
    **dict.fromkeys(("app.py", "inputs.py", "logs.py", "metrics.py", "v2.py", "openapi.json"), 2),
    **dict.fromkeys(("gunicorn.conf.py", "nginx.conf"), 3),
    **dict.fromkeys(("Dockerfile", "proxy.Dockerfile", ".dockerignore", "requirements.txt"), 4),
}
COPIES = [
    (name, owner, stage)
    for name, owner in OWNED.items()
    for stage in STAGES
    if stage > owner and STAGES[owner].is_dir() and STAGES[stage].is_dir()
]
# generated, not edited: requirements.txt is uv.lock's export (harness/requirements.py)
GENERATED = {"requirements.txt": "make requirements"}
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)")


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line (hash lines and comments skipped)."""
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


@pytest.mark.parametrize(("name", "owner", "stage"), COPIES, ids=[f"{n}:{o}->{s}" for n, o, s in COPIES])
def test_copy_is_byte_identical(name, owner, stage):
    original, copy = STAGES[owner] / name, STAGES[stage] / name
    assert copy.exists(), f"{copy} is missing: run `make sync`"
    assert copy.read_bytes() == original.read_bytes(), f"{copy} differs from {original}: run `make sync`"


def test_copies_say_they_are_copies():
    """Each copied file's first lines say where to edit it and every folder that holds a copy."""
    for name, owner in OWNED.items():
        head = " ".join(line.strip("# ") for line in (STAGES[owner] / name).read_text().splitlines()[:5])
        copies = [STAGES[stage].name for n, o, stage in COPIES if n == name]
        where = GENERATED.get(name, f"edit {STAGES[owner].name}/{name}")
        assert where in head, f"{name}'s first lines do not say where it comes from ({where})"
        missing = [folder for folder in copies if folder not in head]
        assert not missing, f"{name}'s first lines do not name the copies in {missing}"


def test_stage_requirements_are_exported_from_uv_lock():
    """uv.lock is the one lock: every stage's requirements.txt is exactly its group's export now."""
    assert requirements.stale() == [], "run `make requirements`"


@pytest.mark.parametrize("stage", [s for s, p in STAGES.items() if (p / "requirements.txt").exists()])
def test_every_stage_pin_carries_its_hashes(stage):
    """pip's hash-checking mode (the Dockerfile's --require-hashes) needs a hash on every pin."""
    text = (STAGES[stage] / "requirements.txt").read_text()
    entries = [e for e in re.split(r"\n(?=\S)", text) if PIN.match(e)]  # a pin with its indented lines
    assert len(entries) == len(pins(STAGES[stage] / "requirements.txt")) > 0
    unhashed = [e.split()[0] for e in entries if "--hash=sha256:" not in e]
    assert not unhashed, f"pins without a hash: {unhashed}"


def test_requirements_only_grow_along_the_stages():
    """A layer adds what it needs and keeps what the layers below it need."""
    listed = [pins(p / "requirements.txt") for p in STAGES.values() if (p / "requirements.txt").exists()]
    for earlier, later in zip(listed, listed[1:], strict=False):
        assert earlier.keys() <= later.keys(), f"a later stage drops {sorted(earlier.keys() - later.keys())}"
    assert "scikit-learn" in listed[0] and "flask" not in listed[0], "stage 01 needs the model, no web framework"
    assert any("gunicorn" in later.keys() - earlier.keys() for earlier, later in zip(listed, listed[1:], strict=False))


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


# What `make diff A=N-1 B=N` shows: the layer's own code and configuration (top-level names).
ADDS = {
    "02_rest_api": {"requirements.txt", "app.py", "inputs.py", "logs.py", "metrics.py", "v2.py", "openapi.json"},
    "03_wsgi": {"requirements.txt", "gunicorn.conf.py", "nginx.conf"},
    "04_container": {"requirements.txt", "Dockerfile", "proxy.Dockerfile", ".dockerignore", "compose.yaml"},
    "05_kubernetes": {"kind.sh", "k8s", "compose.yaml"},  # compose.yaml goes: k8s/ takes its place
}
SHOWN = [stage for stage, folder in STAGES.items() if folder.name in ADDS and folder.is_dir()]


def shown_files(out: str) -> set[str]:
    return {line.split()[-1].split("/", 1)[1].split("/")[0] for line in out.splitlines() if line.startswith("diff ")}


@pytest.mark.parametrize("stage", SHOWN)
def test_make_diff_shows_the_code_of_one_lesson_and_counts_the_docs(stage):
    make = ["make", "-s", "diff", f"A={stage - 1}", f"B={stage}"]
    out = subprocess.run(make, cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert shown_files(out) == ADDS[STAGES[stage].name], (
        f"make diff A={stage - 1} B={stage} shows {sorted(shown_files(out))}"
    )
    assert re.search(r"^#   README\.md: \+\d+ -\d+ lines$", out, re.M), "the README's change is a line count"
    everything = subprocess.run([*make, "ALL=1"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert shown_files(everything) == ADDS[STAGES[stage].name] | {"README.md"}, "ALL=1 shows the README too"


@pytest.mark.parametrize("stage", SHOWN)
def test_make_diff_counts_lines_as_git_does(stage):
    """The per-file counts (the scorecard's 'lines added') agree with an independent diff, git's.

    Two diff programs may pair changed lines differently, so what must agree is
    the set of files and each file's net change (lines added minus removed).
    """
    numstat = subprocess.run(
        ["git", "diff", "--no-index", "--numstat", STAGES[stage - 1].name, STAGES[stage].name],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    by_git = {}
    for line in numstat.splitlines():
        added, removed, names = line.split("\t")
        if "{" in names:  # "{02_rest_api => 03_wsgi}/README.md"
            names = re.sub(r"\{(.*) => (.*)\}", r"\2", names)
        path = next(n for n in reversed(names.split(" => ")) if n != "/dev/null").split("/", 1)[1]
        if not {"artifacts", "__pycache__"} & set(path.split("/")):
            by_git[path] = [int(added), int(removed)]
    ours = harness_diff.changes(stage - 1, stage)
    assert ours.keys() == by_git.keys()

    def hash_lines(folder, path):  # left out of the lesson (harness.diff.HASH_LINE), counted by git
        file = folder / path
        return (
            sum(line.lstrip().startswith("--hash=") for line in file.read_text().splitlines()) if file.exists() else 0
        )

    net_by_git = {
        p: a - r - hash_lines(STAGES[stage], p) + hash_lines(STAGES[stage - 1], p) for p, (a, r) in by_git.items()
    }
    assert {p: a - r for p, (a, r) in ours.items()} == net_by_git


@pytest.mark.parametrize("stage", SHOWN)
def test_the_readme_names_every_file_the_diff_shows(stage):
    readme = (STAGES[stage] / "README.md").read_text()
    section = readme.split("## What changed", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([^`/ ]+)[`/]", section))
    assert ADDS[STAGES[stage].name] <= named, f"'What changed' does not name {sorted(ADDS[STAGES[stage].name] - named)}"
