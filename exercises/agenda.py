"""The figures of EXERCISES.md and FACILITATORS.md, rendered from the catalogue: each exercise's line (time,
level, kind, what it needs, its check) and the two workshop agendas as Markdown tables.

    python -m exercises.check --docs    # rewrite the figure blocks of both files
"""

from __future__ import annotations

from pathlib import Path

from exercises.catalogue import EXERCISES
from exercises.catalogue import Exercise
from harness.core import ROOT

DOCS = (ROOT / "EXERCISES.md", ROOT / "FACILITATORS.md")
# Agenda rows: (item, minutes) or (item, exercise ids): an exercise row lasts as long as its exercises.
AGENDAS: dict[str, list[tuple[str, int | tuple[str, ...]]]] = {
    "half_day": [
        ("Welcome, `make setup`, `make tour` (every layer, one request)", 15),
        ("Stage 01: read the README, `make stage-1`", 10),
        ("Stage 01 exercises", ("01.1", "01.2")),
        ("Stage 02: README, `make stage-2`, `make diff A=1 B=2`", 10),
        ("Stage 02 exercises", ("02.1", "02.2")),
        ("Break", 15),
        ("Stage 03: README, `make stage-3`, `make diff A=2 B=3`", 10),
        ("Stage 03 exercises", ("03.1", "03.2")),
        ("Stage 04: README, `make stage-4`, `make diff A=3 B=4`", 15),
        ("Stage 04 exercises", ("04.1", "04.2")),
        ("Stage 05 on the projector: `make stage-5`, delete a pod under load, 05.1 and 05.3 live", 30),
        ("Closing: the scorecard (`notebooks/00_scorecard.ipynb`), then exercise", ("05.4",)),
    ],
    "full_day": [
        ("Welcome, `make setup`, `make tour`", 15),
        ("Stage 01: README, `make stage-1`", 10),
        ("Stage 01 exercises", ("01.1", "01.2", "01.3")),
        ("Break", 15),
        ("Stage 02: README, `make stage-2`, `make diff A=1 B=2`", 10),
        ("Stage 02 exercises", ("02.1", "02.2", "02.3")),
        ("Stage 03: README, `make stage-3`, `make diff A=2 B=3`", 10),
        ("Lunch", 60),
        ("Stage 03 exercises", ("03.1", "03.2", "03.3")),
        ("Stage 04: README, `make stage-4`, `make diff A=3 B=4`", 15),
        ("Stage 04 exercises", ("04.1", "04.2", "04.3")),
        ("Break", 15),
        ("Stage 05: README, `make stage-5`", 15),
        ("Stage 05 exercises", ("05.1", "05.2", "05.3", "05.5")),
        ("Closing: the scorecard, then exercise", ("05.4",)),
    ],
}
AGENDA_START = 9 * 60  # 09:00


def meta_line(e: Exercise) -> str:
    """The line under an exercise's heading in EXERCISES.md: time, level, kind, needs, its check."""
    parts = [f"**{e.minutes} min**", e.level, *(["question"] if e.question else [])]
    parts += [{"docker": "Docker", "cluster": "cluster"}[e.needs]] if e.needs else []
    return " · ".join([*parts, f"`make check EX={e.id}`"])


def agenda_table(name: str) -> str:
    """An agenda as a Markdown table whose start times are computed, and the time it ends."""
    clock = AGENDA_START
    lines = ["| start | item | min |", "|---|---|---|"]
    for item, length in AGENDAS[name]:
        if isinstance(length, tuple):
            item, length = f"{item} {', '.join(length)}", sum(EXERCISES[i].minutes for i in length)
        lines.append(f"| {clock // 60:02d}:{clock % 60:02d} | {item} | {length} |")
        clock += length
    lines.append(f"\nEnds {clock // 60:02d}:{clock % 60:02d} ({clock - AGENDA_START} min).")
    return "\n".join(lines)


def render_docs(text: str) -> str:
    """``text`` with every figures block (exercise meta lines, agendas) rendered from the catalogue."""
    blocks = {f"ex{e.id.replace('.', '_')}": meta_line(e) for e in EXERCISES.values()}
    blocks.update({f"agenda_{name}": agenda_table(name) for name in AGENDAS})
    for name, body in blocks.items():
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
