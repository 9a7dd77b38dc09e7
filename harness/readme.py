"""Keep the figures in the READMEs equal to the last measured results.

Each README holds a block between ``<!-- figures:NAME -->`` and
``<!-- /figures:NAME -->``; `make scorecard` rewrites those blocks from
results/scorecard.json, and tests/test_docs.py fails when a block and the
results disagree. So no README states a figure that no code produced.

Every rate is shown with its spread over the run's rounds (harness.spread),
every comparison is made on one route (direct, or through nginx), and every
block names the run it comes from, with a warning when that run was contended.

(Past 400 lines: one renderer per kind of README block, each a few lines, sharing the same
helpers for rates, spreads and run lines; split, each would import the rest.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness import notice
from harness import post
from harness.paths import ROOT
from harness.paths import STAGES
from harness.quiet import warning
from harness.results import brought_along_mib  # here too for the notebooks: readme.brought_along_mib
from harness.results import stage_of
from harness.spread import SAME
from harness.spread import plus_minus
from harness.spread import ratio

BLOCK = re.compile(r"(<!-- figures:(\w+) -->\n)(.*?)(<!-- /figures:\2 -->)", re.S)
#: the blocks rendered here, from the scorecard (bench.readme renders the bench's, EXERCISES.md has its own)
OURS = re.compile(r"table|window|versus|decide|capacity|stage\d|slow\d|post\d")
#: what every served stage's block shows once a run has it: (results key, what it is)
LATER = (("bad_release", "bad releases"), ("notice", "time to notice"))
#: the layer the others are compared with, route by route
BARE = "03 gunicorn"


def route(entry: dict[str, Any]) -> str:
    """The route a throughput entry took, for like-with-like comparisons: in-process, direct or nginx."""
    path = entry["path"]
    return "nginx" if "nginx" in path else path if path == "in-process" else "direct"


def rate(
    stage: dict[str, Any], connections: int, path: str | None = None, route: str | None = None
) -> dict[str, Any] | None:
    """The throughput entry of ``stage`` at ``connections`` on ``path`` (or ``route``); the layer's own path
    (its first entry) when neither is given; None when it was not measured."""
    entries = [t for t in stage.get("throughput", []) if t["connections"] == connections and t.get("rps")]
    if route is not None:
        entries = [t for t in entries if _route(t) == route]
    elif path is not None:
        entries = [t for t in entries if t["path"] == path]
    else:
        entries = [t for t in entries if t["path"] == stage.get("path", t["path"])]
    return entries[0] if entries else None


_route = route  # ``rate`` takes a parameter of the same name


def _rps(stage: dict[str, Any], connections: int) -> float | None:
    entry = rate(stage, connections)
    return entry["rps"] if entry else None


def run_line(results: dict[str, Any]) -> str:
    """Which run the figures come from, and the contention warning when it was busy."""
    env, run = results["environment"], results.get("run")
    where = f"on {env['cpus_usable']} CPUs ({env['cpu_model']}), {env['measured_at'][:10]}"
    if not run:
        return f"measured {where}, outside a publishing run (no calibration)"
    floor = run["calibration"]["floor"]
    line = (f"run {run['run_id']} {where}; the machine's calibration before the run: the in-process floor "
            f"{floor['median']:,.0f} calls/s in short rounds, noise {floor['noise']:.1%} over "
            f"{len(floor['calls_per_s'])} rounds")  # fmt: skip
    alarm = warning(run["calibration"])
    return f"{alarm}. {line}" if alarm else line


def _crash(crash: dict[str, Any]) -> str:
    figures = (
        f"{crash['failed']} of {crash['requests']} requests failed, {crash['longest_stall_s']:.2f} s without any answer"
    )
    if crash["recovered"]:
        return f"{figures}; back at full strength after {crash['recovery_s']} s, with nobody's help"
    return f"{figures}; never came back (watched for {crash['observed_s']:.0f} s)"


def _crash_steps(steps: dict[str, Any]) -> str:
    """One README line: the server crash repeated, each step's range over the repetitions (harness.podwindow)."""

    def span(key: str, unit: str = " s") -> str:
        s = steps["summary"].get(key)
        return f"{s['min']:g} to {s['max']:g}{unit} (median {s['median']:g})" if s else "not measured here"

    return (
        f"- The same kill {len(steps['runs'])} times, at different points of the probe period: "
        f"{span('failed', '')} failed requests, against the dead pod's share of the load of "
        f"{span('pod_share_per_s', ' requests/s')}; the pod was not Ready after {span('pod_unready_s')}, "
        f"kube-proxy's rules no longer sent to it after {span('rules_updated_s')}, the last failure came after "
        f"{span('last_failure_s')}."
    )


def _upgrade(up: dict[str, Any]) -> str:
    served = "then served version 2" if up["serves_new_version"] else "did NOT end up serving version 2"
    ordinary = (
        f" (the slowest request before it: {up['ordinary_slowest_s']:.2f} s)" if "ordinary_slowest_s" in up else ""
    )
    return (
        f"{up['failed']} of {up['requests']} requests failed and the longest wait for an answer was "
        f"{up['longest_stall_s']:.2f} s{ordinary} ({up['mechanism']}), {served}"
    )


def _bad_release(bad: dict[str, Any]) -> str:
    """One README line: what a bad release did to the clients, and the way back."""
    stopped = f"refused ({bad['refused_because']})" if bad["refused"] else "not refused"
    wrong = f"{bad['wrong']} wrong answers over {bad['wrong_for_s']:.1f} s" if bad["wrong"] else "no wrong answer"
    back = f"done {bad['answers_again_s']:.1f} s later" if bad["answers_again_s"] is not None else "never done"
    return (f"- Bad release under load, {bad['change']}: {stopped}; {bad['failed']} of {bad['requests']} requests "
            f"failed, {bad['longest_stall_s']:.1f} s without any answer, {wrong}; way back: `{bad['rollback']}`, "
            f"{back}.")  # fmt: skip


def _notice(result: dict[str, Any]) -> str:
    """One fault's time to notice, as a README line."""
    return f"- Time to notice ({result['what']}): {notice.describe(result)}."


def release_table(results: dict[str, Any]) -> str:
    """Per served layer and bad release: refused, failed, without an answer, wrong answers, back after."""
    header = f"{'layer':<24}{'bad release':<10}{'refused':>9}{'failed':>9}{'no answer':>11}{'wrong':>8}{'back':>8}"
    rows = [header, "-" * len(header)]
    for s in results["stages"]:
        for kind, bad in s.get("bad_release", {}).items() if s.get("bad_release", {}).get("applicable", True) else ():
            back = "-" if bad["answers_again_s"] is None else f"{bad['answers_again_s']:.1f} s"
            rows.append(f"{s['layer']:<24}{kind:<10}{'yes' if bad['refused'] else 'no':>9}{bad['failed']:>9}"
                        f"{bad['longest_stall_s']:>9.1f} s{bad['wrong']:>8}{back:>8}")  # fmt: skip
    rows.append(
        "bad releases under load through each layer's own mechanism: broken = an artifact that fails to load, "
        "wrong = one that loads and names the wrong species, setting = MODEL_PATH names no file; each watched "
        f"{_window(results)} s (or as long as the release took), then rolled back; wrong: answers naming the wrong "
        "species; back: from the rollback's start until it was done and the old version answered a new request"
    )
    return "\n".join(rows)


def notice_table(results: dict[str, Any]) -> str:
    """Per served layer and fault: when the first operator signal came, where, and the failed requests."""
    header = f"{'layer':<24}{'fault':<12}{'first signal':>13}  {'where':<34}{'failed':>8}{'no answer':>11}"
    rows = [header, "-" * len(header)]
    for s in results["stages"]:
        faults = s.get("notice", {})
        for fault, seen in faults.items() if faults.get("applicable", True) else ():
            first = seen["first_signal"]
            when = f"{first['at_s']:.1f} s" if first else "never"
            where = first["source"][:33] if first else f"nothing in {seen['observed_s']:.0f} s"
            rows.append(f"{s['layer']:<24}{fault:<12}{when:>13}  {where:<34}{seen['failed']:>8}"
                        f"{seen['longest_stall_s']:>9.1f} s")  # fmt: skip
    rows.append(
        "time to notice under load: hung = one worker stopped (SIGSTOP; the server where there are no workers), "
        "crash_loop = the model file damaged on disk, then its process killed (in Kubernetes: rolled out in an "
        "image); first signal: the earliest log line at WARNING or worse, status or event an operator could see"
    )
    return "\n".join(rows)


def _answered(entry: dict[str, Any], key: str) -> str:
    """A table cell: ``key`` of a scenario result, or n/a where the layer has no use for it."""
    return str(entry[key]) if entry.get("applicable", True) else "n/a"


def _recovers(crash: dict[str, Any]) -> str:
    if not crash.get("applicable", True):
        return "n/a"
    return f"{crash['recovery_s']:.1f} s" if crash["recovered"] else "never"


def rates_table(results: dict[str, Any]) -> str:
    """Single-row requests/s per layer and path, with spread, and each against bare gunicorn on the same route."""
    bare = next((s for s in results["stages"] if s["layer"] == BARE), None)
    header = (f"{'layer':<24}{'path':<33}{'rps@1':>11}{'rps@8':>11}{'p50@1 ms':>10}{'conn/req':>10}"
              f"{'CPU@8':>7}  {'@8 against 03 on the same route'}")  # fmt: skip
    rows = [header, "-" * len(header)]
    for s in results["stages"]:
        for path in dict.fromkeys(t["path"] for t in s.get("throughput", [])):
            one, eight = rate(s, 1, path), rate(s, 8, path)
            same = rate(bare, 8, route=route(eight)) if bare and eight else None
            against = "-" if not same or same is eight else ratio(eight, same)
            cpu = eight.get("server_cpu_cores") if eight else None
            rows.append(
                f"{s['layer'] if path == s['path'] else '':<24}{path:<33}{plus_minus(one) if one else '-':>11}"
                f"{plus_minus(eight) if eight else '-':>11}{one['latency_ms']['p50'] if one else '-':>10}"
                f"{_conn(eight):>10}{'-' if cpu is None else cpu:>7}  {against}"
            )
    rows.append(
        f"median of {results.get('rounds', 1)} interleaved rounds, ± half their range; '{SAME}' where the ranges "
        "overlap; conn/req: TCP connections the client opened per request; CPU@8: the server's cores at 8 clients"
    )
    return "\n".join(rows)


def _conn(entry: dict[str, Any] | None) -> str:
    value = (entry or {}).get("client_connections_per_request")
    return "-" if value is None else f"{value:.2f}"


def summary_table(results: dict[str, Any]) -> str:
    """The rates table and the capability-and-cost table as plain text (the tour and the README print them)."""
    header = (
        f"{'layer':<24}{'curl':>5}{'kill server: failed':>21}{'no answer':>10}"
        f"{'back':>7}{'kill worker: back':>19}{'upgrade: failed':>17}{'stall':>7}{'+lines':>7}{'MiB':>7}"
        f"{'+brings':>8}{'50 slow: ok':>13}"
    )
    rows = [header, "-" * len(header)]
    for s in results["stages"]:
        crash, worker, up = s["crash"], s.get("crash_worker", {"applicable": False}), s["upgrade"]
        stall = f"{up['longest_stall_s']:.2f}" if up.get("applicable", True) else "n/a"
        no_answer = f"{crash['longest_stall_s']:.1f} s" if crash.get("applicable", True) else "n/a"
        rows.append(
            f"{s['layer']:<24}{'yes' if s['reach']['reachable'] else 'no':>5}"
            f"{_answered(crash, 'failed'):>21}{no_answer:>10}"
            f"{_recovers(crash):>7}{_recovers(worker):>19}{_answered(up, 'failed'):>17}{stall:>7}"
            f"{s['cost']['lines_added']:>7}{s['memory']['pss_mib'] or '-':>7}{brought_along_mib(s) or '-':>8}"
            f"{_slow_share(s):>13}"
        )
    rows.append(
        f"kills: SIGKILL under load, every layer watched {_window(results)} s; 'no answer': the longest time "
        "without a successful answer; MiB: PSS of the model's processes at idle; +brings: PSS of what the layer "
        "brings beside them (engine, cluster, sidecar); 50 slow: normal requests answered while 50 slow clients "
        "wait (alone/behind nginx)"
    )
    releases = [release_table(results)] if any("bad_release" in s for s in results["stages"]) else []
    noticed = [notice_table(results)] if any("notice" in s for s in results["stages"]) else []
    return "\n\n".join([rates_table(results), "\n".join(rows), *releases, *noticed, run_line(results)])


def _slow_share(stage: dict[str, Any]) -> str:
    """Share of normal requests answered under 50 slow clients: alone/with the proxy where both were measured."""
    shares = [e["runs"].get("50", {}).get("during", {}).get("answered_share") for e in stage.get("slow_clients", [])]
    return "/".join("-" if v is None else f"{v:.0%}" for v in shares) or "n/a"


def _window(results: dict[str, Any]) -> str:
    windows = {s["crash"]["observed_s"] for s in results["stages"] if s["crash"].get("applicable", True)}
    return "/".join(f"{w:.0f}" for w in sorted(windows)) or "-"


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
    return lines


def _throughput(results: dict[str, Any], stage: dict[str, Any]) -> list[str]:
    """A line per path the layer was measured on: requests/s at 8 clients with spread, against the
    previous layer and bare gunicorn on the same route, and the connections the client opened."""
    lines = []
    previous = stage_of(results, stage["stage"] - 1)
    for path in dict.fromkeys(t["path"] for t in stage.get("throughput", [])):
        eight = rate(stage, 8, path)
        if not eight:
            continue
        text = f"- Throughput at 8 clients ({path}): {plus_minus(eight)} requests/s"
        before = rate(previous, 8, route=route(eight)) if previous else None
        if before:
            text += f", against the previous layer on the same route ({before['path']}): {ratio(eight, before)}"
        if eight.get("client_connections_per_request") is not None:
            text += f"; the client opened {eight['client_connections_per_request']:.2f} connections per request"
        lines.append(text + ".")
    direct, proxied = (rate(stage, 8, route=r) for r in ("direct", "nginx"))
    if direct and proxied and direct.get("client_connections_per_request") is not None:
        lines.append(
            f"- What nginx changes, measured in the same rounds: the client opened "
            f"{proxied['client_connections_per_request']:.2f} TCP connections per request through it against "
            f"{direct['client_connections_per_request']:.2f} without it (a sync worker closes every connection; "
            f"nginx keeps the client's open); its rate at 8 clients against the rate without it: "
            f"{ratio(proxied, direct)}."
        )
    return lines


def window_table() -> str:
    """Each layer's window on the app (``Layer.window``: where the logs go, what reports health, what collects
    metrics) as a Markdown table: what the layer's classes state, not a measurement."""
    from harness.layers import LAYERS  # the layers import the harness, this module among it

    return window_markdown(*LAYERS.values())


def window_markdown(*layers: type) -> str:
    """``layers``' windows on the app (``Layer.window``) as a Markdown table, a row each."""
    rows = ["| layer | logs: where, and how to read them | health: what reports it | metrics: what collects them |",
            "|---|---|---|---|"]  # fmt: skip
    for layer in layers:
        w = layer.window
        rows.append(f"| {layer.name} | {w['logs']} | {w['health']} | {w['metrics']} |")
    return "\n".join(rows) + "\n"


def not_in_run(results: dict[str, Any], where: str, what: str = "") -> str:
    """A measurement the published run lacks (it predates it, or the machine could not run it), as a line."""
    run = (results.get("run") or {}).get("run_id") or "measured outside a publishing run"
    if what:
        return f"- Not in the published run ({run}), which predates them: {what}; `make results` measures them.\n"
    return f"- Not in the published run ({run}): `make results` measures it where {where}.\n"


def render(name: str, results: dict[str, Any]) -> str:
    """The text of block ``name`` (``table``, ``window``, ``stageN``, ``slowN``, ``postN``...) for these results."""
    if name == "table":
        return f"```\n{summary_table(results)}\n```\n"
    if name == "window":
        return window_table()
    if name == "decide":
        from harness import decide  # a reader's situations against these results

        return f"{decide.markdown(decide.EXAMPLES, results)}\n({run_line(results)}; rerun `make results` to refresh.)\n"
    if name == "capacity":
        from harness import capacity  # it imports the cluster's layer, which imports this module

        if not results.get("capacity"):
            return not_in_run(results, "a cluster answers")
        return f"{capacity.markdown(results['capacity'])}\n({run_line(results)}; rerun `make results` to refresh.)\n"
    if name == "versus":
        from harness import versus  # it imports the layers, which import this module

        if not results.get("versus", {}).get("layers"):
            return not_in_run(results, "a Docker engine with Compose and a cluster answer")
        return f"{versus.markdown(results['versus'])}\n\n({run_line(results)}; rerun `make results` to refresh.)\n"
    if name.startswith("slow"):
        stage = stage_of(results, int(name.removeprefix("slow")))
        lines = _slow_clients(stage) if stage else []
        if not lines:
            return "- Slow clients: not measured in the last scorecard run.\n"
        return "\n".join([*lines, f"- ({run_line(results)}; rerun `make results` to refresh.)"]) + "\n"
    number = int(name.removeprefix("stage").removeprefix("post"))
    stage = stage_of(results, number)
    if stage is None:
        why = results.get("not_measured", {}).get(str(number), "not in the last scorecard run")
        return f"- Not measured in the last scorecard run: {why}.\n"
    if name.startswith("post"):  # the post's statement quoted atop the stage README, against its figures
        return f"{post.markdown(number, results)}\n({run_line(results)}; rerun `make results` to refresh.)\n"
    cost, memory = stage["cost"], stage["memory"]
    lines = []
    if not stage["crash"].get("applicable", True):  # no server: the in-process floor
        t = rate(stage, 1)
        lines.append(f"- In-process floor: {plus_minus(t)} single-row predictions/s, p50 {t['latency_ms']['p50']} ms; "
                     f"reach: {stage['reach']['why']}.")  # fmt: skip
    else:
        lines.append(f"- Kill the server process under load (SIGKILL): {_crash(stage['crash'])}.")
        if stage.get("crash_worker", {}).get("applicable"):
            lines.append(f"- Kill one worker under load: {_crash(stage['crash_worker'])}.")
        if "crash_steps" in stage:
            lines.append(_crash_steps(stage["crash_steps"]))
        lines.append(f"- Upgrade to version 2 under load: {_upgrade(stage['upgrade'])}.")
        if "upgrade_alternative" in stage:
            lines.append(
                f"- The same upgrade the other way, in the same run: {_upgrade(stage['upgrade_alternative'])}."
            )
        lines += [_bad_release(b) for b in stage.get("bad_release", {}).values()]
        lines += [_notice(n) for n in stage.get("notice", {}).values() if isinstance(n, dict)]
        later = [label for key, label in LATER if key not in stage]
        if later:  # the harness measures them now; the published run predates them
            lines.append(not_in_run(results, "", what=", ".join(later)).rstrip())
        lines += _throughput(results, stage)
    brings = brought_along_mib(stage)
    lines.append(
        f"- Cost: {cost['lines_added']} lines of code and configuration added against the previous stage, "
        f"{cost['packages']} pinned packages ({cost['installed_mib']} MiB installed), "
        + (
            f"{memory['pss_mib']} MiB PSS at idle in {memory['processes']} process(es)"
            if memory["pss_mib"] is not None
            else "memory not measured from the host"
        )
        + (f", and {brings} MiB PSS of what the layer brings beside them." if brings else ".")
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
    lines.append(f"- ({run_line(results)}; rerun `make results` to refresh.)")
    return "\n".join(lines) + "\n"


def readmes() -> list[Path]:
    """Every README that may hold figure blocks."""
    return [ROOT / "README.md", *(p / "README.md" for p in STAGES.values())]


def rendered(path: Path, results: dict[str, Any]) -> str:
    """The README text with every figure block re-rendered from ``results``."""
    return BLOCK.sub(
        lambda m: m.group(1) + render(m.group(2), results) + m.group(4) if OURS.fullmatch(m.group(2)) else m.group(0),
        path.read_text(),
    )


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


if __name__ == "__main__":  # `python -m harness.readme`: re-render every block from the committed results
    import json

    for changed in update(json.loads((ROOT / "results" / "scorecard.json").read_text())):
        print(f"updated the figures in {changed.relative_to(ROOT)}")
