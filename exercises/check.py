"""Check a workshop exercise against the real layer, or apply its reference solution to a scratch copy.

    python -m exercises.check 03.2                 # check 03_wsgi/ (what `make check EX=03.2` runs)
    python -m exercises.check 03.2 --dir COPY      # check a copy of the stage folder instead
    python -m exercises.check --solve 03.2         # copy the stage to a scratch folder, apply the solution
    python -m exercises.check --list               # every exercise: id, minutes, level, what it needs

Prints one line: ``PASS <id> <title>``, or ``FAIL <id>: saw ...; expected ...``,
or ``CANNOT CHECK <id>: ...`` when Docker or the cluster it needs is missing.
Exit codes: 0 pass, 1 fail, 2 usage (an unknown exercise), 3 cannot check.

Every check runs the layer of its stage from the folder being checked: the
CLI of model.py, a Flask dev server or gunicorn on a free loopback port, a
Docker image built from the folder, or the manifests applied to the cluster
(and the cluster put back as it was afterwards). Exercises that are questions
read the learner's answers from ``<folder>/answers/<id>.toml`` (templates in
exercises/answers/) and compare them with what the check measures itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from harness.container import docker
from harness.container import docker_available
from harness.container import image_config
from harness.golden import load_golden
from harness.golden import mismatches
from harness.kube import DEPLOYMENT
from harness.kube import NAMESPACE
from harness.kube import cluster_reachable
from harness.kube import kubectl
from harness.layers import ROOT
from harness.layers import STAGES
from harness.layers import LayerError
from harness.layers import free_port
from harness.load import EXAMPLE_ROW
from harness.load import LoadRun
from harness.load import wait_until
from harness.manifests import validate

HERE = Path(__file__).resolve().parent
SOLUTIONS = HERE / "solutions"
TEMPLATES = HERE / "answers"
BIN = Path(sys.executable).parent  # the .venv that runs this checker also runs the servers
LOOPBACK = "127.0.0.1"
BASE_IMAGE = "python:3.11-slim"
# Stage 05 answers on 127.0.0.1:8000 through the Service (kind's port mapping, or the
# local cluster's node port): the cluster's port, not one of ours.
CLUSTER_URL = "http://127.0.0.1:8000"
HELPS = 1.15  # 03.3: doubling the workers helps while it multiplies requests/s by at least this
VENV_LIMIT_MB = 250  # 04.2: /opt/venv in the image at most this big
TEMPLATE_NOTE = "mkdir -p {dir}/answers; cp exercises/answers/{id}.toml {dir}/answers/"


class Fail(Exception):
    """The exercise is not done yet: what the check saw, and what it expected."""

    def __init__(self, saw: str, expected: str):
        super().__init__(f"saw {saw}; expected {expected}")


class CannotCheck(Exception):
    """The check needs something this machine lacks (Docker, a cluster, a base image)."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: the catalogue entry EXERCISES.md and FACILITATORS.md are checked against."""

    id: str
    title: str
    minutes: int
    level: str  # warm-up, core or stretch
    needs: str  # "" (Python only), "docker" or "cluster"
    question: bool  # answered in <folder>/answers/<id>.toml rather than by changing code
    check: Callable[[Path], None]

    @property
    def stage(self) -> int:
        """The stage number, from the id (03.2 -> 3)."""
        return int(self.id.split(".")[0])


# --- helpers: one line out, every wait bounded -------------------------------------------------


def run(cmd: list[str], cwd: Path | None = None, stdin: str | None = None, timeout: float = 120, env=None):
    """Run a command, capture its output; a timeout becomes a Fail, not a traceback."""
    try:
        return subprocess.run(
            cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise Fail(f"`{' '.join(cmd[:3])}` still running after {timeout:.0f} s", "it to finish") from None


def last_line(text: str) -> str:
    """The last non-empty line of a log or an error output (what the learner should read first)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:300]


def model_cli(folder: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``python model.py ARGS`` in ``folder``, as the stage-01 README runs it."""
    return run([str(BIN / "python"), "model.py", *args], cwd=folder, stdin=stdin)


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


def children(pid: int) -> list[int]:
    """Direct child processes (gunicorn's workers) from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found.extend(int(p) for p in (task / "children").read_text().split())
    return sorted(found)


@dataclass
class Server:
    """A server started from a stage folder on a free loopback port."""

    proc: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def workers(self) -> list[int]:
        """gunicorn's worker PIDs (children of the master)."""
        return children(self.proc.pid)


@contextlib.contextmanager
def serve(
    folder: Path, kind: str, model: Path, env: dict[str, str] | None = None, timeout: float = 45
) -> Iterator[Server]:
    """Start ``flask run`` (kind "flask") or gunicorn (kind "gunicorn") in ``folder`` as `make stage-N` does."""
    port = free_port()
    command = {
        "flask": [str(BIN / "flask"), "--app", "app:create_app()", "run", "--host", LOOPBACK, "--port", str(port)],
        "gunicorn": [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app:create_app()"],
    }[kind]
    base = {k: v for k, v in os.environ.items() if k not in ("MAX_ROWS", "WEB_CONCURRENCY", "GUNICORN_PRELOAD")}
    full_env = {**base, "HOST": LOOPBACK, "PORT": str(port), "MODEL_PATH": str(model), "PYTHONUNBUFFERED": "1"}
    full_env.update(env or {})
    fd, log_name = tempfile.mkstemp(prefix=f"ex-{kind}-", suffix=".log")
    os.close(fd)
    log_path = Path(log_name)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(command, cwd=folder, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(proc, f"http://{LOOPBACK}:{port}", log_path)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                return True  # exited: stop waiting, reported below
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200
            return False

        if not wait_until(ready, timeout, interval=0.1) or proc.poll() is not None:
            raise Fail(f"the {kind} server in {folder} not answering ({last_line(server.log())})", "it to start")
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log_path.unlink(missing_ok=True)


def post(url: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 10) -> requests.Response:
    """POST JSON with a time limit; a connection failure is a Fail."""
    try:
        return requests.post(url, json=body, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise Fail(f"no answer from {url} ({type(exc).__name__})", "an HTTP answer") from None


def get(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    """GET with a time limit; a connection failure is a Fail."""
    try:
        return requests.get(url, headers=headers, timeout=10)
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


# --- stage 01: the script ----------------------------------------------------------------------


def check_01_1(folder: Path) -> None:
    """Question: which class loses the most probability from version 1 to version 2 (C=0.05)?"""
    given = answers(folder, "01.1", ("loses", "label_changes"))
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in EXAMPLE_ROW.items()]
    probabilities = {}
    with tempfile.TemporaryDirectory(prefix="ex-01.1-") as tmp:
        for version, c in (("1", 1.0), ("2", 0.05)):
            model = train(folder, Path(tmp) / f"v{version}" / "iris.joblib", version, c)
            result = model_cli(folder, "predict", "--model", str(model), *flags)
            if result.returncode != 0:
                raise Fail(f"`predict` failing: {last_line(result.stderr)}", "a prediction for the example flower")
            probabilities[version] = json.loads(result.stdout.splitlines()[0])
    p1, p2 = probabilities["1"]["probabilities"], probabilities["2"]["probabilities"]
    loses = max(p1, key=lambda cls: p1[cls] - p2[cls])
    changes = probabilities["1"]["label"] != probabilities["2"]["label"]
    if str(given["loses"]).strip().lower() != loses:
        raise Fail(f"loses = {given['loses']!r}", "the class whose probability drops most (run both models)")
    if given["label_changes"] is not changes:
        raise Fail(f"label_changes = {given['label_changes']!r}", f"{str(changes).lower()} (compare the labels)")


def check_01_2(folder: Path) -> None:
    """A petal longer than its sepal is refused by the CLI with a message naming both."""
    bad = {"sepal_length": 5.0, "sepal_width": 3.0, "petal_length": 6.0, "petal_width": 2.0}
    with tempfile.TemporaryDirectory(prefix="ex-01.2-") as tmp:
        model = train(folder, Path(tmp) / "iris.joblib")
        result = model_cli(folder, "predict", "--model", str(model), stdin=json.dumps([bad]))
        if result.returncode == 0:
            raise Fail(
                "the CLI predicted a flower whose petal (6.0 cm) is longer than its sepal (5.0 cm)",
                "exit code 2 and an error naming petal_length and sepal_length",
            )
        message = last_line(result.stderr)
        if result.returncode != 2 or "petal_length" not in message or "sepal_length" not in message:
            raise Fail(
                f"exit {result.returncode}: {message}", "exit code 2 and one line naming petal_length and sepal_length"
            )
        if "Traceback" in result.stderr:
            raise Fail("a traceback", "one line starting with 'error:'")
        good = model_cli(folder, "predict", "--model", str(model), stdin=json.dumps(golden_rows()))
        if good.returncode != 0:
            raise Fail(f"the golden inputs refused: {last_line(good.stderr)}", "real flowers still accepted")
        problems = mismatches([json.loads(line) for line in good.stdout.splitlines() if line.strip()])
        if problems:
            raise Fail(problems[0], "the golden predictions unchanged")


def check_01_3(folder: Path) -> None:
    """CSV on stdin (a header of the four feature names) gives the same predictions as JSON."""
    golden = golden_rows()
    names = list(golden[0])
    csv_text = ",".join(names) + "\n" + "".join(",".join(str(r[n]) for n in names) + "\n" for r in golden)
    with tempfile.TemporaryDirectory(prefix="ex-01.3-") as tmp:
        model = train(folder, Path(tmp) / "iris.joblib")
        result = model_cli(folder, "predict", "--model", str(model), stdin=csv_text)
        if result.returncode != 0:
            raise Fail(f"exit {result.returncode}: {last_line(result.stderr)}", f"{len(golden)} predictions from CSV")
        problems = mismatches([json.loads(line) for line in result.stdout.splitlines() if line.strip()])
        if problems:
            raise Fail(problems[0], "the golden predictions")
        swapped = csv_text.replace(str(golden[0][names[0]]), "abc", 1)
        bad = model_cli(folder, "predict", "--model", str(model), stdin=swapped)
        if bad.returncode != 2 or "Traceback" in bad.stderr or "error:" not in bad.stderr:
            raise Fail(
                f"exit {bad.returncode} for a CSV cell 'abc': {last_line(bad.stderr)}", "exit 2, one 'error:' line"
            )


# --- stage 02: the REST API (Flask's development server) ---------------------------------------


def check_02_1(folder: Path) -> None:
    """MAX_ROWS defaults to 100: 101 rows get a 413 naming the limit, 100 rows a 200."""
    with (
        tempfile.TemporaryDirectory(prefix="ex-02.1-") as tmp,
        serve(folder, "flask", train(folder, Path(tmp) / "iris.joblib")) as server,
    ):
        over = post(f"{server.url}/predict", rows(101))
        if over.status_code != 413:
            raise Fail(f"HTTP {over.status_code} for 101 rows (no MAX_ROWS set)", "413: the default limit is 100")
        if "100" not in error_of(over):
            raise Fail(f"the error {error_of(over)!r}", "a message naming the limit, 100")
        at = post(f"{server.url}/predict", rows(100))
        if at.status_code != 200:
            raise Fail(f"HTTP {at.status_code} for exactly 100 rows", "200: 100 rows are allowed")
        doc = get(f"{server.url}/openapi.json").json()
        limit = doc["components"]["schemas"]["PredictRequest"]["properties"]["instances"].get("maxItems")
        if limit != 100:
            raise Fail(f"openapi.json saying maxItems {limit}", "the document to say 100 too")


def check_02_2(folder: Path) -> None:
    """GET /v2/models/iris/versions/<v>: 200 for the loaded version, a JSON 404 for any other."""
    with (
        tempfile.TemporaryDirectory(prefix="ex-02.2-") as tmp,
        serve(folder, "flask", train(folder, Path(tmp) / "iris.joblib")) as server,
    ):
        found = get(f"{server.url}/v2/models/iris/versions/1")
        if found.status_code != 200:
            raise Fail(f"HTTP {found.status_code} for /v2/models/iris/versions/1", "200 with the model metadata")
        body = found.json()
        if body.get("name") != "iris" or body.get("versions") != ["1"]:
            raise Fail(
                f"{json.dumps(body)[:120]}", 'the metadata of /v2/models/iris ("name": "iris", "versions": ["1"])'
            )
        for path in ("/v2/models/iris/versions/7", "/v2/models/rose/versions/1"):
            missing = get(server.url + path)
            if missing.status_code != 404 or "error" not in (missing.json() if missing.content else {}):
                raise Fail(f"HTTP {missing.status_code} for {path}", 'a 404 with {"error": "..."}')
        if "7" not in error_of(get(f"{server.url}/v2/models/iris/versions/7")):
            raise Fail("a 404 that does not name version 7", "an error message naming the version asked for")


def check_02_3(folder: Path) -> None:
    """X-Request-ID: echoed when sane, generated when missing or unsafe, on errors too."""
    with (
        tempfile.TemporaryDirectory(prefix="ex-02.3-") as tmp,
        serve(folder, "flask", train(folder, Path(tmp) / "iris.joblib")) as server,
    ):
        url = f"{server.url}/predict"
        echoed = post(url, rows(1), headers={"X-Request-ID": "workshop-42"}).headers.get("X-Request-ID")
        if echoed != "workshop-42":
            raise Fail(f"X-Request-ID {echoed!r} in the answer", "the caller's id echoed: 'workshop-42'")
        first, second = (post(url, rows(1)).headers.get("X-Request-ID") for _ in range(2))
        if not first or first == second:
            raise Fail(f"generated ids {first!r} and {second!r}", "a new, different id for each request without one")
        error = post(url, {"instances": "nope"}, headers={"X-Request-ID": "bad-request-1"})
        if error.status_code != 400 or error.headers.get("X-Request-ID") != "bad-request-1":
            raise Fail(f"HTTP {error.status_code} with id {error.headers.get('X-Request-ID')!r}", "400 echoing the id")
        hostile = "x" * 200
        sent_back = post(url, rows(1), headers={"X-Request-ID": hostile}).headers.get("X-Request-ID", "")
        if sent_back == hostile or not sent_back:
            raise Fail("a 200-character id echoed (or none)", "ids longer than 64 characters replaced by a new one")


# --- stage 03: gunicorn ------------------------------------------------------------------------


def check_03_1(folder: Path) -> None:
    """Question: after kill -9 of a worker, does the master change, and who starts the new worker?"""
    given = answers(folder, "03.1", ("master_pid_changes", "who_restarts"))
    with (
        tempfile.TemporaryDirectory(prefix="ex-03.1-") as tmp,
        serve(folder, "gunicorn", train(folder, Path(tmp) / "iris.joblib"), env={"WEB_CONCURRENCY": "2"}) as server,
    ):
        master = server.proc.pid
        if not wait_until(lambda: len(server.workers()) == 2, 20):
            raise Fail(f"{len(server.workers())} workers with WEB_CONCURRENCY=2", "2 workers")
        victim = server.workers()[0]
        os.kill(victim, signal.SIGKILL)
        replaced = wait_until(lambda: len(server.workers()) == 2 and victim not in server.workers(), 30)
        truth_changes = server.proc.poll() is not None
        truth_who = "master" if replaced and server.proc.pid == master else "nobody"
    if given["master_pid_changes"] is not truth_changes:
        raise Fail(f"master_pid_changes = {given['master_pid_changes']!r}", "what `pgrep -af gunicorn` shows")
    if str(given["who_restarts"]).strip().lower() != truth_who:
        raise Fail(f"who_restarts = {given['who_restarts']!r}", "the process that forked the new worker")


def check_03_2(folder: Path) -> None:
    """preload_app on by default: after a new model is installed, HUP keeps serving the old version."""
    with tempfile.TemporaryDirectory(prefix="ex-03.2-") as tmp:
        served = train(folder, Path(tmp) / "served" / "iris.joblib")
        v2 = train(folder, Path(tmp) / "v2" / "iris.joblib", version="2", c=0.05)
        with serve(folder, "gunicorn", served, env={"WEB_CONCURRENCY": "2"}) as server:
            before = post(f"{server.url}/predict", rows(1)).json().get("model_version")
            old = set(server.workers())
            installed = model_cli(folder, "install", str(v2), "--model", str(served))
            if installed.returncode != 0:
                raise Fail(f"`model.py install` failing: {last_line(installed.stderr)}", "version 2 installed")
            os.kill(server.proc.pid, signal.SIGHUP)
            if not wait_until(lambda: len(server.workers()) == 2 and not old & set(server.workers()), 30):
                raise Fail(f"workers {server.workers()} 30 s after HUP (before: {sorted(old)})", "2 new workers")
            # New workers without preload load the model first (seconds on a busy machine): wait for them.
            url = f"{server.url}/predict"
            versions = {post(url, rows(1), timeout=45).json().get("model_version") for _ in range(8)}
    if before != "1" or versions != {"1"}:
        raise Fail(
            f"model version {before} before HUP and {sorted(versions)} after",
            "version 1 before and after: with preload_app the workers fork from the master's copy",
        )


def check_03_3(folder: Path) -> None:
    """Measurement: requests/s at 1, 2 and 4 workers, where it stops helping and why."""
    given = answers(folder, "03.3", ("rps", "stops_helping_at", "limited_by"))
    rps = given["rps"]
    try:
        figures = {n: float(rps[str(n)]) for n in (1, 2, 4)}
    except (KeyError, TypeError, ValueError):
        raise Fail(f"rps = {rps!r}", "a table like rps = {1 = 540, 2 = 1000, 4 = 1010}") from None
    if min(figures.values()) <= 0:
        raise Fail(f"rps = {rps!r}", "positive requests/s measured with wrk")
    # Stops helping: the first worker count whose doubling multiplies requests/s by less than HELPS.
    expected = next((n for n, m in ((1, 2), (2, 4)) if figures[m] < figures[n] * HELPS), 4)
    if given["stops_helping_at"] != expected:
        raise Fail(
            f"stops_helping_at = {given['stops_helping_at']!r} with your figures {figures}",
            f"{expected}: the first count whose doubling adds less than 15 %",
        )
    if str(given["limited_by"]).strip().lower() != "cpus":
        raise Fail(f"limited_by = {given['limited_by']!r}", "what runs out (one of: cpus, memory, network); see nproc")
    # The setting you recommend must really start that many workers from your gunicorn.conf.py.
    count = expected
    with (
        tempfile.TemporaryDirectory(prefix="ex-03.3-") as tmp,
        serve(
            folder, "gunicorn", train(folder, Path(tmp) / "iris.joblib"), env={"WEB_CONCURRENCY": str(count)}
        ) as server,
    ):
        if not wait_until(lambda: len(server.workers()) == count, 20):
            raise Fail(f"{len(server.workers())} workers with WEB_CONCURRENCY={count}", f"{count} workers")


# --- stage 04: the container -------------------------------------------------------------------


def need_docker() -> None:
    """CannotCheck unless a Docker engine answers and the base image is there."""
    available, reason = docker_available()
    if not available:
        raise CannotCheck(f"needs Docker: {reason}")
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        raise CannotCheck(f"needs the base image {BASE_IMAGE}: run `make base-image` once")


@contextlib.contextmanager
def built_image(folder: Path, exercise: str) -> Iterator[str]:
    """``docker build`` of the folder under an ex- tag, removed afterwards (its layers stay cached)."""
    need_docker()
    tag = f"ex-iris-{exercise.replace('.', '-')}:{uuid.uuid4().hex[:8]}"
    try:
        result = docker("build", "--quiet", "--tag", tag, str(folder), timeout=900, check=False)
        if result.returncode != 0:
            raise Fail(f"docker build failing: {last_line(result.stderr or result.stdout)}", "the image to build")
        yield tag
    finally:
        docker("rmi", "--force", tag, check=False)


def in_image(tag: str, *command: str) -> subprocess.CompletedProcess:
    """Run one command in a throwaway container of the image."""
    return docker("run", "--rm", "--entrypoint", command[0], tag, *command[1:], timeout=120, check=False)


@contextlib.contextmanager
def container(tag: str, *flags: str) -> Iterator[str]:
    """Run the image detached on a free loopback port; yield its base URL; remove it (and its volumes)."""
    name = f"ex-{uuid.uuid4().hex[:10]}"
    port = free_port()
    try:
        docker("run", "--detach", "--name", name, *flags, "--publish", f"{LOOPBACK}:{port}:8000", tag, timeout=60)
        url = f"http://{LOOPBACK}:{port}"

        def ready() -> bool:
            state = docker("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip()
            if state != "true":
                return True  # exited: reported below
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
            return False

        wait_until(ready, 60, interval=0.2)
        if docker("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip() != "true":
            logs = docker("logs", name, check=False)
            raise Fail(f"the container exited ({last_line(logs.stderr + logs.stdout)})", "it to keep serving")
        yield url
    finally:
        docker("rm", "--force", "--volumes", name, check=False)


def serves_golden(url: str) -> None:
    """The golden predictions from a running layer, or a Fail naming the first difference."""
    response = post(f"{url}/predict", {"instances": golden_rows()})
    if response.status_code != 200:
        raise Fail(f"HTTP {response.status_code} for the golden inputs ({error_of(response)})", "200")
    problems = mismatches(response.json()["predictions"])
    if problems:
        raise Fail(problems[0], "the golden predictions")


def check_04_1(folder: Path) -> None:
    """Question: which user runs the server in the image, and who owns /app?"""
    given = answers(folder, "04.1", ("uid", "app_owner"))
    with built_image(folder, "04.1") as tag:
        uid = in_image(tag, "id", "-u").stdout.strip()
        owner = in_image(tag, "stat", "-c", "%U", "/app").stdout.strip()
        if not uid or not owner:
            raise Fail("no answer from `id -u` or `stat` in the image", "a shell-less check to work")
        user = image_config(tag).get("User")
    if str(given["uid"]) != uid:
        raise Fail(
            f"uid = {given['uid']!r}", f"the user the image runs as (its USER is {user!r}; try docker exec ... id)"
        )
    if str(given["app_owner"]).strip() != owner:
        raise Fail(f"app_owner = {given['app_owner']!r}", "the owner of /app (ls -ld /app in the container)")


def check_04_2(folder: Path) -> None:
    """A smaller image: the virtual environment at most 250 MB, still serving the golden predictions."""
    with built_image(folder, "04.2") as tag:
        du = in_image(tag, "du", "-sm", "/opt/venv")
        if du.returncode != 0:
            raise Fail(f"`du -sm /opt/venv` failing: {last_line(du.stderr)}", "/opt/venv in the image")
        megabytes = int(du.stdout.split()[0])
        if megabytes > VENV_LIMIT_MB:
            raise Fail(
                f"/opt/venv of {megabytes} MB", f"at most {VENV_LIMIT_MB} MB (what does the runtime never need?)"
            )
        with container(tag) as url:
            serves_golden(url)


def check_04_3(folder: Path) -> None:
    """The image serves with `docker run --read-only` and no writable volume or tmpfs."""
    with built_image(folder, "04.3") as tag, container(tag, "--read-only") as url:
        serves_golden(url)


# --- stage 05: Kubernetes (runs against the cluster; restores what it changed) -----------------


def overlay() -> str:
    """The overlay `make stage-5` applies: kind where kind is installed (CLUSTER overrides), else local."""
    return os.environ.get("CLUSTER") or ("kind" if shutil.which("kind") else "local")


def render(folder: Path, images: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The folder's k8s overlay as kustomize renders it, each container's image set from ``images``.

    ``images`` maps container names to the images already deployed (server, and
    proxy, the nginx sidecar): the check never builds. An init container that
    uses the server's image (iris-serving) gets the deployed server image.
    """
    path = folder / "k8s" / overlay()
    if not path.is_dir():
        raise Fail(f"no {path}", "the stage-05 manifests")
    try:
        text = kubectl("kustomize", str(path), timeout=60)
    except LayerError as exc:
        raise Fail(f"kustomize failing: {last_line(str(exc))}", "the overlay to render") from None
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    for obj in objects if images else []:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            c["image"] = images.get(c["name"], c.get("image"))
        for c in spec.get("initContainers", []):
            if c.get("image", "").split("@")[0].rsplit(":", 1)[0].endswith("iris-serving") and "server" in images:
                c["image"] = images["server"]
    return objects


def deployed_images(deployment: dict[str, Any]) -> dict[str, str]:
    """Container name -> image of a Deployment as the cluster runs it."""
    return {c["name"]: c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}


def live(kind: str, name: str) -> dict[str, Any]:
    """One object of the namespace as the API server has it now."""
    return json.loads(kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json", timeout=30))


def rollout(timeout: int = 240) -> None:
    """Wait for the Deployment's rollout, bounded; a stuck rollout is a Fail."""
    try:
        kubectl(
            "rollout",
            "status",
            f"deployment/{DEPLOYMENT}",
            "-n",
            NAMESPACE,
            f"--timeout={timeout}s",
            timeout=timeout + 30,
        )
    except LayerError as exc:
        raise Fail(
            f"the rollout not finishing: {last_line(str(exc))}", f"a finished rollout within {timeout} s"
        ) from None


def require_cluster() -> None:
    """CannotCheck, with the reason, when no cluster answers."""
    reachable, reason = cluster_reachable()
    if not reachable:
        raise CannotCheck(f"needs a Kubernetes cluster: {reason}")


@contextlib.contextmanager
def applied(folder: Path, load: LoadRun | None = None) -> Iterator[dict[str, Any]]:
    """Apply the folder's manifests (with the image already deployed); put the cluster back afterwards.

    ``load``, when given, starts just before the apply and stops when the body
    ends, before the restore (whose own rollout is not the learner's).
    Restoring: the Deployment is rolled back to the revision it had, the HPA
    gets its spec back, and ConfigMaps created here are deleted.
    """
    require_cluster()
    try:
        deployment = live("deployment", DEPLOYMENT)
    except LayerError:
        raise Fail(
            f"no deployment/{DEPLOYMENT} in namespace {NAMESPACE}", "stage 05 deployed: run make stage-5"
        ) from None
    images = deployed_images(deployment)
    objects = render(folder, images)
    problems = validate(objects)
    if problems:
        raise Fail(f"an invalid manifest ({problems[0]})", "manifests the API server accepts")
    revision = deployment["metadata"]["annotations"].get("deployment.kubernetes.io/revision")
    hpa_spec = live("hpa", DEPLOYMENT)["spec"]
    configmaps = set(kubectl("get", "configmaps", "-n", NAMESPACE, "-o", "name").split())
    try:
        if load:
            load.__enter__()
        try:
            manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
            kubectl("apply", "-f", "-", stdin=manifest, timeout=60)
        except LayerError as exc:
            raise Fail(f"kubectl apply refusing your manifests: {last_line(str(exc))}", "them applied") from None
        try:
            yield {"images": images, "revision": revision, "objects": objects}
        finally:
            if load:
                load.__exit__(None, None, None)
    finally:
        now = live("deployment", DEPLOYMENT)["metadata"]["annotations"].get("deployment.kubernetes.io/revision")
        if revision and now != revision:
            kubectl(
                "rollout", "undo", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE, f"--to-revision={revision}", check=False
            )
            kubectl(
                "rollout",
                "status",
                f"deployment/{DEPLOYMENT}",
                "-n",
                NAMESPACE,
                "--timeout=240s",
                timeout=270,
                check=False,
            )
        if live("hpa", DEPLOYMENT)["spec"] != hpa_spec:
            patch = json.dumps({"spec": hpa_spec})
            kubectl("patch", "hpa", DEPLOYMENT, "-n", NAMESPACE, "--type=merge", "-p", patch, check=False)
        for extra in set(kubectl("get", "configmaps", "-n", NAMESPACE, "-o", "name").split()) - configmaps:
            kubectl("delete", "-n", NAMESPACE, extra, "--ignore-not-found", check=False)


def check_05_1(folder: Path) -> None:
    """A config change without a rebuild: MAX_ROWS=100 in server.env reaches the pods, same image."""
    require_cluster()
    configs = [o for o in render(folder) if o["kind"] == "ConfigMap" and "MAX_ROWS" in o.get("data", {})]
    values = ", ".join(c["data"]["MAX_ROWS"] for c in configs) or "nothing"
    if values != "100":  # no need to ask the cluster yet
        raise Fail(f"MAX_ROWS={values} in the ConfigMap of your k8s/", "MAX_ROWS=100 in server.env")
    with applied(folder) as state:
        rollout()
        images = deployed_images(live("deployment", DEPLOYMENT))
        if images != state["images"]:
            raise Fail(f"images {images}", f"the images already deployed, {state['images']}: no rebuild")
        statuses: list[int] = []

        def settled() -> bool:  # five 413s in a row: no old pod answers any more
            try:
                statuses.append(post(f"{CLUSTER_URL}/predict", rows(101)).status_code)
            except Fail:
                statuses.append(0)  # no answer: counts as not settled
            return statuses[-5:] == [413] * 5

        if not wait_until(settled, 60, interval=0.2):
            raise Fail(f"HTTP {statuses[-1]} for 101 rows through the Service", "413 from every pod: MAX_ROWS=100")
        if post(f"{CLUSTER_URL}/predict", rows(100)).status_code != 200:
            raise Fail("100 rows refused", "200 for 100 rows")


def check_05_2(folder: Path) -> None:
    """Model version 2 rolled out with no rebuild (an init container trains it) and zero failed requests."""
    load = LoadRun(CLUSTER_URL, clients=2, max_seconds=300, max_requests=200_000)
    with applied(folder, load=load):
        rollout(240)
        # The last old pod keeps serving through its preStop sleep (5 s): its requests count too.
        time.sleep(8)
        versions = {post(f"{CLUSTER_URL}/predict", rows(1)).json().get("model_version") for _ in range(10)}
    report = load.report
    if report.failed:
        raise Fail(f"{report.failed} of {report.total} requests failing in the rollout ({report.failure_kinds()})", "0")
    if versions != {"2"}:
        raise Fail(f"model versions {sorted(versions)} after the rollout", "every pod answering version 2")


def check_05_3(folder: Path) -> None:
    """The HPA scales on memory as well as CPU, and reads a current value for both."""
    objects = render(folder)
    hpa = next((o for o in objects if o["kind"] == "HorizontalPodAutoscaler"), None)
    metrics = {m.get("resource", {}).get("name") for m in (hpa or {}).get("spec", {}).get("metrics", [])}
    if metrics != {"cpu", "memory"}:
        raise Fail(f"the HPA in your k8s/ scaling on {sorted(m for m in metrics if m)}", "cpu and memory")
    with applied(folder):
        rollout()
        current: dict[str, Any] = {}

        def measured() -> bool:
            status = live("hpa", DEPLOYMENT).get("status", {})
            current.update(status)
            names = {m.get("resource", {}).get("name") for m in status.get("currentMetrics") or []}
            return {"cpu", "memory"} <= names

        if not wait_until(measured, 120, interval=3):
            raise Fail(
                f"the HPA's current metrics {current.get('currentMetrics')} after 120 s",
                "a current value for cpu and memory (is metrics-server running? kubectl top pods)",
            )
        if current.get("desiredReplicas", 0) > 2:
            raise Fail(f"{current['desiredReplicas']} pods wanted at idle", "2: a memory target idle pods stay under")


EXERCISES = {
    e.id: e
    for e in (
        Exercise("01.1", "version 2 of the model: which class loses probability?", 10, "warm-up", "", True, check_01_1),
        Exercise("01.2", "a validation rule: no petal longer than its sepal", 15, "core", "", False, check_01_2),
        Exercise("01.3", "CSV rows on stdin, same predictions as JSON", 25, "stretch", "", False, check_01_3),
        Exercise("02.1", "a lower default row limit, with the right status code", 10, "warm-up", "", False, check_02_1),
        Exercise("02.2", "a V2 endpoint: /v2/models/iris/versions/<v>", 20, "core", "", False, check_02_2),
        Exercise("02.3", "X-Request-ID on every answer, errors included", 25, "stretch", "", False, check_02_3),
        Exercise("03.1", "kill -9 a worker: who brings it back?", 10, "warm-up", "", True, check_03_1),
        Exercise("03.2", "preload_app: HUP now keeps the old model", 20, "core", "", False, check_03_2),
        Exercise("03.3", "tune workers: where does adding one stop helping?", 25, "stretch", "", True, check_03_3),
        Exercise("04.1", "who runs the server, and who owns /app?", 10, "warm-up", "docker", True, check_04_1),
        Exercise("04.2", "a smaller image: the venv under 250 MB", 20, "core", "docker", False, check_04_2),
        Exercise("04.3", "docker run --read-only, and nothing else", 20, "stretch", "docker", False, check_04_3),
        Exercise("05.1", "a config change without a rebuild", 15, "warm-up", "cluster", False, check_05_1),
        Exercise(
            "05.2", "model version 2 rolled out with zero failed requests", 30, "core", "cluster", False, check_05_2
        ),
        Exercise("05.3", "an HPA that scales on memory too", 25, "stretch", "cluster", False, check_05_3),
    )
}


# --- the figures of EXERCISES.md and FACILITATORS.md, rendered from the catalogue ----------------

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
        ("Stage 05 on the projector: `make stage-5`, delete a pod under load, 05.1 live", 30),
        ("The scorecard (`notebooks/00_scorecard.ipynb`): what each layer bought and cost", 20),
    ],
    "full_day": [
        ("Welcome, `make setup`, `make tour`", 20),
        ("Stage 01: README, `make stage-1`", 10),
        ("Stage 01 exercises", ("01.1", "01.2", "01.3")),
        ("Break", 15),
        ("Stage 02: README, `make stage-2`, `make diff A=1 B=2`", 15),
        ("Stage 02 exercises", ("02.1", "02.2", "02.3")),
        ("Stage 03: README, `make stage-3`, `make diff A=2 B=3`", 15),
        ("Lunch", 60),
        ("Stage 03 exercises", ("03.1", "03.2", "03.3")),
        ("Stage 04: README, `make stage-4`, `make diff A=3 B=4`", 15),
        ("Stage 04 exercises", ("04.1", "04.2", "04.3")),
        ("Break", 15),
        ("Stage 05: README, `make stage-5`", 15),
        ("Stage 05 exercises", ("05.1", "05.2", "05.3")),
        ("The scorecard, wrap-up", 20),
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
    """``text`` with every figures block (exercise meta lines, agendas) rendered from this module."""
    blocks = {f"ex{e.id.replace('.', '_')}": meta_line(e) for e in EXERCISES.values()}
    blocks.update({f"agenda_{name}": agenda_table(name) for name in AGENDAS})
    for name, body in blocks.items():
        start, end = f"<!-- figures:{name} -->", f"<!-- /figures:{name} -->"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            text = f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"
    return text


def check(exercise_id: str, folder: Path | None = None) -> tuple[int, str]:
    """Run one check; return (exit code, the one line to print). Never raises."""
    exercise = EXERCISES.get(exercise_id)
    if exercise is None:
        return 2, f"FAIL {exercise_id or '(none)'}: no such exercise; expected one of {', '.join(EXERCISES)}"
    folder = (folder or STAGES[exercise.stage]).resolve()
    if not folder.is_dir():
        return 2, f"FAIL {exercise.id}: saw no folder {folder}; expected a copy of {STAGES[exercise.stage].name}"
    started = time.monotonic()
    try:
        exercise.check(folder)
    except Fail as exc:
        return 1, f"FAIL {exercise.id}: {' '.join(str(exc).split())}"
    except CannotCheck as exc:
        return 3, f"CANNOT CHECK {exercise.id}: {exc}"
    except Exception as exc:  # a check must never print a traceback at a learner
        return 1, f"FAIL {exercise.id}: the check stopped at {type(exc).__name__}: {last_line(str(exc))}"
    return 0, f"PASS {exercise.id} {exercise.title} ({time.monotonic() - started:.1f} s)"


def scratch_copy(exercise_id: str, solved: bool, parent: Path | None = None) -> Path:
    """A copy of the exercise's stage folder (without artifacts), its reference solution applied if ``solved``."""
    exercise = EXERCISES[exercise_id]
    stage = STAGES[exercise.stage]
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


def main(argv: list[str] | None = None) -> int:
    """Command line: check one exercise, apply a solution, or list them; always one line per answer."""
    parser = argparse.ArgumentParser(prog="exercises.check", description=__doc__.splitlines()[0])
    parser.add_argument("exercise", nargs="?", default="", help="an exercise id such as 03.2")
    parser.add_argument("--dir", type=Path, help="the folder to check (default: the stage folder itself)")
    parser.add_argument("--solve", action="store_true", help="apply the reference solution to a scratch copy")
    parser.add_argument("--list", action="store_true", help="list every exercise")
    parser.add_argument("--docs", action="store_true", help="rewrite the figures of EXERCISES.md, FACILITATORS.md")
    args = parser.parse_args(argv)
    if args.docs:
        for path in DOCS:
            path.write_text(render_docs(path.read_text()))
            print(f"rendered {path.name}")
        return 0
    if args.list:
        for e in EXERCISES.values():
            kind = "question" if e.question else "change"
            print(f"{e.id}  {e.minutes:3d} min  {e.level:8s} {kind:8s} {e.needs or '-':8s} {e.title}")
        return 0
    if args.solve:
        if args.exercise not in EXERCISES:
            print(f"FAIL {args.exercise or '(none)'}: no such exercise; expected one of {', '.join(EXERCISES)}")
            return 2
        try:
            folder = scratch_copy(args.exercise, solved=True)
        except Fail as exc:
            print(f"FAIL {args.exercise}: {exc}")
            return 1
        print(f"solution {args.exercise} applied in {folder}  (check it: make check EX={args.exercise} DIR={folder})")
        return 0
    code, line = check(args.exercise, args.dir)
    print(line)
    return code


if __name__ == "__main__":
    sys.exit(main())
