"""Bad releases under load, the same three at every served layer, and the way back.

    bad_release(layer, "broken", workdir)   # a model artifact that fails to load
    bad_release(layer, "wrong", workdir)    # a model that loads and names the wrong species
    bad_release(layer, "setting", workdir)  # MODEL_PATH names a file that does not exist

    python -m harness.releases broken --stage 4   # one, against a layer started for it, figures printed

Each goes through the layer's own release mechanism (``Layer.release``: an
install and a reload, a new container, a rolling update), is watched for the
same window as a crash, then undone with the layer's own way back
(``Layer.rollback``). The figures: failed requests, the longest time without
an answer, the wrong answers and for how long, whether the layer refused the
release by itself, and how long after the rollback began the old version
answered again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import joblib
from sklearn.datasets import load_iris

from harness.core import Layer
from harness.core import Refused
from harness.core import damage
from harness.core import model_module
from harness.core import train_model
from harness.layers import LAYERS
from harness.layers import at_stage
from harness.load import LoadRun
from harness.scenarios import OBSERVE_S

#: the three bad releases, as a results row describes them
KINDS = {
    "broken": "a model artifact that fails to load (changed after training: its SHA-256 no longer matches)",
    "wrong": "a model that loads and answers, wrongly (trained with every label shifted by one species)",
    "setting": "a wrong setting: MODEL_PATH names a file that does not exist",
}
MISSING_MODEL = "/nonexistent/iris.joblib"


def broken_model(directory: Path) -> Path:
    """A version-3 artifact whose bytes changed after training (its sidecar's SHA-256 no longer matches)."""
    path = train_model(directory, version="3")
    damage(path)
    return path


def wrong_model(directory: Path) -> Path:
    """A version-3 artifact that loads, verified, and names the wrong species: every training label was
    shifted by one (setosa learnt as versicolor, ...), the mistake a changed label encoding makes."""
    path = train_model(directory, version="3")
    iris = load_iris()
    pipeline = joblib.load(path).fit(iris.data, (iris.target + 1) % 3)
    joblib.dump(pipeline, path)
    sidecar = model_module().metadata_path(path)
    metadata = json.loads(sidecar.read_text())
    metadata["artifact_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def change(kind: str, directory: Path) -> dict[str, Any]:
    """The ``release`` arguments of a bad release of ``kind``: {"model": path} or {"settings": {...}}."""
    if kind == "broken":
        return {"model": broken_model(Path(directory) / "broken")}
    if kind == "wrong":
        return {"model": wrong_model(Path(directory) / "wrong")}
    if kind == "setting":
        return {"settings": {"MODEL_PATH": MISSING_MODEL}}
    raise ValueError(f"a bad release is one of {', '.join(KINDS)}, got {kind!r}")


def bad_release(
    layer: Layer,
    kind: str,
    directory: Path,
    clients: int = 4,
    observe: float = OBSERVE_S,
    timeline: float | None = None,
) -> dict[str, Any]:
    """Push a bad release of ``kind`` to a started ``layer`` under load, leave it ``observe`` s (or as long
    as the release itself takes), roll back, and measure until the old version answers again.

    ``refused`` is the layer's own "no" (an install, a config check, a rollout
    that stopped), with ``refused_because``; ``answers_again_s`` runs from the
    rollback's start until it is done (``rollback_s``: a `rollout undo` waits
    for the stuck pod to go) and a request sent after it got the old version's
    right answer; ``release_s`` is how long the release command took. Whether
    the clients noticed shows in ``failed`` and ``longest_stall_s``.
    """
    arguments = change(kind, directory)
    with LoadRun(layer.base_url, clients=clients, max_seconds=observe + 900, max_requests=500_000) as run:
        run.warm_up()
        old_version = run.report.last_version()
        released_at = time.monotonic()
        refused = ""
        try:
            command = layer.release(**arguments)
        except Refused as exc:
            command, refused = exc.command, str(exc)
        release_s = time.monotonic() - released_at
        time.sleep(max(0.0, released_at + observe - time.monotonic()))
        rollback_at = time.monotonic()
        way_back = layer.rollback()
        rolled_back_s = time.monotonic() - rollback_at
        back = run.wait_for(
            lambda r: any(o.start >= rollback_at and o.ok and o.version == old_version and o.label == r.expected
                          for o in reversed(r.outcomes[-200:])),
            timeout=120,
        )  # fmt: skip
        answers_again = time.monotonic() - rollback_at
        time.sleep(0.5)  # a little more load on the old version
    report = run.report.summary()
    report.update(
        kind=kind,
        change=KINDS[kind],
        mechanism=layer.release_mechanism,
        command=command,
        refused=bool(refused),
        refused_because=refused or None,
        release_s=round(release_s, 3),
        rollback=way_back or "nothing to do: the old version never stopped",
        rollback_s=round(rolled_back_s, 3),
        answers_again_s=round(answers_again, 3) if back else None,
        event_s=round(released_at - run.report.started, 3),
        rollback_event_s=round(rollback_at - run.report.started, 3),
    )
    if timeline:
        report["timeline"] = run.report.timeline(timeline)
    return report


def every(
    layer: Layer, directory: Path, observe: float = OBSERVE_S, timeline: float | None = None, say: Any = None
) -> dict[str, dict[str, Any]]:
    """Every bad release of KINDS in turn against one started ``layer``, each rolled back before the next;
    ``say`` (a function) hears what runs."""
    results = {}
    for kind, what in KINDS.items():
        if say:
            say(f"[{layer.name}] bad release under load: {what}; then the way back")
        results[kind] = bad_release(layer, kind, directory, observe=observe, timeline=timeline)
    return results


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """``every``'s results as a Markdown table, one row per bad release (for the notebooks)."""
    rows = [
        "| bad release | refused by the layer | failed requests | longest without an answer | wrong answers "
        "| way back | way back done, old version answering |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, r in results.items():
        refused = f"yes: {r['refused_because']}" if r["refused"] else "**no**"
        back = "never" if r["answers_again_s"] is None else f"{r['answers_again_s']:.1f} s after it began"
        wrong = f"**{r['wrong']}** over {r['wrong_for_s']:.1f} s" if r["wrong"] else "0"
        rows.append(f"| {kind} | {refused} | {r['failed']} of {r['requests']} | {r['longest_stall_s']:.1f} s | "
                    f"{wrong} | `{r['rollback']}` | {back} |")  # fmt: skip
    return "\n".join(rows)


def describe(result: dict[str, Any]) -> str:
    """A bad release's figures as a reader reads them, one per line."""
    refused = f"yes: {result['refused_because']}" if result["refused"] else "no"
    back = "never" if result["answers_again_s"] is None else f"{result['answers_again_s']:.1f} s after it began"
    return "\n".join([
        f"release:          {result['command']}",
        f"refused by itself: {refused}",
        f"failed requests:  {result['failed']} of {result['requests']}; longest without an answer "
        f"{result['longest_stall_s']:.1f} s",
        f"wrong answers:    {result['wrong']}" + (f", over {result['wrong_for_s']:.1f} s" if result["wrong"] else ""),
        f"way back:         {result['rollback']}",
        f"way back done:    {back}, the old version answering",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Command line: push one bad release at a stage started for it (version 1), under load; print the figures."""
    parser = argparse.ArgumentParser(prog="python -m harness.releases", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=list(KINDS), help="; ".join(f"{k}: {v}" for k, v in KINDS.items()))
    served = [n for n, c in LAYERS.items() if c.serves_http]
    parser.add_argument(
        "--stage", type=int, choices=served, default=served[-2], help="the layer (default: %(default)s)"
    )
    parser.add_argument("--observe", type=float, default=OBSERVE_S, help="seconds before the rollback")
    args = parser.parse_args(argv)
    return at_stage(
        args.stage,
        f"{KINDS[args.kind]}, under load, then the way back",
        lambda layer, workdir: describe(bad_release(layer, args.kind, workdir, observe=max(1.0, args.observe))),
    )


if __name__ == "__main__":
    sys.exit(main())
