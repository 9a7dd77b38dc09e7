"""Stage 04's checks: an image built from the folder (harness.container.build_image), asked or run as a Container."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from exercises.common import CannotCheck
from exercises.common import Fail
from exercises.common import answers
from exercises.common import crash_answers
from exercises.common import error_of
from exercises.common import golden_rows
from exercises.common import last_line
from exercises.common import post
from exercises.common import serving
from harness.container import BASE_IMAGE
from harness.container import Container
from harness.container import build_image
from harness.container import docker
from harness.container import image_config
from harness.container import image_exists
from harness.core import LayerError
from harness.golden import mismatches

VENV_LIMIT_MB = 250  # 04.2: /opt/venv in the image at most this big


class Once(Container):
    """The image run with no restart policy: a container that exits stays down, so a start that fails
    is reported at once rather than after the layer's whole start timeout of restarts."""

    restart_policy = "no"


@contextlib.contextmanager
def built_image(folder: Path, exercise: str) -> Iterator[str]:
    """The folder's image under a tag of its own, never a stage's; removed afterwards, its layers stay cached."""
    available, reason = Container.available()
    if not available:
        raise CannotCheck(f"needs Docker: {reason}")
    if not image_exists(BASE_IMAGE):
        raise CannotCheck(f"needs the base image {BASE_IMAGE}: run `make base-image` once")
    tag = f"ex-iris-{exercise.replace('.', '-')}:{uuid.uuid4().hex[:8]}"
    try:
        build_image(tag, folder)
    except LayerError as exc:
        raise Fail(f"docker build failing: {last_line(str(exc))}", "the image to build") from None
    try:
        yield tag
    finally:
        docker("rmi", "--force", tag, check=False)


def in_image(tag: str, *command: str) -> subprocess.CompletedProcess:
    """Run one command in a throwaway container of the image."""
    return docker("run", "--rm", "--entrypoint", command[0], tag, *command[1:], timeout=120, check=False)


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
    """A smaller image: the virtual environment at most VENV_LIMIT_MB, still serving the golden predictions."""
    with built_image(folder, "04.2") as tag:
        du = in_image(tag, "du", "-sm", "/opt/venv")
        if du.returncode != 0:
            raise Fail(f"`du -sm /opt/venv` failing: {last_line(du.stderr)}", "/opt/venv in the image")
        megabytes = int(du.stdout.split()[0])
        if megabytes > VENV_LIMIT_MB:
            raise Fail(
                f"/opt/venv of {megabytes} MB", f"at most {VENV_LIMIT_MB} MB (what does the runtime never need?)"
            )
        with serving(Once(image=tag, folder=folder)) as server:
            serves_golden(server.base_url)


def check_04_4(folder: Path) -> None:
    """The image serves with `docker run --read-only` and no writable volume or tmpfs."""
    with (
        built_image(folder, "04.4") as tag,
        serving(Once(image=tag, run_args=("--read-only",), folder=folder)) as server,
    ):
        serves_golden(server.base_url)


def check_04_3(folder: Path) -> None:
    """Question: the container's PID 1 killed under load: do requests fail, and does the restart policy bring the
    server back by itself? The folder's image under `docker run --restart on-failure` (needs root: the kill
    is of a host process, as in the 04 README)."""
    with built_image(folder, "04.3") as tag:
        crash_answers(folder, "04.3", Container(image=tag, folder=folder))  # the model baked into the image
