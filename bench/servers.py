"""The servers of the benchmark: our stages as the harness runs them, and the peers beside them.

Stages 02, 03 and 04 are the harness's own layers (harness.local, harness.container),
started, waited for and stopped exactly as the tests and the scorecard do it. A peer
(FastAPI + uvicorn, MLServer, the two gunicorn ceilings) is the same kind of local
server process with a command of its own: ``Peer``. Every multi-process server gets
the same worker count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.container import Container
from harness.container import build_image
from harness.core import BIN
from harness.core import LOOPBACK
from harness.core import ROOT
from harness.core import STAGES
from harness.core import Layer
from harness.core import free_port
from harness.local import DevServer
from harness.local import Gunicorn
from harness.local import ServerProcess

PEERS = ROOT / "bench" / "peers"
#: the peers' programs, from their own venv (make bench-venv): the stages keep only the user's packages
PEERS_BIN = ROOT / ".venv-bench" / "bin"
WORKERS = 2  # every multi-process server gets the same count: one per core here
#: the route of each kind of request
ROUTES = {"predict": "/predict", "v2": "/v2/models/iris/infer"}
#: the gunicorn ceilings: the app in bench/peers/ceiling.py and the server's name
CEILINGS = {"bare": "ceiling: gunicorn + bare WSGI", "echo": "ceiling: gunicorn + Flask echo"}
#: stage 03 built without its request ids, access lines and metrics (app.py's OBSERVE): what they cost
UNOBSERVED = "03 gunicorn, no logs or metrics"


class Peer(ServerProcess):
    """A server that is not one of our stages, started, waited for and stopped as the stages are.

    Only its name, its command (``argv``, where ``{port}`` stands for the port)
    and its folder are its own; HOST, PORT and MODEL_PATH come in its
    environment as for every layer (harness.local.ServerProcess.env).
    """

    stage = 0  # no stage folder: ``folder`` is always given

    def __init__(self, name: str, argv: list[str], model_path: Path, folder: Path, env: dict[str, str] | None = None):
        super().__init__(model_path, env=env, folder=folder)
        self.name = name
        self.argv = argv

    def command(self) -> list[str]:
        return [part.format(port=self.port) for part in self.argv]


@dataclass
class Server:
    """One server of the run: its layer and what it serves, as data.

    ``routes``: the kinds of request it answers, its own first (the one a
    smoke run measures). ``model``: False for a ceiling, which answers
    without a model: it gets single rows only and its answers are not checked.
    """

    layer: Layer
    routes: tuple[str, ...] = ("predict", "v2")
    model: bool = True

    @property
    def name(self) -> str:
        return self.layer.name


def mlserver(model: Path, folder: Path) -> Peer:
    """MLServer with bench/peers/mlserver/'s settings, this run's artifact and free ports filled in."""
    peer = Peer("MLServer", [str(PEERS_BIN / "mlserver"), "start", "."], model, folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings = json.loads((PEERS / "mlserver" / "settings.json").read_text())
    settings.update(http_port=peer.port, grpc_port=free_port(), metrics_port=free_port(), parallel_workers=WORKERS)
    model_settings = json.loads((PEERS / "mlserver" / "model-settings.json").read_text())
    model_settings["parameters"]["uri"] = str(model)
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    (folder / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return peer


def servers(model: Path, workdir: Path, with_docker: bool) -> list[Server]:
    """Every server of the run, each on a free port of its own."""
    workers = {"WEB_CONCURRENCY": str(WORKERS)}
    unobserved = Gunicorn(model, env=workers, app='app:create_app({"OBSERVE": False})')
    unobserved.name = UNOBSERVED
    found = [Server(DevServer(model)), Server(Gunicorn(model, env=workers)), Server(unobserved, routes=("predict",))]
    if with_docker:
        # the stage-03 image with the model baked into it, as `make stage-4` runs it: nothing mounted
        found.append(Server(Container(None, env=workers, image=build_image())))
    uvicorn = [str(PEERS_BIN / "uvicorn"), "--host", LOOPBACK, "--port", "{port}", "--workers", str(WORKERS),
               "bench.peers.fastapi_app:app"]  # fmt: skip
    found.append(Server(Peer("FastAPI + uvicorn", uvicorn, model, ROOT, {"PYTHONPATH": str(STAGES[1])})))
    found.append(Server(mlserver(model, workdir / "mlserver"), routes=("v2",)))
    for app, name in CEILINGS.items():
        # stage 03's own settings, started where gunicorn.conf.py expects it (it imports logs.py from there)
        gunicorn = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--pythonpath", str(PEERS), f"ceiling:{app}"]
        found.append(Server(Peer(name, gunicorn, model, STAGES[3], workers), routes=("predict",), model=False))
    return found
