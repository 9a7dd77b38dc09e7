"""Versions, dependencies and installed size of a set of top-level packages, in the venv that runs this.

Run by bench/costs.py with each venv's interpreter: the version of each package
named, the distributions a server needs (the packages named and everything they
require, transitively, as installed), and the bytes their files take on disk
(from each RECORD).

    .venv/bin/python bench/deps.py flask gunicorn scikit-learn
"""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def closure(names: list[str]) -> dict[str, metadata.Distribution]:
    """Every installed distribution ``names`` need, without optional extras."""
    found: dict[str, metadata.Distribution] = {}
    todo = [n.lower() for n in names]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:  # an environment marker excluded it here
            continue
        found[name] = dist
        for req in dist.requires or []:
            if "extra ==" not in req:
                todo.append(_name(req))
    return found


def size_bytes(dist: metadata.Distribution) -> int:
    """Bytes of the files a distribution installed."""
    total = 0
    for file in dist.files or []:
        path = file.locate()
        if path.is_file():
            total += path.stat().st_size
    return total


if __name__ == "__main__":
    dists = closure(sys.argv[1:])
    print(
        json.dumps(
            {
                "versions": {name: metadata.version(name) for name in sys.argv[1:]},
                "distributions": len(dists),
                "installed_mb": round(sum(size_bytes(d) for d in dists.values()) / 2**20, 1),
                "names": sorted(dists),
            }
        )
    )
