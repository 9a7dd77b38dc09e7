"""Every exercise as data: its id (stage.number), title, minutes, level, what it needs, and the check that decides it.

EXERCISES.md and FACILITATORS.md render their figures from these rows
(exercises.agenda); `tests/test_exercises.py` runs every check in both directions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exercises.checks.stage01 import check_01_1
from exercises.checks.stage01 import check_01_2
from exercises.checks.stage01 import check_01_3
from exercises.checks.stage02 import check_02_1
from exercises.checks.stage02 import check_02_2
from exercises.checks.stage02 import check_02_3
from exercises.checks.stage02 import check_02_4
from exercises.checks.stage03 import check_03_1
from exercises.checks.stage03 import check_03_2
from exercises.checks.stage03 import check_03_3
from exercises.checks.stage03 import check_03_4
from exercises.checks.stage04 import VENV_LIMIT_MB
from exercises.checks.stage04 import check_04_1
from exercises.checks.stage04 import check_04_2
from exercises.checks.stage04 import check_04_3
from exercises.checks.stage04 import check_04_4
from exercises.checks.stage05 import check_05_1
from exercises.checks.stage05 import check_05_2
from exercises.checks.stage05 import check_05_3
from exercises.checks.stage05 import check_05_4
from exercises.checks.stage05 import check_05_5


@dataclass(frozen=True)
class Exercise:
    """One exercise: the catalogue entry EXERCISES.md and FACILITATORS.md are checked against."""

    id: str
    minutes: int
    level: str  # warm-up, core or stretch
    needs: str  # "" (Python only), "docker" or "cluster": what harness.core.Layer.needs names too
    question: bool  # answered in <folder>/answers/<id>.toml rather than by changing code
    check: Callable[[Path], None]  # returns when the exercise is done, raises exercises.common.Fail otherwise
    title: str
    # What it still downloads in a room prepared for no internet (FACILITATORS.md, "A room with no internet");
    # "" when nothing: the offline agenda (exercises.agenda) holds only those.
    online: str = ""

    @property
    def stage(self) -> int:
        """The stage number, from the id (03.2 -> 3)."""
        return int(self.id.split(".")[0])


EXERCISES = {
    e.id: e
    for e in (
        Exercise("01.1", 10, "warm-up", "", True, check_01_1, "version 2 of the model: which class loses probability?"),
        Exercise("01.2", 15, "core", "", False, check_01_2, "a validation rule: no petal longer than its sepal"),
        Exercise("01.3", 25, "stretch", "", False, check_01_3, "CSV rows on stdin, same predictions as JSON"),
        Exercise("02.1", 10, "warm-up", "", False, check_02_1, "a lower default row limit, with the right status code"),
        Exercise("02.2", 20, "core", "", False, check_02_2, "a V2 endpoint: /v2/models/iris/versions/<v>"),
        Exercise(
            "02.3", 5, "core", "", True, check_02_3, "kill the dev server under load: what fails, what comes back?"
        ),
        Exercise("02.4", 25, "stretch", "", False, check_02_4, "how many rows? one more field on the access line"),
        Exercise("03.1", 10, "warm-up", "", True, check_03_1, "kill -9 a worker: who brings it back?"),
        Exercise("03.2", 20, "core", "", False, check_03_2, "preload_app: HUP now keeps the old model"),
        Exercise("03.3", 5, "core", "", True, check_03_3, "kill gunicorn under load: who brings it back?"),
        Exercise("03.4", 25, "stretch", "", True, check_03_4, "tune workers: where does adding one stop helping?"),
        Exercise("04.1", 10, "warm-up", "docker", True, check_04_1, "who runs the server, and who owns /app?"),
        Exercise(
            "04.2",
            20,
            "core",
            "docker",
            False,
            check_04_2,
            f"a smaller image: the venv at most {VENV_LIMIT_MB} MB",
            online="PyPI: changing the image's `pip install` step runs it again, and Docker's build cache cannot help",
        ),
        Exercise("04.3", 5, "core", "docker", True, check_04_3, "kill PID 1 under load: does the restart policy help?"),
        Exercise("04.4", 20, "stretch", "docker", False, check_04_4, "docker run --read-only, and nothing else"),
        Exercise("05.1", 15, "warm-up", "cluster", False, check_05_1, "a config change without a rebuild"),
        Exercise(
            "05.2", 30, "core", "cluster", False, check_05_2, "model version 2 rolled out with zero failed requests"
        ),
        Exercise("05.3", 15, "core", "cluster", True, check_05_3, "a bad release at 04 and 05, and the way back"),
        Exercise("05.4", 20, "core", "", True, check_05_4, "which layer for this service? the figures decide"),
        Exercise("05.5", 25, "stretch", "cluster", False, check_05_5, "an HPA that scales on memory too"),
    )
}
