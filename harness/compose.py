"""Stage 04 as `make stage-4` runs it: 04_container/compose.yaml, with Docker Compose, behind the Layer interface.

The stack is the file a reader runs, under a project name of its own (several
can run at once) and with a small override file beside it: the images the
harness built (content-tagged, so an unchanged stage is never rebuilt), the
test's model mounted read-only, its settings, and no fixed container names (a
scaled service needs them gone). Everything else (the restart policy, the
healthcheck, the hardening, nginx in front) is compose.yaml's own.

    python -m harness.compose check     # is `docker compose` (v2) installed and answering? (one line)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from harness.container import MODEL_DIR
from harness.container import build_image
from harness.container import docker
from harness.container import docker_available
from harness.core import LOOPBACK
from harness.core import ROOT
from harness.core import STAGES
from harness.core import LayerError
from harness.core import wait_until
from harness.proxy import ProxiedContainer
from harness.proxy import build_proxy_image

COMPOSE_FILE = STAGES[4] / "compose.yaml"
COMPOSE_SCRIPT = ROOT / "scripts" / "compose.sh"


def compose_available() -> tuple[bool, str]:
    """Whether a Docker engine answers and `docker compose` is Compose v2; the reason in one line either way."""
    ok, why = docker_available()
    if not ok:
        return ok, why
    check = subprocess.run(["bash", str(COMPOSE_SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    line = (check.stdout + check.stderr).strip().splitlines()
    return check.returncode == 0, line[-1] if line else "scripts/compose.sh --check said nothing"


class ComposeStack(ProxiedContainer):
    """Stage 04 with Docker Compose: compose.yaml's two services, only nginx published (on 127.0.0.1).

    ``crash`` kills the server container's PID 1 (its restart policy, unless-stopped,
    restarts it); ``upgrade`` and ``release`` change the override and run `docker
    compose up --detach`, which recreates what changed; ``scale`` runs more
    server containers behind the same nginx.
    """

    name = "04 Compose"
    upgrade_mechanism = "docker compose up --detach: the server's container recreated with the new model"
    release_mechanism = "docker compose up --detach with the new model or setting: the container recreated, unchecked"
    restart_policy = "unless-stopped"
    configuration = ("compose.yaml",)
    concepts = (
        "image", "container", "service", "project", "network (a service's name resolves)", "published port",
        "restart policy", "healthcheck", "depends_on condition", "environment", "volume and tmpfs",
        "read-only root, dropped capabilities, no new privileges",
    )  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.project: str | None = None
        self.workdir: Path | None = None
        self.replicas = 1

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return compose_available()

    # --- the stack ------------------------------------------------------------------
    def override(self) -> str:
        """The override file's text: the images, the model, the settings; no fixed names (`!reset`)."""
        environment = dict(self.extra_env)
        lines = ["services:", "  app:", f"    image: {json.dumps(self.image)}", "    container_name: !reset null"]
        if self.model_path:
            model = self.model_path.resolve()
            # the two files, not their directory: pytest's temp dirs are private to root, the server is 10001
            lines.append("    volumes:")
            for path in (model, model.with_suffix(".json")):
                lines.append(f"      - {json.dumps(f'{path}:{MODEL_DIR}/{path.name}:ro')}")
            environment["MODEL_PATH"] = f"{MODEL_DIR}/{model.name}"
        if environment:
            lines.append("    environment:")
            lines += [f"      {key}: {json.dumps(str(value))}" for key, value in environment.items()]
        lines += ["  proxy:", f"    image: {json.dumps(self.proxy_image)}", "    container_name: !reset null", ""]
        return "\n".join(lines)

    def compose(self, *args: str, timeout: float = 180) -> str:
        """`docker compose` on compose.yaml and this stack's override, as its project; its output or LayerError."""
        (self.workdir / "override.yaml").write_text(self.override())
        command = ["docker", "compose", "--project-name", self.project, "--file", str(COMPOSE_FILE),
                   "--file", str(self.workdir / "override.yaml"), *args]  # fmt: skip
        env = {**os.environ, "HOST": LOOPBACK, "PORT": str(self.port)}
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise LayerError(f"docker compose {args[0]} did not finish within {timeout:.0f} s") from None
        if result.returncode != 0:
            raise LayerError(f"docker compose {' '.join(args[:2])} failed: {(result.stderr or result.stdout)[-2000:]}")
        return result.stdout

    def containers(self, service: str = "app") -> list[str]:
        """The names of ``service``'s containers, running or restarting, in the order of their number."""
        out = self.compose("ps", "--all", "--format", "json", service)
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [r["Name"] for r in sorted(rows, key=lambda r: r.get("Name", "")) if r.get("State") != "exited"]

    def up(self, *extra: str) -> str:
        """`docker compose up --detach` with what the override says now; the command as a reader types it."""
        self.compose("up", "--detach", "--no-build", "--scale", f"app={self.replicas}", *extra, timeout=300)
        names = self.containers("app")
        self.container, self.proxy = names[0], self.containers("proxy")[0]
        return f"docker compose up --detach{' ' + ' '.join(extra) if extra else ''}"

    def launch(self) -> None:
        """The images (built once per content), then the stack; ``start`` waits until it answers."""
        self.image = self.image or build_image(folder=self.folder)
        self.proxy_image = self.proxy_image or build_proxy_image()
        if self.project is None:
            self.project = f"iris-test-{uuid.uuid4().hex[:12]}"
            self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.project}-"))
        self.up()

    def stop(self, timeout: float = 30.0) -> int | None:
        """`docker compose down`: both services stopped gracefully and removed, with their network."""
        if self.project is None:
            return self.exit_code
        try:
            if self.container:
                result = docker("inspect", "--format", "{{.State.ExitCode}}", self.container, check=False)
                self.exit_code = int(result.stdout) if result.returncode == 0 else self.exit_code
            self.compose("down", "--timeout", str(int(timeout)), timeout=timeout + 60)
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.project = self.workdir = self.container = self.proxy = None
            self.replicas = 1
        return self.exit_code

    # --- changes, as a Compose user makes them -------------------------------------
    def upgrade(self, new_model: Path) -> str:
        """The new model in the override, `docker compose up --detach`: Compose recreates the server's container."""
        self.model_path = Path(new_model)
        return f"(compose.yaml: the new model mounted) {self.up()}"

    def release(self, model: Path | None = None, settings: dict[str, str] | None = None) -> str:
        self.previous = (self.model_path, dict(self.extra_env))
        self.model_path = Path(model) if model else self.model_path
        self.extra_env.update(settings or {})
        changes = [f"{k}={v}" for k, v in (settings or {}).items()] + (["the new model mounted"] if model else [])
        return f"(compose.yaml: {', '.join(changes)}) {self.up()}"

    def rollback(self) -> str:
        if self.previous is None:
            return ""
        (self.model_path, self.extra_env), self.previous = self.previous, None
        return f"(compose.yaml as before) {self.up()}"

    def scale(self, replicas: int | None) -> str:
        """Run ``replicas`` server containers (`--scale app=N`; None: one): new ones start beside the others."""
        self.replicas = replicas or 1
        return self.up("--no-recreate")

    def serving_instances(self) -> list[str]:
        """The server containers running now."""
        return self.containers("app")

    def instance_log(self, instance: str) -> str:
        """What one server container wrote so far."""
        result = docker("logs", instance, check=False)
        return result.stdout + result.stderr

    def wait_healthy(self, timeout: float = 120) -> bool:
        """Whether every server container reports healthy within ``timeout`` s (what `up --wait` waits for)."""

        def healthy() -> bool:
            states = [json_health(name) for name in self.containers("app")]
            return len(states) >= self.replicas and all(s == "healthy" for s in states)

        return wait_until(healthy, timeout, interval=0.5)


def json_health(name: str) -> str:
    """A container's health as `docker ps` shows it ("starting", "healthy", "unhealthy"; "" without a check)."""
    out = docker("inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", name, check=False)
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """Command line: check."""
    del argv
    ok, why = compose_available()
    print(why if ok else f"error: {why}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
