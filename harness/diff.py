"""What one layer adds: the diff of two neighbouring stage folders, code and configuration first.

    python3 -m harness.diff 2 3          # code and configuration, then one line per other file
    python3 -m harness.diff 2 3 --all    # everything, READMEs included

`make diff A=2 B=3` runs the first form. Documentation (READMEs, notebooks)
changes with every stage and would drown the lesson, so it is listed with its
line counts, not shown. Standard library only: a diff needs no .venv.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.paths import STAGES

# Never part of a lesson: trained artifacts and bytecode.
IGNORED = ("artifacts", "__pycache__")
DOC_SUFFIXES = (".md", ".ipynb")
# A requirements.txt lists each pin's file hashes (numpy alone has dozens): checked by pip, never read
# by a person. The lesson is the pins, so the hash lines are left out of what is shown and counted.
HASH_LINE = re.compile(r"^\s+--hash=\S+.*\n?", re.MULTILINE)
CONTINUED = re.compile(r" \\$", re.MULTILINE)


def _lesson_view(stage: int, into: Path) -> Path:
    """A copy of stage ``stage`` as the diff reads it (empty for a stage that does not exist)."""
    into.mkdir(parents=True)
    if stage in STAGES:
        shutil.copytree(STAGES[stage], into, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*IGNORED))
        for requirements in into.rglob("requirements*.txt"):
            requirements.write_text(CONTINUED.sub("", HASH_LINE.sub("", requirements.read_text())))
    return into


def _file_diffs(a: int, b: int) -> dict[str, str]:
    """`diff -ruN` of two stage folders, split per file: path relative to the stage -> its diff.

    A stage ``a`` that does not exist (0, before stage 01) is an empty folder: all of ``b`` is added.
    """
    if a == b:
        return {}
    with tempfile.TemporaryDirectory() as scratch:
        before = _lesson_view(a, Path(scratch, STAGES[a].name if a in STAGES else "nothing"))
        after = _lesson_view(b, Path(scratch, STAGES[b].name))
        out = subprocess.run(
            ["diff", "-ruN", before.name, after.name], cwd=scratch, capture_output=True, text=True
        ).stdout
    chunks: dict[str, str] = {}
    path = ""
    for line in out.splitlines(keepends=True):
        if line.startswith("diff "):
            path = line.split()[-1].split("/", 1)[1]
        chunks[path] = chunks.get(path, "") + line
    return chunks


def setting_lines(path: Path) -> int:
    """Lines of a configuration file (YAML, .env) that say something: blank lines and comments not counted."""
    return sum(1 for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#"))


def is_doc(path: str) -> bool:
    """Whether a changed file is documentation (shown as a count by default), not code or configuration."""
    return path.endswith(DOC_SUFFIXES)


def changes(a: int, b: int) -> dict[str, list[int]]:
    """Each file that differs between stage ``a`` and ``b`` -> [lines added, lines removed], paths relative to b."""
    per_file = {}
    for path, text in _file_diffs(a, b).items():
        body = text.split("\n@@", 1)[1].splitlines() if "\n@@" in text else []  # past the ---/+++ header
        per_file[path] = [sum(x.startswith("+") for x in body), sum(x.startswith("-") for x in body)]
    return per_file


def code_changes(a: int, b: int) -> dict[str, list[int]]:
    """``changes`` without documentation: what running the layer takes."""
    return {path: counts for path, counts in changes(a, b).items() if not is_doc(path)}


def show(a: int, b: int, everything: bool = False) -> str:
    """The text `make diff` prints."""
    chunks = _file_diffs(a, b)
    docs = [p for p in chunks if is_doc(p) and not everything]
    parts = [text for path, text in chunks.items() if path not in docs]
    if docs:
        per_file = changes(a, b)
        parts.append(f"# also changed, documentation (make diff A={a} B={b} ALL=1 shows it):\n")
        parts += [f"#   {path}: +{per_file[path][0]} -{per_file[path][1]} lines\n" for path in docs]
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Command line: two stage numbers, --all for the documentation too."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=int, choices=sorted(STAGES), help="the earlier stage")
    parser.add_argument("b", type=int, choices=sorted(STAGES), help="the later stage")
    parser.add_argument("--all", action="store_true", help="show the documentation's diff too")
    args = parser.parse_args(argv)
    sys.stdout.write(show(args.a, args.b, args.all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
