"""What each way to serve costs beyond speed, and which versions of the peers were measured.

Lines a reader writes for the same API, the distributions it needs and their
installed size, each read in the venv that serves it (bench/deps.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench.servers import PEERS
from bench.servers import PEERS_BIN
from harness.core import BIN
from harness.core import ROOT
from harness.core import STAGES

DEPS = ROOT / "bench" / "deps.py"
#: the packages of the peers whose versions every run records (the stages' are in harness.scorecard.environment)
PEER_PACKAGES = ("fastapi", "uvicorn", "httptools", "uvloop", "pydantic", "starlette", "mlserver", "mlserver-sklearn",
                 "py-spy")  # fmt: skip


def deps(python: Path, *names: str) -> dict[str, Any]:
    """Versions of ``names``, the distributions they need and their installed size, in ``python``'s venv."""
    out = subprocess.run([str(python), str(DEPS), *names], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout)


def peer_versions() -> dict[str, str]:
    """The versions of the peers' packages in their venv."""
    return deps(PEERS_BIN / "python", *PEER_PACKAGES)["versions"]


def loc(*paths: Path) -> int:
    """Lines a reader writes: not blank, not a comment. Docstrings count (they are code in the file)."""
    lines = [line.strip() for p in paths for line in p.read_text().splitlines()]
    return sum(1 for line in lines if line and not line.startswith("#"))


def costs() -> dict[str, Any]:
    """Lines of code for the same API, dependencies and installed size of each way to serve."""
    ours = (STAGES[2] / "app.py", STAGES[3] / "gunicorn.conf.py")
    mlserver = (PEERS / "mlserver" / "model-settings.json", PEERS / "mlserver" / "settings.json")
    found = {
        "Flask + gunicorn (stages 02-03)": {
            "files": ours,
            "api": "/predict, V2 health, metadata and infer, /openapi.json (written by hand), JSON errors",
            **deps(BIN / "python", "flask", "gunicorn", "scikit-learn"),
        },
        "FastAPI + uvicorn": {
            "files": (PEERS / "fastapi_app.py",),
            "api": "/predict, V2 ready and infer, JSON errors; /openapi.json and /docs generated from the types",
            **deps(PEERS_BIN / "python", "fastapi", "uvicorn", "httptools", "uvloop", "scikit-learn"),
        },
        "MLServer": {
            "files": mlserver,
            "api": "the whole V2 protocol over REST and gRPC, metrics; no /predict",
            **deps(PEERS_BIN / "python", "mlserver", "mlserver-sklearn"),
        },
    }
    for entry in found.values():
        entry["lines"] = loc(*entry["files"])
        entry["files"] = [str(p.relative_to(ROOT)) for p in entry["files"]]
    return found
