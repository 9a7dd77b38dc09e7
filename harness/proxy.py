"""The buffering proxy (nginx, 03_wsgi/nginx.conf) in front of stages 03 and 04, behind the Layer interface.

``GunicornBehindNginx`` is `make stage-3 PROXY=1`: scripts/stage3_proxy.sh
starts gunicorn on a unix socket and nginx on the layer's port.
``ProxiedContainer`` is `make stage-4`: the server's container and the proxy's
container on one user-defined Docker network, only the proxy published.
Stage 05 runs the same proxy image as a sidecar (05_kubernetes/k8s/base).

    python -m harness.proxy tag     # the proxy image's tag for the current files
    python -m harness.proxy image   # build (or reuse) the proxy image, print its tag
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

from harness.container import Container
from harness.container import build
from harness.container import build_image
from harness.container import content_tag
from harness.container import docker
from harness.container import print_built
from harness.core import BIN
from harness.core import LOOPBACK
from harness.core import ROOT
from harness.core import LayerError
from harness.core import children
from harness.core import descendants
from harness.core import wait_until
from harness.local import Adopted
from harness.local import Gunicorn
from harness.local import pid_in

PROXY_SCRIPT = ROOT / "scripts" / "stage3_proxy.sh"
PROXY_IMAGE_NAME = "iris-proxy"
PROXY_DOCKERFILE = "proxy.Dockerfile"
# What the proxy image is built from (in 04_container/): its tag is a hash of these.
PROXY_INPUTS = (PROXY_DOCKERFILE, ".dockerignore", "nginx.conf")
PROXY_PORT = 8080  # where nginx listens inside its container (NGINX_LISTEN in proxy.Dockerfile)


class GunicornBehindNginx(Gunicorn):
    """Stage 03 with PROXY=1: nginx on the layer's port, gunicorn behind it on a unix socket."""

    name = "03 gunicorn + nginx"
    behind_proxy = True
    path = "nginx"

    def command(self) -> list[str]:
        return ["bash", str(PROXY_SCRIPT)]

    def env(self) -> dict[str, str]:
        return {**super().env(), "GUNICORN": str(BIN / "gunicorn")}

    def master(self) -> int:
        """gunicorn's master PID (from its PIDFILE: the script started it, and a binary upgrade replaces it)."""
        if not wait_until(lambda: pid_in(self.pidfile), 10):
            raise LayerError(f"{self.name}: gunicorn wrote no PID to {self.pidfile}")
        return pid_in(self.pidfile)

    def adopt(self, new: Adopted) -> None:
        """Nothing to follow: the script follows the PID file, ``master`` reads it."""

    def serving_pids(self) -> list[int]:
        """gunicorn (master, workers) and nginx (master, workers); not the script that started them."""
        return descendants(self.proc.pid)


def proxy_image_tag() -> str:
    """iris-proxy:<a hash of the files the proxy image is built from>."""
    return content_tag(PROXY_IMAGE_NAME, PROXY_INPUTS)


def build_proxy_image(tag: str | None = None, timeout: float = 600) -> str:
    """Build the proxy image from 04_container/proxy.Dockerfile (once per content hash); return its tag."""
    return build(tag or proxy_image_tag(), dockerfile=PROXY_DOCKERFILE, timeout=timeout)


class ProxiedContainer(Container):
    """Stage 04 as `make stage-4` runs it: the server container and the nginx container on one network.

    Only the proxy's port is published (on 127.0.0.1); the server is reachable
    from the proxy as ``app``. ``crash`` kills the server's PID 1, as for
    ``Container``; ``upgrade`` replaces the pair.
    """

    name = "04 container + nginx"
    path = "nginx, published port"
    behind_proxy = True

    def __init__(self, *args, proxy_image: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.proxy_image = proxy_image
        self.net: str | None = None
        self.proxy: str | None = None

    def network_args(self) -> list[str]:
        """The server's container: on the pair's network as ``app``, not published."""
        return ["--network", self.net, "--network-alias", "app"]

    def proxy_command(self) -> list[str]:
        return ["run", "--detach", "--name", self.proxy, "--restart", self.restart_policy, "--network", self.net,
                "--publish", f"{LOOPBACK}:{self.port}:{PROXY_PORT}", "--read-only", "--tmpfs", "/tmp",
                self.proxy_image]  # fmt: skip

    def launch(self) -> None:
        """The network, the server's container on it, then the proxy's, published."""
        self.image = self.image or build_image(folder=self.folder)
        self.proxy_image = self.proxy_image or build_proxy_image()
        suffix = uuid.uuid4().hex[:12]
        self.container, self.proxy, self.net = f"iris-test-{suffix}", f"iris-test-{suffix}-proxy", f"iris-test-{suffix}"
        docker("network", "create", self.net)
        docker(*self.run_command())
        docker(*self.proxy_command())

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop the proxy (gracefully: its STOPSIGNAL is SIGQUIT), then the server; remove both and the network."""
        if self.proxy:
            docker("stop", "--time", str(int(timeout)), self.proxy, timeout=timeout + 30, check=False)
            docker("rm", "--force", self.proxy, check=False)
            self.proxy = None
        code = super().stop(timeout)
        if self.net:
            docker("network", "rm", self.net, check=False)
            self.net = None
        return code

    def log(self) -> str:
        server = super().log() if self.container else ""
        proxy = docker("logs", self.proxy, check=False) if self.proxy else None
        return server + (proxy.stdout + proxy.stderr if proxy else "")  # both JSON lines (logs.py, nginx.conf)

    def upgrade(self, new_model: Path) -> str:
        """Replace both containers, the server with ``new_model`` (downtime in between, as for ``Container``)."""
        self.stop()
        self.model_path = Path(new_model)
        self.start()
        return "make stage-4-down && make stage-4 (both containers replaced, the new model mounted)"

    def proxy_pids(self) -> list[int]:
        """The nginx processes (its container's PID 1 and workers)."""
        pid = json_state(self.proxy)["Pid"]
        return [pid, *children(pid)] if pid else []


def json_state(name: str) -> dict:
    """`docker inspect`'s State of container ``name``."""
    return json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)


def main(argv: list[str] | None = None) -> int:
    """Command line: tag | image."""
    parser = argparse.ArgumentParser(prog="python -m harness.proxy", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("tag", help="the proxy image's tag for the current files")
    commands.add_parser("image", help="build (or reuse) the proxy image, print its tag")
    args = parser.parse_args(argv)
    if args.command == "tag":
        print(proxy_image_tag())
        return 0
    return print_built(build_proxy_image, "the proxy image")


if __name__ == "__main__":
    sys.exit(main())
