"""Every term a learner meets, linked to GLOSSARY.md where a page first uses it.

TERMS is the maintained list: a GLOSSARY.md heading and the words that use it in prose.
A learner page (the README, each stage's README, EXERCISES.md, each notebook's markdown
cells) must link a term's first use to its glossary entry. Code, links to elsewhere, headings,
URLs, HTML comments and the generated figure blocks are not prose and are skipped.

    python -m harness.glossary          # each first use that is not linked, one a line (exit 1), or nothing
    python -m harness.glossary --fix    # link each first use in place (make glossary)
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.paths import ROOT

GLOSSARY = ROOT / "GLOSSARY.md"


def word(term: str) -> str:
    """A lowercase term also at a sentence's start, plural too (``pod`` -> Pod, pods)."""
    return rf"[{term[0].upper()}{term[0]}]{re.escape(term[1:])}s?"


#: heading in GLOSSARY.md -> the regular expression (matched case-sensitively, on word boundaries) of its uses
TERMS: dict[str, str] = {
    # serving in Python
    "WSGI": r"WSGI",
    "Flask": r"Flask",
    "gunicorn": r"[Gg]unicorn",
    "worker": word("worker"),
    "master": word("master"),
    "sync worker": r"sync workers?",
    "gthread worker": r"gthread",
    "respawn": r"[Rr]espawn(?:s|ed|ing)?",
    "graceful reload": r"graceful(?:ly)? reload(?:s|ed)?",
    "binary upgrade": r"binary upgrades?",
    "fork": r"fork(?:s|ed|ing)?(?:\(\))?",
    "preload_app": r"preload_app|GUNICORN_PRELOAD",
    "signal": r"[Ss]ignals?|SIG(?:KILL|TERM|HUP|INT|QUIT|USR2|STOP|CONT)",
    "PID 1": r"PID 1",
    "listening socket": r"listening sockets?",
    "Unix socket": r"[Uu]nix(?:-domain)? sockets?",
    "loopback": r"[Ll]oopback",
    "app factory": r"(?:app|application) factory",
    "blueprint": r"[Bb]lueprints?",
    "endpoint": word("endpoint") + r"|EndpointSlices?",
    "OpenAPI": r"OpenAPI",
    "Schemathesis": r"[Ss]chemathesis",
    "V2 inference protocol": r"V2",
    "FastAPI and uvicorn": r"FastAPI|uvicorn",
    "KServe, Seldon, MLServer, Triton": r"KServe|Seldon|MLServer|Triton",
    "gRPC": r"gRPC",
    "Prometheus": r"Prometheus",
    "nginx": r"nginx",
    "reverse proxy": r"(?:reverse|buffering) prox(?:y|ies)",
    "slow client": r"slow clients?",
    "keep-alive": r"[Kk]eep-alive",
    "FIN": r"FIN",
    "canary": word("canary"),
    # measuring
    "golden predictions": r"golden(?: predictions| rows)?",
    "in-process floor": r"in-process floor",
    "requests per second": r"req/s|requests/s|rps|requests per second",
    "p50, p95, p99": r"p50|p95|p99",
    "interleaved rounds": r"interleaved rounds?",
    "stall": r"[Ss]talls?",
    "cold start": r"cold start",
    "PSS, RSS, USS": r"PSS|RSS|USS",
    "CPU steal": r"steal",
    # containers
    "container": word("container"),
    "image": word("image"),
    "image layer": r"image layers?",
    "Dockerfile": r"Dockerfile",
    "Docker engine": r"(?:Docker )?engine",
    "registry": r"[Rr]egistry|registries",
    "exec form": r"exec form",
    "bind mount": r"bind[- ]mount(?:s|ed)?",
    "published port": r"published ports?|--publish",
    "Docker's port proxy": r"(?:port|userland) proxy|docker-proxy",
    "iptables": r"iptables",
    "restart policy": r"restart polic(?:y|ies)",
    "health check": r"HEALTHCHECK|[Hh]ealth ?checks?",
    "Docker Compose": r"Compose",
    "cgroup": r"cgroups?",
    "systemd": r"systemd",
    "tmpfs": r"tmpfs",
    "Linux capabilities": r"Linux capabilities|privilege escalation",
    "WSL": r"WSL",
    "multi-stage build": r"multi-stage(?: builds?)?|builder stage",
    "container runtime": r"container runtimes?|containerd|runc",
    # Kubernetes
    "Kubernetes": r"Kubernetes",
    "cluster": word("cluster"),
    "node": word("node"),
    "control plane": r"control plane|kube-apiserver|API server|etcd|kube-controller-manager|kube-scheduler",
    "controller": word("controller"),
    "scheduler": word("scheduler"),
    "kubelet": r"kubelet",
    "kube-proxy": r"kube-proxy",
    "kubectl": r"kubectl",
    "manifest": word("manifest"),
    "Pod": word("pod"),
    "Deployment": r"Deployments?",
    "ReplicaSet": r"ReplicaSets?",
    "Service": r"Services?",
    "NodePort and ClusterIP": r"NodePort|ClusterIP",
    "Namespace": r"[Nn]amespaces?",
    "ConfigMap": r"ConfigMaps?",
    "readiness probe": r"[Rr]eadiness(?: probes?| checks?| gates?)?",
    "liveness probe": r"[Ll]iveness(?: probes?)?",
    "startup probe": r"[Ss]tartup probes?",
    "preStop": r"preStop",
    "sidecar": word("sidecar"),
    "rollout": r"[Rr]olling updates?|[Rr]ollouts?",
    "maxSurge and maxUnavailable": r"maxSurge|maxUnavailable",
    "progressDeadlineSeconds": r"progressDeadlineSeconds",
    "zero downtime": r"[Zz]ero[- ]downtime",
    "self-healing": r"[Ss]elf-healing",
    "PodDisruptionBudget": r"PodDisruptionBudgets?|PDB",
    "drain": r"[Dd]rain(?:s|ed|ing)?",
    "HPA": r"HPA|HorizontalPodAutoscaler",
    "metrics-server": r"metrics-server",
    "kustomize": r"[Kk]ustomiz(?:e|ation)",
    "overlay": word("overlay"),
    "emptyDir": r"emptyDir",
    "securityContext": r"securityContext",
    "Pod Security Standards": r"Pod Security Standards?",
    "initContainer": r"initContainers?|init containers?",
    "ServiceAccount": r"ServiceAccounts?",
    "GA": r"GA",
    "envsubst": r"envsubst",
    "NetworkPolicy": r"NetworkPolic(?:y|ies)",
    "resource requests and limits": r"(?:CPU|memory|resource) (?:requests?|limits?)",
}


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


#: each term's uses, on word boundaries
SPACE = r"\s+"  # a space in a term also matches a line break
USES = {h: re.compile(rf"(?<![\w\-/.])(?:{p.replace(' ', SPACE)})(?![\w\-])") for h, p in TERMS.items()}

#: spans that are not prose: fenced code, generated blocks, HTML comments, inline code, headings, images, URLs,
NOT_PROSE = re.compile(
    r"```.*?```|<!-- figures:(\w+) -->.*?<!-- /figures:\1 -->|<!--.*?-->|`[^`\n]*`|^#+ [^\n]*|!\[[^\]]*\]\([^)]*\)"
    r"|<https?://[^>]*>|https?://[^\s)]+|^>[^\n]*",  # ...and quotations: another author's words stay as written
    re.S | re.M,
)
LINK = re.compile(r"\[([^\[\]]*)\]\(([^)\s]*)\)")


@dataclass(frozen=True)
class Use:
    page: str
    line: int
    term: str
    text: str


def masked(text: str) -> tuple[str, list[tuple[int, int, str]]]:
    """``text`` with everything that is not prose blanked (same length), and the glossary links:
    (start, end, anchor) of each link text. Other links' texts are blanked: a link cannot hold a link."""
    chars = list(text)

    def blank(start: int, end: int) -> None:
        chars[start:end] = [c if c == "\n" else " " for c in text[start:end]]

    for m in NOT_PROSE.finditer(text):
        blank(*m.span())
    prose = "".join(chars)
    links = []
    for m in LINK.finditer(text):
        if prose[m.start()] != "[":  # in code, a comment or a generated block
            continue
        target = m.group(2)
        blank(m.end(1), m.end())  # "](target)"
        if "GLOSSARY.md#" in target:
            links.append((m.start(1), m.end(1), target.split("#", 1)[1]))
        else:
            blank(m.start(1), m.end(1))
    return "".join(chars), links


def first_uses(text: str) -> Iterator[tuple[str, int, int, str | None]]:
    """Each term's first use in ``text``: (term, start, end, the anchor of the glossary link it is in, or None).

    Uses are read left to right, the longest at a place winning ("sync worker", not "worker"), none
    overlapping another; a use inside a glossary link to another term does not count (links do not nest)."""
    prose, links = masked(text)
    found = sorted(
        ((m.start(), -m.end(), heading) for heading, uses in USES.items() for m in uses.finditer(prose)),
    )
    taken_until, seen = -1, set()
    for start, minus_end, heading in found:
        end = -minus_end
        if start < taken_until:
            continue
        inside = next((a for s, e, a in links if s <= start and end <= e), None)
        if inside is not None and inside != anchor(heading):
            continue
        taken_until = end
        if heading not in seen:
            seen.add(heading)
            yield heading, start, end, inside


def pages() -> Iterator[Path]:
    """The learner pages, in reading order."""
    yield ROOT / "README.md"
    yield from sorted(ROOT.glob("0*/README.md"))
    yield ROOT / "EXERCISES.md"
    yield from sorted((ROOT / "notebooks").glob("*.ipynb"))


def target(page: Path) -> str:
    """The glossary's path as a link from ``page``."""
    return "../GLOSSARY.md" if page.parent != ROOT else "GLOSSARY.md"


def texts(page: Path) -> list[str]:
    """A page's prose: a Markdown file is one text, a notebook one per markdown cell (read in order)."""
    if page.suffix != ".ipynb":
        return [page.read_text()]
    return ["".join(c["source"]) for c in json.loads(page.read_text())["cells"] if c["cell_type"] == "markdown"]


def unlinked(page: Path, parts: list[str] | None = None) -> list[Use]:
    """The terms whose first use in ``page`` is not a link to their glossary entry."""
    found, seen = [], set()
    for number, text in enumerate(texts(page) if parts is None else parts):
        for term, start, _end, inside in first_uses(text):
            if term in seen:
                continue
            seen.add(term)
            if inside != anchor(term):
                where = f"cell {number}" if page.suffix == ".ipynb" else f"line {text.count(chr(10), 0, start) + 1}"
                found.append(Use(page.relative_to(ROOT).as_posix(), number, term, f"{where}: {text[start:_end]!r}"))
    return found


def link_first_uses(page: Path) -> int:
    """Link each term's first use in ``page`` in place; how many links were added."""
    added, seen = 0, set()
    is_notebook = page.suffix == ".ipynb"
    notebook = json.loads(page.read_text()) if is_notebook else None
    cells = [c for c in notebook["cells"] if c["cell_type"] == "markdown"] if notebook else None
    parts = ["".join(c["source"]) for c in cells] if cells is not None else [page.read_text()]
    for i, text in enumerate(parts):
        edits = []
        for term, start, end, inside in first_uses(text):
            if term in seen:
                continue
            seen.add(term)
            if inside is None:
                edits.append((start, end, term))
        for start, end, term in sorted(edits, reverse=True):
            text = f"{text[:start]}[{text[start:end]}]({target(page)}#{anchor(term)}){text[end:]}"
            added += 1
        parts[i] = text
    if cells is not None:
        for cell, text in zip(cells, parts):
            cell["source"] = text.splitlines(keepends=True)
        page.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    else:
        page.write_text(parts[0])
    return added


def headings() -> list[str]:
    """GLOSSARY.md's entries (its ### headings)."""
    return re.findall(r"^### (.+)$", GLOSSARY.read_text(), re.M)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--fix"]:
        for page in pages():
            print(f"{page.relative_to(ROOT)}: {link_first_uses(page)} link(s) added")
        return 0
    problems = [f"{u.page} {u.text}: first use of '{u.term}' not linked to the glossary" for p in pages() for u in
                unlinked(p)]  # fmt: skip
    print("\n".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
