"""Keep the figures in the READMEs equal to the last measured results.

Each README holds a block between ``<!-- figures:NAME -->`` and
``<!-- /figures:NAME -->``; `make scorecard` rewrites those blocks from
results/scorecard.json, and tests/test_docs.py fails when a block and the
results disagree. So no README states a figure that no code produced.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.paths import ROOT
from harness.paths import STAGES

BLOCK = re.compile(r"(<!-- figures:(\w+) -->\n)(.*?)(<!-- /figures:\2 -->)", re.S)


def _stage(results: dict[str, Any], number: int) -> dict[str, Any] | None:
    return next((s for s in results["stages"] if s["stage"] == number), None)


def _rps(stage: dict[str, Any], connections: int) -> float | None:
    match = [t for t in stage.get("throughput", []) if t["connections"] == connections and t.get("rps")]
    return match[0]["rps"] if match else None


def _p50(stage: dict[str, Any]) -> float | None:
    match = [t for t in stage.get("throughput", []) if t["connections"] == 1 and t.get("latency_ms")]
    return match[0]["latency_ms"]["p50"] if match else None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "not measured"


def _machine(results: dict[str, Any]) -> str:
    env = results["environment"]
    return f"measured by `make scorecard` on {env['cpus_usable']} CPUs ({env['cpu_model']}), {env['measured_at'][:10]}"


def _crash(crash: dict[str, Any]) -> str:
    figures = (
        f"{crash['failed']} of {crash['requests']} requests failed, {crash['longest_stall_s']:.2f} s without any answer"
    )
    if crash["recovered"]:
        return f"{figures}; back at full strength after {crash['recovery_s']} s, with nobody's help"
    return f"{figures}; never came back (watched for {crash['observed_s']:.0f} s)"


def _upgrade(up: dict[str, Any]) -> str:
    served = "then served version 2" if up["serves_new_version"] else "did NOT end up serving version 2"
    return (
        f"{up['failed']} of {up['requests']} requests failed and the longest wait for an answer was "
        f"{up['longest_stall_s']:.2f} s ({up['mechanism']}), {served}"
    )


def _answered(entry: dict[str, Any], key: str) -> str:
    """A table cell: ``key`` of a scenario result, or n/a where the layer has no use for it."""
    return str(entry[key]) if entry.get("applicable", True) else "n/a"


def _recovers(crash: dict[str, Any]) -> str:
    if not crash.get("applicable", True):
        return "n/a"
    return f"{crash['recovery_s']:.1f} s" if crash["recovered"] else "never"


def summary_table(results: dict[str, Any]) -> str:
    """The capability-and-cost table as plain text (the tour and the README print it)."""
    header = (
        f"{'layer':<24}{'curl':>5}{'rps@1':>7}{'rps@8':>7}{'kill server: failed':>21}{'no answer':>10}"
        f"{'back':>7}{'kill worker: back':>19}{'upgrade: failed':>17}{'stall':>7}{'+lines':>7}{'MiB':>6}"
        f"{'50 slow: ok':>13}"
    )
    rows = [header, "-" * len(header)]
    for s in results["stages"]:
        crash, worker, up = s["crash"], s.get("crash_worker", {"applicable": False}), s["upgrade"]
        stall = f"{up['longest_stall_s']:.2f}" if up.get("applicable", True) else "n/a"
        no_answer = f"{crash['longest_stall_s']:.1f} s" if crash.get("applicable", True) else "n/a"
        rows.append(
            f"{s['layer']:<24}{'yes' if s['reach']['reachable'] else 'no':>5}"
            f"{_rps_text(s, 1):>7}{_rps_text(s, 8):>7}{_answered(crash, 'failed'):>21}{no_answer:>10}"
            f"{_recovers(crash):>7}{_recovers(worker):>19}{_answered(up, 'failed'):>17}{stall:>7}"
            f"{s['cost']['lines_added']:>7}{s['memory']['pss_mib'] or '-':>6}{_slow_share(s):>13}"
        )
    env = results["environment"]
    rows.append(
        f"kills: SIGKILL under load, every layer watched {_window(results)} s; 'no answer': the longest time "
        "without a successful answer; MiB: PSS at idle; 50 slow: normal requests answered while 50 slow clients "
        "wait (alone/behind nginx)"
    )
    rows.append(f"measured {env['measured_at']} on {env['cpus_usable']} CPUs ({env['cpu_model']})")
    return "\n".join(rows)


def _slow_share(stage: dict[str, Any]) -> str:
    """Share of normal requests answered under 50 slow clients: alone/with the proxy where both were measured."""
    shares = [e["runs"].get("50", {}).get("during", {}).get("answered_share") for e in stage.get("slow_clients", [])]
    return "/".join("-" if v is None else f"{v:.0%}" for v in shares) or "n/a"


def _window(results: dict[str, Any]) -> str:
    windows = {s["crash"]["observed_s"] for s in results["stages"] if s["crash"].get("applicable", True)}
    return "/".join(f"{w:.0f}" for w in sorted(windows)) or "-"


def _rps_text(stage: dict[str, Any], connections: int) -> str:
    rps = _rps(stage, connections)
    return f"{rps:.0f}" if rps else "-"


def _slow_run(run: dict[str, Any]) -> str:
    d = run["during"]
    p99 = f"p99 {d['p99_ms']} ms" if d["p99_ms"] is not None else "none answered"
    impaired = "never recovered" if run["impaired_s"] is None else f"impaired for {run['impaired_s']} s"
    return f"{run['slow_clients']}: {d['answered']} of {d['requests']} answered, {p99}, {impaired}"


def _slow_clients(stage: dict[str, Any]) -> list[str]:
    """One line per variant measured (alone, behind nginx): normal requests while slow clients wait."""
    lines = []
    for entry in stage.get("slow_clients", []):
        runs = list(entry["runs"].values())
        hold = f"{runs[0]['hold_s']:.0f}" if runs else "?"
        lines.append(f"- Slow clients ({entry['layer']}), normal requests sent while they waited {hold} s: "
                     + "; ".join(_slow_run(r) for r in runs) + ".")  # fmt: skip
        if "throughput_8" in entry:
            with_proxy, alone = entry["throughput_8"]["rps"], _rps(stage, 8)
            lines.append(f"- Throughput at 8 clients with nginx in front: {with_proxy} requests/s, "
                         f"{_ratio(with_proxy, alone)} the {alone} requests/s without it (same run).")  # fmt: skip
    return lines


def render(name: str, results: dict[str, Any]) -> str:
    """The text of block ``name`` (``table``, ``stageN`` or ``slowN``) for these results."""
    if name == "table":
        return f"```\n{summary_table(results)}\n```\n"
    if name.startswith("slow"):
        stage = _stage(results, int(name.removeprefix("slow")))
        lines = _slow_clients(stage) if stage else []
        if not lines:
            return "- Slow clients: not measured in the last scorecard run.\n"
        return "\n".join([*lines, f"- ({_machine(results)}; rerun `make scorecard` to refresh.)"]) + "\n"
    number = int(name.removeprefix("stage"))
    stage = _stage(results, number)
    if stage is None:
        why = results.get("not_measured", {}).get(str(number), "not in the last scorecard run")
        return f"- Not measured in the last scorecard run: {why}.\n"
    cost, memory = stage["cost"], stage["memory"]
    lines = []
    if not stage["crash"].get("applicable", True):  # no server: the in-process floor
        t = stage["throughput"][0]
        lines.append(f"- In-process floor: p50 {t['latency_ms']['p50']} ms per single-row prediction; "
                     f"reach: {stage['reach']['why']}.")  # fmt: skip
    else:
        lines.append(f"- Kill the server process under load (SIGKILL): {_crash(stage['crash'])}.")
        if stage.get("crash_worker", {}).get("applicable"):
            lines.append(f"- Kill one worker under load: {_crash(stage['crash_worker'])}.")
        lines.append(f"- Upgrade to version 2 under load: {_upgrade(stage['upgrade'])}.")
        previous, floor = _stage(results, number - 1), _stage(results, 1)
        throughput = f"- Throughput at 8 clients: {_rps(stage, 8)} requests/s"
        if previous and _rps(previous, 8):
            throughput += f", {_ratio(_rps(stage, 8), _rps(previous, 8))} the previous layer's"
        if floor and _p50(stage) is not None:
            throughput += f"; single-row p50 {_p50(stage)} ms, {_p50(stage) - _p50(floor):.3f} ms above in-process"
        lines.append(throughput + ".")
    lines.append(
        f"- Cost: {cost['lines_added']} lines of code and configuration added against the previous stage, "
        f"{cost['packages']} pinned packages ({cost['installed_mib']} MiB installed), "
        + (
            f"{memory['pss_mib']} MiB PSS at idle in {memory['processes']} process(es)."
            if memory["pss_mib"] is not None
            else "memory not measured from the host."
        )
    )
    if cost.get("image_mib"):
        lines.append(f"- Image: {cost['image_mib']} MiB.")
    if "cluster" in cost:
        c = cost["cluster"]
        lines.append(
            f"- The cluster itself ({c['flavour']}), idle for {c['idle_seconds']:.0f} s: {c['pss_mib']} MiB PSS"
            f" and {c['cpu_cores']} CPU cores in {len(c['processes'])} processes ({', '.join(c['processes'])});"
            f" {c['objects_in_namespace']} objects in the namespace from {c['yaml_lines']} lines of YAML."
        )
    lines.append(f"- ({_machine(results)}; rerun `make scorecard` to refresh.)")
    return "\n".join(lines) + "\n"


def readmes() -> list[Path]:
    """Every README that may hold figure blocks."""
    return [ROOT / "README.md", *(p / "README.md" for p in STAGES.values())]


def rendered(path: Path, results: dict[str, Any]) -> str:
    """The README text with every figure block re-rendered from ``results``."""
    return BLOCK.sub(lambda m: m.group(1) + render(m.group(2), results) + m.group(4), path.read_text())


def update(results: dict[str, Any]) -> list[Path]:
    """Rewrite the figure blocks of every README; return the files that changed."""
    changed = []
    for path in readmes():
        if path.exists():
            text = rendered(path, results)
            if text != path.read_text():
                path.write_text(text)
                changed.append(path)
    return changed
