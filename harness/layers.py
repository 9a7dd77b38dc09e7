"""Every layer by stage number, and the variant of each that has a buffering proxy in front.

    LAYERS[3](model)      # stage 03 as `make stage-3` runs it
    PROTECTED[3](model)   # the same behind nginx: `make stage-3 PROXY=1`

Tests and notebooks import the layers and the helpers they use with them from here.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

from harness.cluster import Cluster
from harness.compose import ComposeStack
from harness.container import Container
from harness.core import APP
from harness.core import BIN
from harness.core import ROOT
from harness.core import STAGES
from harness.core import Layer
from harness.core import LayerError
from harness.core import children
from harness.core import cpu_seconds
from harness.core import free_port
from harness.core import model_module
from harness.core import process_memory
from harness.core import train_model
from harness.core import wait_until
from harness.local import DevServer
from harness.local import Gunicorn
from harness.local import InProcess
from harness.proxy import GunicornBehindNginx
from harness.proxy import ProxiedContainer

__all__ = [
    "APP", "BIN", "ROOT", "STAGES", "Cluster", "ComposeStack", "Container", "DevServer", "Gunicorn",
    "GunicornBehindNginx", "InProcess", "Layer", "LayerError", "ProxiedContainer", "children", "cpu_seconds",
    "free_port", "model_module", "process_memory", "train_model", "wait_until",
]  # fmt: skip

LAYERS: dict[int, type[Layer]] = {1: InProcess, 2: DevServer, 3: Gunicorn, 4: Container, 5: Cluster}
# The layers whose own server holds a worker per connection, behind the proxy that buffers for them.
# (Stage 05's pods have it as a sidecar already: Cluster.behind_proxy.)
PROTECTED: dict[int, type[Layer]] = {3: GunicornBehindNginx, 4: ProxiedContainer}
# What a reader would run instead of stage 05 on one machine: stage 04's compose.yaml (harness.versus).
COMPOSE: type[Layer] = ComposeStack


def layer_class(stage: int) -> type[Layer]:
    """The Layer class that serves ``stage``."""
    return LAYERS[stage]


@contextlib.contextmanager
def started(stage: int, directory: Path) -> Iterator[Layer]:
    """Stage ``stage``'s layer as the scorecard runs it, serving a fresh version-1 model installed under ``directory``
    (the command lines that break a layer for a reader: harness.crash, harness.releases)."""
    served = Path(directory) / "served" / "iris.joblib"
    model_module().install(train_model(Path(directory) / "v1", version="1"), served)
    with LAYERS[stage](served) as layer:
        yield layer


def at_stage(stage: int, doing: str, act: Callable[[Layer, Path], str]) -> int:
    """The command lines that break a layer for a reader (harness.crash, harness.releases): stage ``stage``
    started as above, ``act(layer, workdir)``'s text printed; a stage that cannot run here, a layer error or
    a signal this user may not send is one line and exit 1."""
    layer_class = LAYERS[stage]
    ok, why = layer_class.available()
    if not ok:
        print(f"stage {stage:02d} cannot run here: {why}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix=f"stage{stage:02d}-") as tmp:
        try:
            with started(stage, Path(tmp)) as layer:
                print(f"{layer.name}: {doing}", file=sys.stderr)
                print(act(layer, Path(tmp)))
        except LayerError as exc:
            print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
        except PermissionError:  # a container's processes are the host's, another user's: `sudo`
            print(
                f"error: {layer_class.name}: signalling its processes from the host needs root (sudo)", file=sys.stderr
            )
            return 1
    return 0
