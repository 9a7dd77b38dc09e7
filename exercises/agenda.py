"""The figures of EXERCISES.md and FACILITATORS.md, rendered from the code: each exercise's line (time, level,
kind, what it needs, its check), the three workshop agendas as Markdown tables (with the notebook to open), and
per stage the key a facilitator teaches from: what each check wants, the reference answers, its thresholds.

    python -m exercises.check --docs    # rewrite the figure blocks of both files
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path
from typing import NamedTuple

from exercises.catalogue import EXERCISES
from exercises.catalogue import Exercise
from exercises.checks.stage05 import CLINIC
from harness import decide
from harness.core import ROOT

DOCS = (ROOT / "EXERCISES.md", ROOT / "FACILITATORS.md")
EXERCISES_DIR = ROOT / "exercises"
NOTEBOOKS = ROOT / "notebooks"


def check_sources(stage: int) -> tuple[Path, ...]:
    """Where a stage's thresholds live: its checks module and the shared exercises modules it imports from
    (stage 05's apply-and-put-back, exercises/applied.py)."""
    checks = EXERCISES_DIR / "checks" / f"stage0{stage}.py"
    shared = re.findall(r"^from exercises\.(\w+) import", checks.read_text(), re.MULTILINE)
    return (checks, *(EXERCISES_DIR / f"{name}.py" for name in dict.fromkeys(shared) if name != "checks"))


CHECK_SOURCES = {stage: check_sources(stage) for stage in range(1, 6)}
UNITS = {"_S": "s", "_MB": "MB"}  # a constant's name ends with its unit


class Row(NamedTuple):
    """One agenda row: an item lasting ``length`` minutes, or as long as the exercises it names."""

    item: str
    length: int | tuple[str, ...]
    notebooks: tuple[str, ...] = ()  # notebooks/<name>.ipynb to open on the projector during this row


AGENDAS: dict[str, list[Row]] = {
    "half_day": [
        Row("Welcome, `make setup`, `make tour` (every layer, one request)", 15),
        Row("Stage 01: read the README, `make stage-1`", 10, ("01_model_py",)),
        Row("Stage 01 exercises", ("01.1", "01.2")),
        Row("Stage 02: README, `make stage-2`, `make diff A=1 B=2`", 10, ("02_rest_api",)),
        Row("Stage 02 exercises", ("02.1", "02.2")),
        Row("Break", 15),
        Row("Stage 03: README, `make stage-3`, `make diff A=2 B=3`", 10, ("03_wsgi",)),
        Row("Stage 03 exercises", ("03.1", "03.2")),
        Row("Stage 04: README, `make stage-4`, `make diff A=3 B=4`", 15, ("04_container",)),
        Row("Stage 04 exercises", ("04.1", "04.2")),
        Row(
            "Stage 05 on the projector: `make stage-5`, delete a pod under load, 05.1 and 05.3 live",
            30,
            ("05_kubernetes",),
        ),
        Row("Closing: the scorecard, then exercise", ("05.4",), ("00_scorecard", "07_should_you")),
    ],
    "full_day": [
        Row("Welcome, `make setup`, `make tour`", 15),
        Row("Stage 01: README, `make stage-1`", 10, ("01_model_py",)),
        Row("Stage 01 exercises", ("01.1", "01.2", "01.3")),
        Row("Break", 15),
        Row("Stage 02: README, `make stage-2`, `make diff A=1 B=2`", 10, ("02_rest_api",)),
        Row("Stage 02 exercises", ("02.1", "02.2", "02.3", "02.4")),
        Row("Stage 03: README, `make stage-3`, `make diff A=2 B=3`", 10, ("03_wsgi",)),
        Row("Lunch", 45),
        Row("Stage 03 exercises", ("03.1", "03.2", "03.3", "03.4"), ("06_peers",)),
        Row("Stage 04: README, `make stage-4`, `make diff A=3 B=4`", 15, ("04_container",)),
        Row("Stage 04 exercises", ("04.1", "04.2", "04.3", "04.4")),
        Row("Break", 15),
        Row("Stage 05: README, `make stage-5`", 15, ("05_kubernetes",)),
        Row("Stage 05 exercises", ("05.1", "05.2", "05.3", "05.5")),
        Row("Closing: the scorecard, then exercise", ("05.4",), ("00_scorecard", "07_should_you")),
    ],
    # A room with no internet (FACILITATORS.md): only exercises whose `online` is empty; stage 05 on the
    # facilitator's cluster (kind's `make stage-5` fetches metrics-server: the local cluster from the cache).
    "offline": [
        Row("Welcome, `make setup` from the workshop cache, `make tour`", 15),
        Row("Stage 01: README, `make stage-1`", 10, ("01_model_py",)),
        Row("Stage 01 exercises", ("01.1", "01.2")),
        Row("Stage 02: README, `make stage-2`, `make diff A=1 B=2`", 10, ("02_rest_api",)),
        Row("Stage 02 exercises", ("02.1", "02.2")),
        Row("Break", 15),
        Row("Stage 03: README, `make stage-3`, `make diff A=2 B=3`", 10, ("03_wsgi",)),
        Row("Stage 03 exercises", ("03.1", "03.2")),
        Row("Stage 04: README, `make stage-4` (from the build cache), `make diff A=3 B=4`", 15, ("04_container",)),
        Row("Stage 04 exercises", ("04.1", "04.4")),
        Row(
            "Stage 05 on the projector (the local cluster from the workshop cache): delete a pod under load, "
            "05.1 and 05.3 live",
            30,
            ("05_kubernetes",),
        ),
        Row("Closing: the scorecard, then exercise", ("05.4",), ("00_scorecard", "07_should_you")),
    ],
}
AGENDA_START = 9 * 60  # 09:00


def meta_line(e: Exercise) -> str:
    """The line under an exercise's heading in EXERCISES.md: time, level, kind, needs, its check."""
    parts = [f"**{e.minutes} min**", e.level, *(["question"] if e.question else [])]
    parts += [{"docker": "Docker", "cluster": "cluster"}[e.needs]] if e.needs else []
    return " · ".join([*parts, f"`make check EX={e.id}`"])


def row_exercises(row: Row) -> list[str]:
    """Every exercise id a row names: the ones it lasts for, and any its text mentions (05.1 live)."""
    named = list(row.length) if isinstance(row.length, tuple) else []
    return named + [i for i in re.findall(r"\b0\d\.\d\b", row.item) if i in EXERCISES and i not in named]


def notebook_link(name: str) -> str:
    """A Markdown link to notebooks/<name>.ipynb, by its number."""
    return f"[{name[:2]}](notebooks/{name}.ipynb)"


def agenda_table(name: str) -> str:
    """An agenda as a Markdown table whose start times are computed, with the notebooks to open, and its end."""
    clock = AGENDA_START
    lines = ["| start | item | min | notebook |", "|---|---|---|---|"]
    for row in AGENDAS[name]:
        item, length = row.item, row.length
        if isinstance(length, tuple):
            item, length = f"{item} {', '.join(length)}", sum(EXERCISES[i].minutes for i in length)
        notebooks = ", ".join(notebook_link(n) for n in row.notebooks)
        lines.append(f"| {clock // 60:02d}:{clock % 60:02d} | {item} | {length} | {notebooks} |")
        clock += length
    lines.append(f"\nEnds {clock // 60:02d}:{clock % 60:02d} ({clock - AGENDA_START} min).")
    return "\n".join(lines)


def constants(path: Path) -> list[tuple[str, int | float, str]]:
    """(name, value, its comment) of every module-level UPPER_CASE number in ``path``: a check's thresholds."""
    source = path.read_text()
    comments = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    found = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.Assign | ast.AnnAssign):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if len(targets) == 1 and isinstance(targets[0], ast.Name) and targets[0].id.isupper():
            value = node.value
            if isinstance(value, ast.Constant) and type(value.value) in (int, float):
                found.append((targets[0].id, value.value, comments.get(node.end_lineno or node.lineno, "")))
    return found


def with_unit(name: str, value: int | float) -> str:
    """A constant's value with the unit its name ends with (ROLLOUT_S = 240 -> 240 s)."""
    unit = next((u for suffix, u in UNITS.items() if name.endswith(suffix)), "")
    return f"{value:g} {unit}".strip()


def first_paragraph(text: str | None) -> str:
    """A docstring's first paragraph on one line."""
    return " ".join((text or "").strip().split("\n\n")[0].split())


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell: no column break, no tag a renderer would swallow (<v>)."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def template_questions(exercise_id: str) -> dict[str, str]:
    """Each key of an answers template, with the comment the learner reads above it (not the header, not commands)."""
    questions, above = {}, []
    for line in (EXERCISES_DIR / "answers" / f"{exercise_id}.toml").read_text().splitlines():
        if line.startswith("#"):
            if not line.startswith((f"# {exercise_id}:", "#  ")):
                above.append(line.lstrip("#").strip())
        elif match := re.match(r"(\w+) = ", line):
            questions[match.group(1)] = " ".join(above)
            above = []
    return questions


def reference_answers(exercise_id: str) -> dict[str, str]:
    """key -> value as the reference solution (exercises/solutions/<id>.patch) answers it."""
    patch = (EXERCISES_DIR / "solutions" / f"{exercise_id}.patch").read_text()
    return dict(re.findall(r"^\+(\w+) = (.+)$", patch, re.MULTILINE))


def patched_files(exercise_id: str) -> list[str]:
    """The files a reference solution changes, relative to its stage folder."""
    patch = (EXERCISES_DIR / "solutions" / f"{exercise_id}.patch").read_text()
    return [path.split("/", 1)[1] for path in re.findall(r"^\+\+\+ b/(\S+)", patch, re.MULTILINE)]


def clinic_accepts() -> str:
    """What 05.4's check accepts today: harness.decide on the clinic, from the committed figures."""
    decision = decide.decide(CLINIC, decide.load())
    answer = decision["answer"]
    if answer is None:  # no layer meets the clinic's constraints: the exercise itself needs rewriting
        return "05.4 accepts no layer: none meets the clinic's constraints with the committed figures."
    lines = [f'05.4 accepts, from the committed figures (`harness.decide`): `layer = "{answer[:2]}"` ({answer});']
    for layer, found in decision["checks"].items():
        if layer == answer:
            break
        fails = ", ".join(f'"{c["what"]}"' for c in found if not c["met"])
        lines.append(f"`rules_out_{layer[:2]}` any one of {fails};")
    return " ".join(lines).rstrip(";") + "."


def stage_key(stage: int) -> str:
    """A stage's exercises as a facilitator needs them: what each check wants, the reference solution, the
    reference answers of its questions (with 05.4's accepted ones), and the thresholds of its checks."""
    exercises = [e for e in EXERCISES.values() if e.stage == stage]
    lines = ["| exercise | the check passes when | reference solution |", "|---|---|---|"]
    for e in exercises:
        files = ", ".join(f"`{f}`" for f in patched_files(e.id))
        patch = f"[`{e.id}.patch`](exercises/solutions/{e.id}.patch)"
        lines.append(f"| {e.id} {cell(e.title)} | {cell(first_paragraph(e.check.__doc__))} | {patch}: {files} |")
    questions = [e for e in exercises if e.question]
    if questions:
        lines += ["", "| answer | the template asks | reference answer |", "|---|---|---|"]
        for e in questions:
            reference = reference_answers(e.id)
            for key, asks in template_questions(e.id).items():
                lines.append(f"| {e.id} `{key}` | {cell(asks)} | `{cell(reference[key])}` |")
    if any(e.id == "05.4" for e in exercises):
        lines += ["", clinic_accepts()]
    lines += ["", "| threshold | value | what it decides |", "|---|---|---|"]
    for path in CHECK_SOURCES[stage]:
        for name, value, comment in constants(path):
            where = path.relative_to(ROOT)
            lines.append(f"| [`{name}`]({where}) | {with_unit(name, value)} | {cell(comment)} |")
    if lines[-1] == "|---|---|---|":
        lines[-3:] = ["", "No threshold: the checks compare exact answers and the golden predictions."]
    return "\n".join(lines)


def blocks() -> dict[str, str]:
    """Every figures block by name: ``ex<id>`` in EXERCISES.md, ``agenda_<name>`` and ``key_stage<n>`` in
    FACILITATORS.md."""
    found = {f"ex{e.id.replace('.', '_')}": meta_line(e) for e in EXERCISES.values()}
    found.update({f"agenda_{name}": agenda_table(name) for name in AGENDAS})
    found.update({f"key_stage{stage}": stage_key(stage) for stage in CHECK_SOURCES})
    return found


def render_docs(text: str) -> str:
    """``text`` with every figures block (exercise meta lines, agendas, stage keys) rendered from the code."""
    for name, body in blocks().items():
        start, end = f"<!-- figures:{name} -->", f"<!-- /figures:{name} -->"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            text = f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"
    return text


def write_docs(paths: tuple[Path, ...] = DOCS) -> list[str]:
    """Rewrite the figure blocks of ``paths`` in place; the names of the files written."""
    for path in paths:
        path.write_text(render_docs(path.read_text()))
    return [path.name for path in paths]
