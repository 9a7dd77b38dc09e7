"""The workshop exercises check themselves, in both directions.

For every exercise in exercises/catalogue.py: its check FAILS on an untouched
scratch copy of the stage folder and PASSES once the reference solution
(exercises/solutions/<id>.patch) is applied to another scratch copy, so no
check can pass vacuously. The checks run exactly as a learner runs them
(`python -m exercises.check ID --dir COPY`), so each prints one line and never
a traceback; `make check` itself exits non-zero unless the check passes.
Stage-04 ones need Docker, stage-05 ones the cluster (and apply to it, then
restore it): marked, and skipped with a reason or, in CI, required.

The catalogue tests keep EXERCISES.md and FACILITATORS.md honest: every
exercise listed with its time; agendas whose timings add up, with a notebook
for each moment and an offline one that downloads nothing; and each stage's
key (what its checks want, the reference answers, every threshold) rendered
from the code, never typed.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exercises.agenda import AGENDAS
from exercises.agenda import CHECK_SOURCES
from exercises.agenda import DOCS
from exercises.agenda import blocks
from exercises.agenda import constants
from exercises.agenda import render_docs
from exercises.agenda import row_exercises
from exercises.agenda import template_questions
from exercises.agenda import with_unit
from exercises.applied import render
from exercises.catalogue import EXERCISES
from exercises.check import check
from exercises.check import main
from exercises.check import scratch_copy
from exercises.checks.stage03 import HELPS
from exercises.common import Fail
from exercises.common import post
from exercises.common import rows
from harness.container import docker
from harness.container import ensure_base_image
from harness.layers import ROOT
from harness.layers import STAGES
from harness.layers import free_port
from harness.load import wait_until
from harness.manifests import validate


def run_check(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """`python -m exercises.check ARGS` from the repository root: exit code, output, seconds."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "exercises.check", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=1200, env=env,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def one_line(output: str) -> str:
    """The single line a check prints; anything more (a traceback) fails the test."""
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in output, f"expected one line, got:\n{output}"
    return lines[0]


def marks(exercise) -> list:
    """Every check runs a real layer for seconds: slow; plus docker or cluster for what it needs."""
    extra = {"docker": [pytest.mark.docker], "cluster": [pytest.mark.cluster]}.get(exercise.needs, [])
    return [pytest.mark.slow, *extra]


@pytest.fixture(scope="module")
def ran(request):
    """Collects what each both-directions test saw; printed as one table at the end of the module."""
    rows: list[str] = []
    yield rows
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter and capture and rows:
        with capture.global_and_fixture_disabled():  # a module fixture's teardown output is captured otherwise
            reporter.write_line("")
            reporter.write_line("exercises checked in both directions (before: untouched copy, after: solution):")
            for row in rows:
                reporter.write_line("  " + row)


@pytest.mark.parametrize("exercise", [pytest.param(e, id=e.id, marks=marks(e)) for e in EXERCISES.values()])
def test_check_fails_untouched_and_passes_after_the_reference_solution(exercise, request, tmp_path, ran):
    if exercise.needs == "docker":
        request.getfixturevalue("docker_engine")
        ensure_base_image()
    if exercise.needs == "cluster":
        request.getfixturevalue("cluster")  # stage 05 deployed (skips without a cluster; fails in CI)

    untouched = scratch_copy(exercise.id, solved=False, parent=tmp_path)
    code, output, before_s = run_check(exercise.id, "--dir", str(untouched))
    before = one_line(output)
    assert code == 1 and before.startswith(f"FAIL {exercise.id}: saw "), before

    solved = scratch_copy(exercise.id, solved=True, parent=tmp_path)
    code, output, after_s = run_check(exercise.id, "--dir", str(solved))
    after = one_line(output)
    assert code == 0 and after.startswith(f"PASS {exercise.id}"), after
    if exercise.question:  # a wrong answer fails too: the check compares, it does not just find a file
        answers = solved / "answers" / f"{exercise.id}.toml"
        key, value = re.findall(r"^(\w+) = (.+)$", answers.read_text(), re.MULTILINE)[-1]
        wrong = {"true": "false", "false": "true"}.get(value, '"wrong"')
        answers.write_text(answers.read_text().replace(f"{key} = {value}", f"{key} = {wrong}"))
        code, output, _ = run_check(exercise.id, "--dir", str(solved))
        assert code == 1 and f"saw {key} = " in one_line(output), output
    ran.append(f"{exercise.id}  before {before_s:5.1f} s  after {after_s:5.1f} s  {before[:110]}")
    print(f"\n{exercise.id} before ({before_s:.1f} s): {before}\n{exercise.id} after ({after_s:.1f} s): {after}")


# --- the catalogue, the solutions and the one-line promise (fast: no servers) ---------------------


def test_three_to_five_exercises_per_stage_from_warm_up_to_stretch():
    for stage in STAGES:
        levels = [e.level for e in EXERCISES.values() if e.stage == stage]
        assert 3 <= len(levels) <= 5, f"stage {stage}: {len(levels)} exercises"
        assert levels[0] == "warm-up" and levels[-1] == "stretch", f"stage {stage}: {levels}"
        assert set(levels) <= {"warm-up", "core", "stretch"}


@pytest.mark.parametrize("exercise", list(EXERCISES.values()), ids=list(EXERCISES))
def test_every_solution_is_a_patch_against_its_stage_folder_only(exercise, tmp_path):
    patch = ROOT / "exercises" / "solutions" / f"{exercise.id}.patch"
    touched = re.findall(r"^\+\+\+ b/(\S+)", patch.read_text(), re.MULTILINE)
    assert touched and all(p.startswith(STAGES[exercise.stage].name + "/") for p in touched), touched
    solved = scratch_copy(exercise.id, solved=True, parent=tmp_path)  # applies, or Fail
    assert solved.is_dir()


@pytest.mark.parametrize("exercise", [e for e in EXERCISES.values() if e.question], ids=lambda e: e.id)
def test_every_question_has_a_blank_template_and_a_filled_in_reference(exercise):
    template = ROOT / "exercises" / "answers" / f"{exercise.id}.toml"
    keys = re.findall(r"^(\w+) = ", template.read_text(), re.MULTILINE)
    assert keys, template
    patch = (ROOT / "exercises" / "solutions" / f"{exercise.id}.patch").read_text()
    assert f"answers/{exercise.id}.toml" in patch
    for key in keys:
        assert re.search(rf"^\+{key} = \S", patch, re.MULTILINE), f"{key} not answered in the reference"


def test_exercises_md_lists_every_exercise_with_its_time_and_check():
    text = (ROOT / "EXERCISES.md").read_text()
    listed = dict(re.findall(r"^### (\d\d\.\d) .*?\n(?:<!-- .*? -->\n)?\*\*(\d+) min\*\*", text, re.MULTILINE))
    assert list(listed) == list(EXERCISES), "EXERCISES.md and exercises/catalogue.py list different exercises"
    for exercise in EXERCISES.values():
        assert int(listed[exercise.id]) == exercise.minutes, exercise.id
        assert f"make check EX={exercise.id}" in text, exercise.id


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_figures_in_the_workshop_docs_are_rendered_from_the_catalogue(path):
    text = path.read_text()
    assert render_docs(text) == text, f"{path.name} is stale: python -m exercises.check --docs"


def test_constants_the_exercises_name_are_in_the_modules_they_name():
    text = (ROOT / "EXERCISES.md").read_text()
    named = re.findall(r"`([A-Z_]+)` \(in `(exercises/[\w/]+)\.py`\)", text)
    assert named, "EXERCISES.md names no checker constant"
    for name, module in named:
        assert hasattr(importlib.import_module(module.replace("/", ".")), name), f"{name} not in {module}.py"


def block(text: str, name: str) -> str:
    """The body of the figures block ``name`` in a document; a missing block fails."""
    start, end = f"<!-- figures:{name} -->", f"<!-- /figures:{name} -->"
    assert start in text and end in text, f"no figures block {name}"
    return text.split(start, 1)[1].split(end, 1)[0]


def test_every_block_has_its_place_in_the_docs():
    """An agenda or a stage key missing from its document would not be checked for staleness at all."""
    exercises_md, facilitators = ((ROOT / name).read_text() for name in ("EXERCISES.md", "FACILITATORS.md"))
    for name in blocks():
        block(exercises_md if name.startswith("ex") else facilitators, name)


def agenda_rows(text: str, name: str) -> list[tuple[int, str, int, str]]:
    """(start minute, item, minutes, notebooks) per row of the rendered agenda ``name``."""
    rows = []
    found = re.findall(r"^\| (\d\d:\d\d) \| (.+?) \| (\d+) \| (.*?) ?\|$", block(text, f"agenda_{name}"), re.MULTILINE)
    for start, item, minutes, notebooks in found:
        hours, mins = map(int, start.split(":"))
        rows.append((hours * 60 + mins, item, int(minutes), notebooks))
    return rows


AGENDA_TOTALS = {"half_day": 240, "full_day": 480, "offline": 240}


def test_every_agenda_has_its_length():
    assert set(AGENDAS) == set(AGENDA_TOTALS)


@pytest.mark.parametrize("name, total", AGENDA_TOTALS.items())
def test_facilitators_agendas_add_up(name, total):
    text = (ROOT / "FACILITATORS.md").read_text()
    rows = agenda_rows(text, name)
    assert len(rows) == len(AGENDAS[name]), f"agenda {name}: {len(rows)} rows rendered"
    for (start, item, minutes, _), (next_start, _, _, _) in zip(rows, rows[1:]):
        assert start + minutes == next_start, f"{item}: starts {start}, lasts {minutes}, next starts {next_start}"
    assert sum(minutes for _, _, minutes, _ in rows) == total, f"{name}: {sum(m for _, _, m, _ in rows)} min"
    for _, item, minutes, _ in rows:
        ids = re.findall(r"\b(0\d\.\d)\b", item)
        if ids and "exercise" in item.lower():
            assert minutes == sum(EXERCISES[i].minutes for i in ids), f"{item}: {minutes} min"


def test_the_offline_agenda_holds_no_exercise_that_needs_the_internet():
    online = {e.id for e in EXERCISES.values() if e.online}
    assert "04.2" in online, "the catalogue no longer says 04.2 needs PyPI: is that true?"
    named = [i for row in AGENDAS["offline"] for i in row_exercises(row)]
    assert named and not online & set(named), f"the offline agenda names {sorted(online & set(named))}"
    rendered = block((ROOT / "FACILITATORS.md").read_text(), "agenda_offline")
    assert not online & set(re.findall(r"\b0\d\.\d\b", rendered)), rendered


def test_every_notebook_has_its_moment_in_the_full_day():
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    for name, agenda in AGENDAS.items():
        named = {n for row in agenda for n in row.notebooks}
        assert named <= notebooks, f"agenda {name} opens missing notebooks {sorted(named - notebooks)}"
        if name == "full_day":
            assert named == notebooks, f"the full day never opens {sorted(notebooks - named)}"


@pytest.mark.parametrize("stage", list(CHECK_SOURCES))
def test_every_check_threshold_is_rendered_from_the_code(stage):
    """Each module-level number of a stage's checks (HELPS, VENV_LIMIT_MB, ...) is in FACILITATORS.md, with
    its value and what it decides (its comment), through the stage's key: never typed by hand."""
    key = block((ROOT / "FACILITATORS.md").read_text(), f"key_stage{stage}")
    for path in CHECK_SOURCES[stage]:
        source = path.read_text()
        found = constants(path)
        assigned = re.findall(r"^([A-Z][A-Z0-9_]*)\s*(?::[^=]+)?=\s*-?[\d.]", source, re.MULTILINE)
        assert [name for name, _, _ in found] == assigned, f"{path.name}: the scan misses a threshold"
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for name, value, comment in found:
            assert getattr(module, name) == value, name
            assert comment, f"{name} in {path.name} says nothing about what it decides: add a comment"
            assert f"[`{name}`]" in key and f"| {with_unit(name, value)} |" in key, f"{name} not in key_stage{stage}"


def test_the_thresholds_exercises_md_names_are_seen_by_the_scan():
    scanned = {name for sources in CHECK_SOURCES.values() for path in sources for name, _, _ in constants(path)}
    assert {"HELPS", "VENV_LIMIT_MB"} <= scanned


@pytest.mark.parametrize("exercise", [e for e in EXERCISES.values() if e.question], ids=lambda e: e.id)
def test_facilitators_has_the_reference_answer_to_every_question(exercise):
    key = block((ROOT / "FACILITATORS.md").read_text(), f"key_stage{exercise.stage}")
    patch = (ROOT / "exercises" / "solutions" / f"{exercise.id}.patch").read_text()
    for key_name in template_questions(exercise.id):
        (reference,) = re.findall(rf"^\+{key_name} = (.+)$", patch, re.MULTILINE)
        assert f"| {exercise.id} `{key_name}` |" in key and f"`{reference}`" in key, (exercise.id, key_name)


def test_the_03_3_template_states_helps_as_the_check_has_it():
    """The answers template tells the learner the threshold in percent: the same as the check's HELPS."""
    for path in (ROOT / "exercises" / "answers" / "03.4.toml", ROOT / "exercises" / "solutions" / "03.4.patch"):
        (percent,) = re.findall(r"less than (\d+) %", path.read_text())
        assert int(percent) == round((HELPS - 1) * 100), f"{path.name} says {percent} %, HELPS is {HELPS}"


def test_05_3_accepts_only_the_deadline_field(tmp_path):
    """Any other field of the Deployment's spec (replicas) is refused, before any image is built."""
    folder = scratch_copy("05.3", solved=True, parent=tmp_path)
    answers = folder / "answers" / "05.3.toml"
    answers.write_text(answers.read_text().replace('"progressDeadlineSeconds"', '"replicas"'))
    code, line = check("05.3", folder)
    assert code == 1 and "saw deadline_field = 'replicas'" in line, line


def test_facilitators_contents_point_at_its_headings():
    text = (ROOT / "FACILITATORS.md").read_text()
    slugs = {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    }
    anchors = re.findall(r"\]\(#([^)]+)\)", text)
    assert anchors and set(anchors) <= slugs, sorted(set(anchors) - slugs)


def test_an_unknown_exercise_or_folder_is_one_line_not_a_traceback(tmp_path, capsys):
    code, output, _ = run_check("9.9")  # once as a learner runs it, the rest in-process (faster)
    assert code == 2 and one_line(output).startswith("FAIL 9.9: no such exercise"), output
    for args in ([], ["02.1", "--dir", str(tmp_path / "missing")], ["--solve", "9.9"]):
        code = main(args)
        output = capsys.readouterr().out
        assert code == 2 and one_line(output).startswith("FAIL"), output


def test_a_missing_docker_or_cluster_is_one_line():
    """Without docker or kind on PATH the checks say so in one line (no cluster is touched)."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "CLUSTER": "kind"}
    for exercise, needs in (("04.2", "Docker"), ("05.1", "cluster")):
        code, output, _ = run_check(exercise, env=env)
        assert code == 3 and one_line(output).startswith(f"CANNOT CHECK {exercise}: needs"), output
        assert needs.lower() in output.lower()


def test_solve_applies_the_solution_to_a_scratch_copy_and_says_where():
    code, output, _ = run_check("--solve", "02.1")
    line = one_line(output)
    folder = Path(line.split(" applied in ")[1].split()[0])
    try:
        assert code == 0 and folder.name == "02_rest_api", line
        assert 'positive_int("MAX_ROWS", 100)' in (folder / "app.py").read_text()
        assert 'positive_int("MAX_ROWS", 1000)' in (STAGES[2] / "app.py").read_text(), "the stage folder changed"
    finally:
        shutil.rmtree(folder.parent)


# `make check` as a workshop script or CI runs it (-o: the test never rebuilds .venv, whatever its stamp says).
MAKE_CHECK = ["make", "--no-print-directory", "-o", ".venv/.installed-from-lock", "check"]


def make_check(exercise_id: str, folder: Path) -> subprocess.CompletedProcess:
    """`make check EX=... DIR=...` from the repository root."""
    command = [*MAKE_CHECK, f"EX={exercise_id}", f"DIR={folder}"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_make_check_exits_non_zero_on_a_wrong_answer_with_the_verdict_in_one_line(tmp_path):
    """03.4 answered against its own figures (they say 2; the answer says 4): FAIL before any server starts."""
    folder = scratch_copy("03.4", solved=False, parent=tmp_path)
    (folder / "answers").mkdir()
    wrong = 'rps = {1 = 500, 2 = 1000, 4 = 1010}\nstops_helping_at = 4\nlimited_by = "cpus"\n'
    (folder / "answers" / "03.4.toml").write_text(wrong)
    proc = make_check("03.4", folder)
    assert proc.returncode != 0, proc.stdout
    assert one_line(proc.stdout).startswith("FAIL 03.4: saw stops_helping_at = 4 with your figures"), proc.stdout
    # make adds one line of its own on stderr, naming the checker's exit code (1: FAIL)
    assert one_line(proc.stderr).endswith("Error 1"), proc.stderr


@pytest.mark.slow
def test_make_check_exits_zero_on_the_solved_copy(tmp_path):
    folder = scratch_copy("02.2", solved=True, parent=tmp_path)
    proc = make_check("02.2", folder)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert one_line(proc.stdout).startswith("PASS 02.2"), proc.stdout


@pytest.mark.parametrize(
    "exercise", [e for e in EXERCISES.values() if e.needs == "cluster" and not e.question], ids=lambda e: e.id
)
def test_stage05_solutions_render_and_validate_strictly_without_a_cluster(exercise, tmp_path):
    """What the cluster checks apply, decided offline: both versions render and validate; they differ.
    (A question's solution is its answers, which the cluster never sees.)"""
    rendered = {}
    for solved in (False, True):
        folder = scratch_copy(exercise.id, solved=solved, parent=tmp_path)
        objects = render(folder, {"server": "iris-serving:exercise", "proxy": "iris-proxy:ex"})
        assert not validate(objects), (exercise.id, solved)
        rendered[solved] = objects
    assert rendered[False] != rendered[True], "the solution changes nothing the cluster would see"


def test_facilitators_links_point_at_files_that_exist():
    text = (ROOT / "FACILITATORS.md").read_text()
    for target in re.findall(r"\]\(([^)#:]+)\)", text):
        assert (ROOT / target).exists(), f"FACILITATORS.md links to missing {target}"


@pytest.mark.slow
@pytest.mark.docker
def test_stage05_init_container_of_05_2_trains_version_2_under_the_pods_restrictions(stage4_image, tmp_path):
    """05.2 without a cluster: its init container and server, run by Docker as the restricted pod would run them.

    Read-only root, the pod's user, no capabilities, no privilege escalation,
    /tmp as scratch (the pod's emptyDir), /models shared: version 2 comes out.
    """
    folder = scratch_copy("05.2", solved=True, parent=tmp_path)
    pod = next(o for o in render(folder, {"server": stage4_image}) if o["kind"] == "Deployment")["spec"]["template"]
    (init,) = pod["spec"]["initContainers"]
    user = pod["spec"]["securityContext"]["runAsUser"]
    restricted = ["--read-only", "--user", f"{user}:{user}", "--cap-drop", "ALL"]
    restricted += ["--security-opt", "no-new-privileges", "--tmpfs", "/tmp"]
    volume = f"ex-models-{tmp_path.name[-8:].lower()}"
    name = f"ex-05-2-{volume[-8:]}"
    try:
        docker("volume", "create", volume)
        # An emptyDir is writable by the pod's user; a fresh Docker volume is root's: hand it over first.
        docker(
            "run",
            "--rm",
            "-v",
            f"{volume}:/models",
            "--user",
            "0",
            "--entrypoint",
            "chown",
            stage4_image,
            f"{user}:{user}",
            "/models",
        )
        trained = docker(
            "run", "--rm", *restricted, "-v", f"{volume}:/models", "--entrypoint", init["command"][0],
            stage4_image, *init["command"][1:], timeout=120, check=False,
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr[-800:]
        port = free_port()
        docker(
            "run", "--detach", "--name", name, *restricted, "-v", f"{volume}:/models:ro",
            "-e", "MODEL_PATH=/models/iris.joblib", "--publish", f"127.0.0.1:{port}:8000", stage4_image,
        )  # fmt: skip
        versions = []

        def answers_version_2() -> bool:
            try:
                versions.append(post(f"http://127.0.0.1:{port}/predict", rows(1)).json())
            except Fail:
                return False
            return versions[-1].get("model_version") == "2"

        assert wait_until(answers_version_2, 60, interval=0.5), versions[-1:] or docker("logs", name).stderr[-800:]
    finally:
        docker("rm", "--force", name, check=False)
        docker("volume", "rm", "--force", volume, check=False)
