"""Check a workshop exercise against the real layer, or apply its reference solution to a scratch copy.

    python -m exercises.check 03.2                 # check 03_wsgi/ (what `make check EX=03.2` runs)
    python -m exercises.check 03.2 --dir COPY      # check a copy of the stage folder instead
    python -m exercises.check --solve 03.2         # copy the stage to a scratch folder, apply the solution
    python -m exercises.check --list               # every exercise: id, minutes, level, what it needs (online too)
    python -m exercises.check --docs               # render the figures of EXERCISES.md and FACILITATORS.md (agendas,
                                                   # each stage's key: the checks, reference answers, thresholds)

Prints one line: ``PASS <id> <title>``, or ``FAIL <id>: saw ...; expected ...``,
or ``CANNOT CHECK <id>: ...`` when Docker or the cluster it needs is missing.
Exit codes: 0 pass, 1 fail, 2 usage (an unknown exercise or folder), 3 cannot check.

Every check runs the layer of its stage from the folder being checked
(exercises/checks/stageNN.py, through the harness's Layer classes). Exercises
that are questions read the learner's answers from ``<folder>/answers/<id>.toml``
(templates in exercises/answers/) and compare them with what the check measures itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from exercises.agenda import write_docs
from exercises.catalogue import EXERCISES
from exercises.common import CannotCheck
from exercises.common import Fail
from exercises.common import last_line
from harness.core import STAGES

SOLUTIONS = Path(__file__).resolve().parent / "solutions"  # <id>.patch, against the repository root
# What a learner's shell may export (FACILITATORS.md): a check sets what it tests itself.
SHELL_SETTINGS = ("MAX_ROWS", "WEB_CONCURRENCY", "GUNICORN_PRELOAD")


def unknown(exercise_id: str) -> str:
    """The one line for an exercise id the catalogue does not have."""
    return f"FAIL {exercise_id or '(none)'}: no such exercise; expected one of {', '.join(EXERCISES)}"


def check(exercise_id: str, folder: Path | None = None) -> tuple[int, str]:
    """Run one check; return (exit code, the one line to print). Never raises."""
    exercise = EXERCISES.get(exercise_id)
    if exercise is None:
        return 2, unknown(exercise_id)
    stage = STAGES[exercise.stage]
    folder = (folder or stage).resolve()
    if not folder.is_dir():
        return 2, f"FAIL {exercise.id}: saw no folder {folder}; expected a copy of {stage.name}"
    started = time.monotonic()
    unset = {name: os.environ.pop(name) for name in SHELL_SETTINGS if name in os.environ}
    try:
        exercise.check(folder)
    except Fail as exc:
        return 1, f"FAIL {exercise.id}: {' '.join(str(exc).split())}"
    except CannotCheck as exc:
        return 3, f"CANNOT CHECK {exercise.id}: {exc}"
    except Exception as exc:  # a check must never print a traceback at a learner
        return 1, f"FAIL {exercise.id}: the check stopped at {type(exc).__name__}: {last_line(str(exc))}"
    finally:
        os.environ.update(unset)
    return 0, f"PASS {exercise.id} {exercise.title} ({time.monotonic() - started:.1f} s)"


def scratch_copy(exercise_id: str, solved: bool, parent: Path | None = None) -> Path:
    """A copy of the exercise's stage folder (without artifacts), its reference solution applied if ``solved``."""
    stage = STAGES[EXERCISES[exercise_id].stage]
    root = Path(tempfile.mkdtemp(prefix=f"ex-{exercise_id}-", dir=parent))
    shutil.copytree(stage, root / stage.name, ignore=shutil.ignore_patterns("artifacts", "__pycache__", "answers"))
    if solved:
        patch = SOLUTIONS / f"{exercise_id}.patch"
        result = subprocess.run(
            ["git", "apply", "--whitespace=nowarn", str(patch)], cwd=root, capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise Fail(f"{patch.name} not applying: {last_line(result.stderr)}", "a patch against the stage folder")
    return root / stage.name


def solve(exercise_id: str) -> tuple[int, str]:
    """Apply the exercise's reference solution to a scratch copy; (exit code, the one line saying where)."""
    if exercise_id not in EXERCISES:
        return 2, unknown(exercise_id)
    try:
        folder = scratch_copy(exercise_id, solved=True)
    except Fail as exc:
        return 1, f"FAIL {exercise_id}: {exc}"
    return 0, f"solution {exercise_id} applied in {folder}  (check it: make check EX={exercise_id} DIR={folder})"


def main(argv: list[str] | None = None) -> int:
    """Command line: check one exercise, apply a solution, list them or render the docs; one line per answer."""
    parser = argparse.ArgumentParser(prog="exercises.check", description=__doc__.splitlines()[0])
    parser.add_argument("exercise", nargs="?", default="", help="an exercise id such as 03.2")
    parser.add_argument("--dir", type=Path, help="the folder to check (default: the stage folder itself)")
    parser.add_argument("--solve", action="store_true", help="apply the reference solution to a scratch copy")
    parser.add_argument("--list", action="store_true", help="list every exercise")
    parser.add_argument("--docs", action="store_true", help="rewrite the figures of EXERCISES.md, FACILITATORS.md")
    args = parser.parse_args(argv)
    if args.docs:
        for name in write_docs():
            print(f"rendered {name}")
        return 0
    if args.list:
        for e in EXERCISES.values():
            kind = "question" if e.question else "change"
            online = f"  (online: {e.online.split(':')[0]})" if e.online else ""
            print(f"{e.id}  {e.minutes:3d} min  {e.level:8s} {kind:8s} {e.needs or '-':8s} {e.title}{online}")
        return 0
    code, line = solve(args.exercise) if args.solve else check(args.exercise, args.dir)
    print(line)
    return code


if __name__ == "__main__":
    sys.exit(main())
