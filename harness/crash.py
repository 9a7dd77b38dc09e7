"""Break a layer under load and read what it cost: the scorecard's crash, against one stage, from the command line.

    python -m harness.crash --stage 2                  # SIGKILL the development server under load
    python -m harness.crash --stage 3                  # gunicorn's master (the serving process)
    python -m harness.crash --stage 3 --target worker  # one of its workers
    python -m harness.crash --stage 4                  # the container's PID 1 (root: a host process)

The stage starts as the scorecard runs it (a fresh version-1 model; stage 04 is the image alone under
`docker run --restart on-failure`, without Compose's nginx), the
harness's four clients send requests, the serving process is killed, and the
load goes on for ``--observe`` s whatever happens. Printed: what was killed,
the failed requests, the longest time without an answer, and whether the layer
answered again by itself. Exercises 02.3, 03.3 and 04.3 ask about these lines.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.layers import LAYERS
from harness.layers import at_stage
from harness.scenarios import OBSERVE_S
from harness.scenarios import crash


def describe(result: dict[str, Any]) -> str:
    """A crash's figures as a reader reads them, one per line."""
    back = (
        f"yes, {result['recovery_s']:.1f} s after the kill"
        if result["recovered"]
        else f"no, not within the {result['observed_s']:g} s watched"
    )
    return "\n".join([
        f"killed:           {result['command']}",
        f"failed requests:  {result['failed']} of {result['requests']}",
        f"longest without an answer: {result['longest_stall_s']:.1f} s",
        f"back by itself:   {back}",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Command line: one crash under load at a stage started for it; the figures, or one line on an error."""
    parser = argparse.ArgumentParser(prog="python -m harness.crash", description=__doc__.splitlines()[0])
    served = [n for n, c in LAYERS.items() if c.serves_http]
    parser.add_argument("--stage", type=int, choices=served, default=served[0], help="the layer (default: %(default)s)")
    parser.add_argument("--target", choices=("server", "worker"), default="server", help="what to kill")
    parser.add_argument("--observe", type=float, default=OBSERVE_S, help="seconds watched after the kill")
    args = parser.parse_args(argv)
    layer_class = LAYERS[args.stage]
    if args.target not in layer_class.crash_targets:
        print(f"{layer_class.name} has no {args.target} to kill (it has: {', '.join(layer_class.crash_targets)})",
              file=sys.stderr)  # fmt: skip
        return 1
    return at_stage(
        args.stage,
        f"SIGKILL of its {args.target} under load",
        lambda layer, _: describe(crash(layer, args.target, observe=max(1.0, args.observe))),
    )


if __name__ == "__main__":
    sys.exit(main())
