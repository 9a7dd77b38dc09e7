"""Each served stage's requirements.txt (and uv's own pin), exported from uv.lock with hashes.

    python3 -m harness.requirements write    # what `make requirements` runs
    python3 -m harness.requirements check    # exit 1 and say which file differs (tests run it)

uv.lock is the one lock; a stage folder keeps a requirements.txt so it stays a folder a learner can
`pip install -r` without uv, and stage 04's Dockerfile installs it with `--require-hashes`. A
stage's packages are the dependency group named after its folder in pyproject.toml. The file's
first comment lines are written by hand (what the stage needs) and kept; the rest is generated:
every pin with the hashes of its files, so pip refuses a download that is not the one locked.
Standard library only: it runs before .venv exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.paths import ROOT
from harness.paths import STAGES

GENERATED = (
    "# Exported from ../uv.lock by `make requirements` (a dependency group of ../pyproject.toml; a\n"
    "# stage folder's is named after it): edit that, then `make lock`. Each pin lists its files'\n"
    "# hashes, so pip installs only the files the lock names (--require-hashes).\n"
)


def uv() -> str:
    """The uv the Makefile chose (UV), else the lock's own in .venv, else one on PATH."""
    for candidate in (os.environ.get("UV"), ROOT / ".venv" / "bin" / "uv", shutil.which("uv")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SystemExit("error: uv not found: run `make setup` first (it installs uv where there is none)")


# What `make setup` installs uv from, with pip, where a machine has none (the group "bootstrap").
BOOTSTRAP = ROOT / "scripts" / "uv-bootstrap.txt"


def files() -> dict[Path, str]:
    """Every exported file -> its dependency group: each stage folder's requirements.txt (the group
    named after the folder), and uv's own pin for the bootstrap."""
    stages = {folder / "requirements.txt": folder.name for folder in STAGES.values()}
    return {path: group for path, group in stages.items() if path.exists()} | {BOOTSTRAP: "bootstrap"}


def rendered(path: Path, group: str) -> str:
    """What ``path`` must hold: its own hand-written first comments, the notice, uv's export of ``group``."""
    lines = path.read_text().splitlines(keepends=True)
    generated_from = next((i for i, line in enumerate(lines) if line == GENERATED.splitlines(keepends=True)[0]), None)
    if generated_from is None:  # never exported yet: its leading comments are the hand-written part
        generated_from = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    by_hand = lines[:generated_from]
    export = subprocess.run(
        [uv(), "export", "--locked", "--quiet", "--only-group", group, "--no-emit-project", "--no-header"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if export.returncode != 0:
        raise SystemExit(f"error: uv export --only-group {group} failed: {export.stderr.strip()}")
    return "".join(by_hand) + GENERATED + export.stdout


def stale() -> list[str]:
    """The requirements files that differ from what the lock exports now."""
    return [str(path.relative_to(ROOT)) for path, group in files().items() if path.read_text() != rendered(path, group)]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["write"]:
        for path, group in files().items():
            path.write_text(rendered(path, group))
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    if args == ["check"]:
        wrong = stale()
        for name in wrong:
            print(f"{name} differs from uv.lock's export: run `make requirements`", file=sys.stderr)
        return 1 if wrong else 0
    print("usage: python3 -m harness.requirements write|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
