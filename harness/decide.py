"""Should you use Kubernetes? The cheapest layer that meets a situation's constraints, by the committed figures.

A situation is what a reader knows about their service: may requests fail during
a release, how long may users wait without an answer, must a crashed server come
back without a person, the peak load, whether the load varies enough that
capacity should follow it, and whether someone runs a cluster. Each served layer
from 03 to 05 is checked against it with the figures of results/scorecard.json
(the last stamped run), cheapest first; the answer is the first that meets every
constraint, each verdict citing the figure behind it.

    python -m harness.decide                                   # the example situations, as a table
    python -m harness.decide --failed-ok no --max-stall 1 --peak-rps 500 --recover-alone yes \\
        --load-varies no --cluster-team yes                    # yours: every check, then the answer
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.paths import ROOT
from harness.results import stage_of
from harness.spread import plus_minus

RESULTS = ROOT / "results" / "scorecard.json"
#: the layers a reader chooses between, cheapest first (fewest processes, lines and concepts to run)
CANDIDATES = (3, 4, 5)
#: what the layers' configuration says they do, not a figure: only stage 05 adds capacity by itself (its HPA,
#: k8s/base/hpa.yaml) and spreads over several machines
SCALES_ON_LOAD = {5}


@dataclass(frozen=True)
class Situation:
    """What a reader knows about their service."""

    name: str
    failed_ok: bool  # may some requests fail while a new model goes in?
    max_stall_s: float  # the longest users may wait without an answer (an upgrade, a crash)
    recover_alone: bool  # must a killed server come back without a person?
    peak_rps: float  # single-row requests per second at the peak
    load_varies: bool  # must capacity follow the load by itself?
    cluster_team: bool  # does someone run (or pay for) a cluster?


EXAMPLES = (
    Situation(
        "an internal tool: a team of ten, a minute's gap in a release is fine", True, 60, False, 20, False, False
    ),
    Situation(
        "a product's API on one machine: back by itself after a crash, short gaps fine",
        True,
        5,
        True,
        300,
        False,
        False,
    ),  # fmt: skip
    Situation(
        "a product's API: no failed request in a release, lunch-time peaks, a platform team",
        False,
        1,
        True,
        600,
        True,
        True,
    ),  # fmt: skip
    Situation("the same, and no one to run a cluster", False, 1, True, 600, True, False),
)


def load(path: Path = RESULTS) -> dict[str, Any]:
    """The committed results (the scorecard's last stamped run)."""
    return json.loads(Path(path).read_text())


def best_upgrade(stage: dict[str, Any]) -> dict[str, Any]:
    """The layer's better way to put a new model in service (fewer failed requests, then a shorter stall)."""
    ways = [stage[k] for k in ("upgrade", "upgrade_alternative") if k in stage]
    return min(ways, key=lambda u: (u["failed"], u["longest_stall_s"]))


def capacity(stage: dict[str, Any]) -> dict[str, Any]:
    """The layer's highest single-row rate at 8 clients on any measured path."""
    return max((t for t in stage["throughput"] if t["connections"] == 8), key=lambda t: t["rps"])


def checks(situation: Situation, stage: dict[str, Any]) -> list[dict[str, Any]]:
    """Every constraint of ``situation`` against one layer's figures: {"what", "met", "because"}."""
    up, crash, top = best_upgrade(stage), stage["crash"], capacity(stage)
    upgrade = (
        f"{up['mechanism']}: {up['failed']} of {up['requests']} requests failed, {up['longest_stall_s']:.2f} s "
        "without an answer"
    )
    found = [
        {"what": "a release fails no request", "met": situation.failed_ok or up["failed"] == 0, "because": upgrade},
        {"what": f"no wait over {situation.max_stall_s:g} s in a release",
         "met": up["longest_stall_s"] <= situation.max_stall_s, "because": upgrade},
    ]  # fmt: skip
    back = f"back by itself after {crash['recovery_s']:.1f} s" if crash["recovered"] else (
        f"still down {crash['observed_s']:.0f} s later")  # fmt: skip
    found.append({"what": "a killed server comes back alone", "met": not situation.recover_alone or crash["recovered"],
                  "because": f"SIGKILL of the server under load: {back}"})  # fmt: skip
    if situation.recover_alone:
        found.append({"what": f"no wait over {situation.max_stall_s:g} s in a crash",
                      "met": crash["recovered"] and crash["longest_stall_s"] <= situation.max_stall_s,
                      "because": f"SIGKILL of the server: {crash['longest_stall_s']:.2f} s without an answer, "
                                 f"{back}"})  # fmt: skip
    found.append({"what": f"{situation.peak_rps:g} req/s on one machine", "met": top["rps"] >= situation.peak_rps,
                  "because": f"{plus_minus(top)} single-row req/s at 8 clients ({top['path']})"})  # fmt: skip
    if situation.load_varies:
        scales = stage["stage"] in SCALES_ON_LOAD
        found.append({"what": "capacity follows the load", "met": scales,
                      "because": "its HorizontalPodAutoscaler adds pods (k8s/base/hpa.yaml)" if scales
                      else "nothing adds servers by itself: a person adds workers or machines"})  # fmt: skip
    if stage["stage"] == 5:
        found.append({"what": "someone runs the cluster", "met": situation.cluster_team,
                      "because": "a cluster's processes, upgrades and concepts need an owner"})  # fmt: skip
    return found


def decide(situation: Situation, results: dict[str, Any]) -> dict[str, Any]:
    """The cheapest layer of CANDIDATES whose figures meet ``situation``, with every layer's checks; "none"
    (and what it lacks) when no layer does."""
    verdicts = {}
    for number in CANDIDATES:
        stage = stage_of(results, number)
        if stage is not None:
            verdicts[stage["layer"]] = checks(situation, stage)
    answer = next((name for name, found in verdicts.items() if all(c["met"] for c in found)), None)
    return {"situation": situation.name, "answer": answer, "checks": verdicts}


def reason(decision: dict[str, Any]) -> str:
    """Why, in one line: what each cheaper layer fails first (with its figure), or what every layer lacks."""
    if decision["answer"] is None:
        last = list(decision["checks"].values())[-1]
        lacking = "; ".join(c["what"] for c in last if not c["met"])
        return (f"even the last lacks: {lacking}. A managed service (a cloud's model or container serving) "
                "takes the cluster off your hands (stated, not measured here)")  # fmt: skip
    names = list(decision["checks"])
    cheaper = names[: names.index(decision["answer"])]
    why = []
    for name in cheaper:
        first = next(c for c in decision["checks"][name] if not c["met"])
        why.append(f'{name} fails "{first["what"]}": {first["because"]}')
    return "; ".join(why) or "the cheapest layer meets every constraint"


def markdown(situations: tuple[Situation, ...], results: dict[str, Any]) -> str:
    """A row per situation: the answer and why (what the cheaper layers fail, with the figure)."""
    rows = ["| your situation | run | why (the committed figures) |", "|---|---|---|"]
    for situation in situations:
        decision = decide(situation, results)
        rows.append(f"| {situation.name} | **{decision['answer'] or 'none of these'}** | {reason(decision)} |")
    return "\n".join(rows) + "\n"


def yes_no(text: str) -> bool:
    if text.lower() in ("yes", "y", "true", "1"):
        return True
    if text.lower() in ("no", "n", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"yes or no, got {text!r}")


def main(argv: list[str] | None = None) -> int:
    """Command line: the examples as a table, or one situation's checks and answer."""
    parser = argparse.ArgumentParser(prog="python -m harness.decide", description=__doc__.splitlines()[0])
    parser.add_argument("--failed-ok", type=yes_no, help="may some requests fail while a new model goes in?")
    parser.add_argument("--max-stall", type=float, default=5.0, help="longest wait without an answer, s")
    parser.add_argument("--recover-alone", type=yes_no, default=True, help="must a crash heal without a person?")
    parser.add_argument("--peak-rps", type=float, default=100.0, help="single-row requests/s at the peak")
    parser.add_argument("--load-varies", type=yes_no, default=False, help="must capacity follow the load?")
    parser.add_argument("--cluster-team", type=yes_no, default=False, help="does someone run a cluster?")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results file (default: the committed one)")
    args = parser.parse_args(argv)
    try:
        results = load(args.results)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {args.results}: {exc}", file=sys.stderr)
        return 1
    if args.failed_ok is None:
        print(markdown(EXAMPLES, results), end="")
        return 0
    if args.max_stall < 0 or args.peak_rps < 0:
        parser.error("--max-stall and --peak-rps are zero or more")
    yours = Situation("yours", args.failed_ok, args.max_stall, args.recover_alone, args.peak_rps, args.load_varies,
                      args.cluster_team)  # fmt: skip
    decision = decide(yours, results)
    for name, found in decision["checks"].items():
        print(name)
        for c in found:
            print(f"  {'meets' if c['met'] else 'FAILS'}  {c['what']}: {c['because']}")
    print(f"\nrun: {decision['answer'] or 'none of these'}. {reason(decision)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
