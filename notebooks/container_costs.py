"""Notebook 04's own measurements: image layers, timed builds, the Docker engine's processes.

Only notebooks/04_container.ipynb uses these, so they live beside it rather
than in the shared harness.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from harness.container import Container
from harness.container import docker


def image_layers(tag: str) -> list[dict[str, Any]]:
    """The image's layers, oldest first: id, the instruction that made it, its size in bytes.

    A registry push or pull moves only the layers the other side lacks, so
    the sizes say what shipping an edit costs. ENV, CMD and the like add 0 bytes.
    """
    out = docker("history", "--human=false", "--no-trunc", "--format", "{{json .}}", tag).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [
        {"id": r["ID"], "created_by": r["CreatedBy"], "bytes": int(r["Size"]), "comment": r["Comment"]}
        for r in reversed(rows)
    ]


def dangling_images() -> set[str]:
    """IDs of untagged images (a multi-stage build leaves its builder stage as one)."""
    return set(docker("images", "--quiet", "--no-trunc", "--filter", "dangling=true").stdout.split())


def timed_build(context: Path, tag: str, no_cache: bool = False, timeout: float = 900) -> dict[str, Any]:
    """``docker build`` of ``context`` into ``tag``, timed: seconds, steps, steps served from the cache.

    ``no_cache`` is a cold build (every step runs: wheels downloaded and
    installed, model trained). ``left_behind`` lists the untagged images the
    build created (its builder stage): remove them and ``tag`` with
    ``remove_images`` when the build was only a measurement.
    """
    before = dangling_images()
    started = time.monotonic()
    out = docker("build", "--tag", tag, *(["--no-cache"] if no_cache else []), str(context), timeout=timeout).stdout
    seconds = time.monotonic() - started
    return {
        "seconds": round(seconds, 2),
        "steps": len(re.findall(r"^Step \d+/\d+ :", out, re.MULTILINE)),
        "cached_steps": out.count("---> Using cache"),
        "left_behind": sorted(dangling_images() - before),
    }


def remove_images(*refs: str) -> None:
    """``docker rmi`` each tag or ID given (only ones you created); a missing one is no error."""
    for ref in refs:
        docker("rmi", ref, check=False)


def engine_pids() -> dict[str, list[int]]:
    """Host PIDs of the Docker engine's daemons, by name (dockerd, containerd): the engine's own cost."""
    found: dict[str, list[int]] = {"dockerd": [], "containerd": []}
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:  # the process ended during the scan
            continue
        if name in found:
            found[name].append(int(comm.parent.name))
    return found


def engine_side_pids(layer: Container) -> list[int]:
    """Host PIDs working for this container outside it: its containerd-shim, dockerd and containerd.

    Every line the server writes (an access log line per request) travels
    through the shim to dockerd, which stores it for `docker logs`; their
    CPU under load is what the engine costs per request. (dockerd and
    containerd also serve any other container running at the time.)
    """
    shim = int(Path(f"/proc/{layer.pid1()}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return [shim, *(pid for pids in engine_pids().values() for pid in pids)]


def proxy_pids(layer: Container) -> list[int]:
    """Host PIDs of the docker-proxy processes forwarding this container's published port.

    With ``network="publish"`` every connection to 127.0.0.1:port is
    accepted by docker-proxy, which copies the bytes to the container and
    back in user space; with ``network="host"`` there is none.
    """
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args[0].endswith(b"docker-proxy") and b"-host-port" in args:
            if args[args.index(b"-host-port") + 1] == str(layer.port).encode():
                pids.append(int(cmdline.parent.name))
    return pids
