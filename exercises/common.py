"""What the checks of every stage share: the two verdicts, bounded commands and requests, a learner's answers
file, and a harness Layer serving from the learner's folder.

A check raises ``Fail`` (what it saw, what it expected) or ``CannotCheck`` (what
this machine lacks); the command line (exercises.check) turns either into one line.
"""

from __future__ import annotations

import contextlib
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from harness.core import BIN
from harness.core import Layer
from harness.core import LayerError
from harness.golden import load_golden
from harness.load import EXAMPLE_ROW
from harness.scenarios import OBSERVE_S
from harness.scenarios import crash

TEMPLATE_NOTE = "mkdir -p {dir}/answers; cp exercises/answers/{id}.toml {dir}/answers/"


class Fail(Exception):
    """The exercise is not done yet: what the check saw, and what it expected."""

    def __init__(self, saw: str, expected: str):
        super().__init__(f"saw {saw}; expected {expected}")


class CannotCheck(Exception):
    """The check needs something this machine lacks (Docker, a cluster, a base image)."""


def last_line(text: str) -> str:
    """The last non-empty line of a log or an error output (what the learner should read first)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:300]


def model_cli(folder: Path, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python model.py ARGS`` in ``folder``, as the stage-01 README runs it; a timeout is a Fail."""
    try:
        return subprocess.run(
            [str(BIN / "python"), "model.py", *args], cwd=folder, input=stdin, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise Fail(f"`python model.py {args[0]}` still running after {timeout:.0f} s", "it to finish") from None


def train(folder: Path, out: Path, version: str = "1", c: float = 1.0) -> Path:
    """Train an artifact with the folder's own model.py (version 1 = the golden model)."""
    result = model_cli(folder, "train", "--version", version, "--C", str(c), "--model", str(out))
    if result.returncode != 0:
        raise Fail(f"`python model.py train` failing: {last_line(result.stderr)}", "it to train the model")
    return out


def answers(folder: Path, exercise: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """The learner's answers file, every key filled in."""
    path = folder / "answers" / f"{exercise}.toml"
    note = TEMPLATE_NOTE.format(dir=folder, id=exercise)
    if not path.is_file():
        raise Fail(f"no answers file {path}", f"your answers in it (start from the template: {note})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise Fail(f"{path.name} is not valid TOML ({exc})", "key = value lines as in the template") from None
    for key in keys:
        if data.get(key) in (None, ""):
            raise Fail(f"no answer for '{key}' in {path.name}", f"'{key}' filled in ({note})")
    return data


@contextlib.contextmanager
def serving(layer: Layer) -> Iterator[Layer]:
    """``layer`` started and ready (one that does not start is a Fail quoting its log's last line); stopped after."""
    try:
        layer.start()
    except LayerError as exc:
        raise Fail(f"the {layer.name} from {layer.folder} not serving ({last_line(str(exc))})", "it to start") from None
    try:
        yield layer
    finally:
        layer.stop()


def post(url: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 10) -> requests.Response:
    """POST JSON with a time limit; a connection failure is a Fail."""
    try:
        return requests.post(url, json=body, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise Fail(f"no answer from {url} ({type(exc).__name__})", "an HTTP answer") from None


def get(url: str) -> requests.Response:
    """GET with a time limit; a connection failure is a Fail."""
    try:
        return requests.get(url, timeout=10)
    except requests.RequestException as exc:
        raise Fail(f"no answer from {url} ({type(exc).__name__})", "an HTTP answer") from None


def error_of(response: requests.Response) -> str:
    """The JSON error message of a response, or its status when there is none."""
    with contextlib.suppress(ValueError, AttributeError):
        return str(response.json().get("error"))
    return f"HTTP {response.status_code}"


def rows(n: int) -> dict[str, Any]:
    """A /predict body with ``n`` copies of the example flower."""
    return {"instances": [EXAMPLE_ROW] * n}


def golden_rows() -> list[dict[str, float]]:
    """The golden inputs every layer must answer identically."""
    return load_golden()["inputs"]


def crash_answers(folder: Path, exercise: str, layer: Layer) -> None:
    """Question (02.3, 03.3, 04.3): the serving process of ``layer`` (started from the learner's folder) killed
    under load. Did requests fail, and did the layer answer again by itself? Measured here, as
    `python -m harness.crash` measures it, and compared with the learner's answers."""
    given = answers(folder, exercise, ("any_failed", "back_by_itself"))
    with serving(layer):
        try:
            result = crash(layer, "server", observe=OBSERVE_S)
        except PermissionError:  # a container's PID 1 is a host process of another user
            raise CannotCheck(f"killing the {layer.name}'s server from the host needs root: sudo make check") from None
    hint = f"what `python -m harness.crash --stage {int(exercise[:2])}` printed"
    if given["any_failed"] is not (result["failed"] > 0):
        raise Fail(f"any_failed = {given['any_failed']!r}", f"{hint} (failed requests)")
    if given["back_by_itself"] is not result["recovered"]:
        raise Fail(f"back_by_itself = {given['back_by_itself']!r}", f"{hint} (back by itself)")
