"""One interface, never ``if stage == N``: what differs between layers lives in their Layer classes.

Shared code (the harness, the bench, the exercise checker, the notebooks' helpers) and the
tests must not branch on a stage number or keep a dictionary keyed by one. The two registries
that map numbers to folders and classes are the exception: harness/paths.py and harness/layers.py.
"""

from __future__ import annotations

import re
import subprocess

from harness.paths import ROOT

REGISTRIES = {"harness/paths.py", "harness/layers.py"}
SHARED = ("harness", "bench", "exercises", "tests", "notebooks")
BRANCHES = [
    re.compile(r"\bstage\w*\s*(==|!=|<=|>=|<|>)\s*\d"),  # if stage == 4, stage >= 2
    re.compile(r"\b\d\s*(==|!=)\s*\w*stage\b"),  # 5 == stage
    re.compile(r"\bstage\w*\s+(not\s+)?in\s*[(\[{]\s*\d"),  # stage in (4, 5)
    re.compile(r"\{\s*[1-5]\s*:\s*[^\s}]"),  # {4: docker_available, 5: ...}, on one line or several
]


def offenders(text: str) -> list[str]:
    """The lines of ``text`` that branch on a stage number or key a dictionary by one (where the match begins)."""
    starts = {text.count("\n", 0, match.start()) for pattern in BRANCHES for match in pattern.finditer(text)}
    lines = text.splitlines()
    return [lines[n].strip() for n in sorted(starts)]


def test_the_patterns_catch_what_the_rule_forbids():
    code = "if stage == 5:\n    needs = {4: docker_available, 5: x}\nif layer.stage in (4, 5):\n"
    code += "ok = 1\nADDS = {\n    2: {1}}\n"
    found = offenders(code)
    assert found == ["if stage == 5:", "needs = {4: docker_available, 5: x}", "if layer.stage in (4, 5):", "ADDS = {"]


def test_no_shared_code_or_test_branches_on_a_stage_number():
    files = subprocess.run(["git", "ls-files", "--", *SHARED], cwd=ROOT, capture_output=True, text=True).stdout
    found = {}
    for name in files.split():
        if name.endswith(".py") and name not in REGISTRIES and name != "tests/test_one_interface.py":
            lines = offenders((ROOT / name).read_text())
            if lines:
                found[name] = lines
    assert found == {}, "branch on a capability of the Layer class instead:\n" + "\n".join(
        f"{name}: {line}" for name, lines in found.items() for line in lines
    )
