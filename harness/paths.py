"""Where things are: the repository, the stage folders, the address every layer answers on.

Standard library only, so `make diff` (harness.diff) runs without .venv.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = {
    1: ROOT / "01_model_py",
    2: ROOT / "02_rest_api",
    3: ROOT / "03_wsgi",
    4: ROOT / "04_container",
    5: ROOT / "05_kubernetes",
}
LOOPBACK = "127.0.0.1"
# The app every served stage runs, as `make stage-N` names it to flask and gunicorn.
APP = "app:create_app()"
