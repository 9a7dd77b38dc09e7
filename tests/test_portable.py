"""The stages run where learners are: every stage file imports on a Python without Linux-only calls.

macOS has no ``os.sched_getaffinity`` (nor the other ``sched_*`` and Linux-only calls below), and
Python before 3.13 has no ``os.process_cpu_count``. Each stage is imported in a fresh interpreter
with those removed from ``os``, as a macOS laptop with Python 3.11 or 3.12 would see it.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys

import pytest

from harness import core
from harness.layers import STAGES

# In os on Linux, absent on macOS (the docs mark them "Availability: Linux"), plus the 3.13 addition.
LINUX_ONLY = (
    "sched_getaffinity",
    "sched_setaffinity",
    "sched_getscheduler",
    "sched_setscheduler",
    "sched_getparam",
    "sched_setparam",
    "sched_rr_get_interval",
    "memfd_create",
    "eventfd",
    "pidfd_open",
    "splice",
    "copy_file_range",
    "posix_fadvise",
    "posix_fallocate",
    "getxattr",
    "setxattr",
    "listxattr",
    "removexattr",
    "process_cpu_count",
)

# Runs in the stage's folder (on sys.path, as for any `python -c`): remove the calls, import every
# module, read gunicorn's settings.
IMPORT_ALL = """
import json, os, runpy, sys
from pathlib import Path
for name in sys.argv[1].split(","):
    if hasattr(os, name):
        delattr(os, name)
imported = []
for path in sorted(Path(".").glob("*.py")):
    if path.name == "gunicorn.conf.py":
        settings = runpy.run_path(str(path))
        assert settings["workers"] >= 1, settings["workers"]
    else:
        __import__(path.stem)
    imported.append(path.name)
print(json.dumps(imported))
"""


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_file_imports_without_linux_only_calls(stage):
    folder = STAGES[stage]
    env = {"PATH": os.environ["PATH"]}  # gunicorn.conf.py's defaults: no WEB_CONCURRENCY, HOST, PORT
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, ",".join(LINUX_ONLY)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"{folder.name} does not import without Linux-only calls:\n{out.stderr[-2000:]}"
    imported = json.loads(out.stdout)
    assert imported == sorted(path.name for path in folder.glob("*.py")), imported


def test_gunicorn_counts_the_cpus_this_process_may_use(monkeypatch):
    """Where Linux offers it, the default worker count honours taskset and cpusets, not the host's total."""
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    usable = os.process_cpu_count() if hasattr(os, "process_cpu_count") else len(os.sched_getaffinity(0))
    assert runpy.run_path(str(STAGES[3] / "gunicorn.conf.py"))["workers"] == usable


@pytest.mark.parametrize(
    "figure", [core.process_memory, core.children, core.cpu_seconds, core.namespace_pid], ids=lambda f: f.__name__
)
def test_process_figures_stop_with_one_line_where_there_is_no_proc(figure, monkeypatch, tmp_path):
    """The harness's /proc readings are Linux's lesson; on macOS they say so in one line, not a traceback of paths."""
    monkeypatch.setattr(core, "PROC", tmp_path / "no-proc")
    with pytest.raises(core.LinuxOnly) as raised:
        figure(os.getpid())
    assert "\n" not in str(raised.value) and "Linux" in str(raised.value) and "WSL" in str(raised.value)
