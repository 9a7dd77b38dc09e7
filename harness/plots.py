"""Plots the notebooks share: a request timeline, labelled bars, the note of the machine, and ``show``.

Presentation only: every figure plotted here comes from harness.scenarios. Every notebook plot
goes through ``show``, which refuses a plot that does not say what it shows (tests/test_plots.py
checks the notebooks show plots no other way).
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.category import StrCategoryConverter
from matplotlib.figure import Figure

OK = "#2a9d8f"
FAILED = "#e63946"
WRONG = "#f4a261"  # answered, but naming the wrong species
NEUTRAL = "#8d99ae"


class Unlabelled(ValueError):
    """A plot that does not say what it shows: the message names the panel and what it lacks."""


def missing(fig: Figure) -> list[str]:
    """What each drawn panel of ``fig`` lacks: a title, a label (with its unit) on each axis that carries
    values, a legend where several labelled series share a panel. A categorical axis (one tick label per
    bar) is labelled by its ticks; a panel with nothing drawn on it only needs its title."""
    problems = []
    for number, ax in enumerate(fig.axes):
        name = ax.get_title() or f"panel {number + 1}"
        drawn = ax.has_data()
        if not ax.get_title():
            problems.append(f"{name}: no title")
        if not drawn:
            continue
        for letter, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            ticks = axis.get_ticklabels()
            categorical = isinstance(axis.get_converter(), StrCategoryConverter) or any(
                t.get_text() and not _number(t.get_text()) for t in ticks
            )
            if not axis.get_label_text() and not categorical and len(ticks):
                problems.append(f"{name}: no {letter}-axis label")
        labelled = {label for label in ax.get_legend_handles_labels()[1] if not label.startswith("_")}
        if len(labelled) > 1 and ax.get_legend() is None:
            problems.append(f"{name}: {len(labelled)} labelled series and no legend")
    return problems


def _number(text: str) -> bool:
    try:
        float(text.replace("\u2212", "-").replace(",", ""))
    except ValueError:
        return False
    return True


def show(fig: Figure) -> None:
    """Show ``fig`` once it says what it shows (``missing``), else raise Unlabelled."""
    problems = missing(fig)
    if problems:
        raise Unlabelled("; ".join(problems))
    plt.show()


def machine_note(fig: Figure, env: dict[str, Any]) -> None:
    """Write where the figures were measured in the bottom-right corner of ``fig``."""
    text = f"measured on {env['cpus_usable']} CPUs ({env['cpu_model']}), Python {env['python']}, {env['measured_at']}"
    fig.text(0.995, 0.005, text, ha="right", va="bottom", fontsize=7, color="gray")


def timeline(ax: Axes, result: dict[str, Any], title: str, event: str) -> None:
    """Requests answered and failed per time bucket of a crash or upgrade result, the event marked."""
    t = result["timeline"]
    width = t["t_s"][1] - t["t_s"][0] if len(t["t_s"]) > 1 else 0.1
    right = [o - w for o, w in zip(t["ok"], t.get("wrong") or [0] * len(t["ok"]))]
    ax.bar(t["t_s"], right, width, align="edge", color=OK, label="answered")
    if any(t.get("wrong") or ()):  # answered, wrongly: a model that loads but names the wrong species
        ax.bar(t["t_s"], t["wrong"], width, bottom=right, align="edge", color=WRONG, label="answered wrongly")
    ax.bar(t["t_s"], t["failed"], width, bottom=t["ok"], align="edge", color=FAILED, label="failed")
    ax.axvline(result["event_s"], color="black", linestyle="--", linewidth=1)
    top = max(o + f for o, f in zip(t["ok"], t["failed"])) or 1
    ax.set_ylim(0, top * 1.25)
    ax.text(result["event_s"], top * 1.12, f" {event}", fontsize=9)
    ax.set(title=title, xlabel="time since the load started (s)", ylabel=f"requests per {width * 1000:.0f} ms")
    ax.legend(loc="upper right", fontsize=8)


def bad_releases(results: dict[str, dict[str, Any]], layer: str, env: dict[str, Any]) -> Figure:
    """One timeline per bad release (harness.releases.every), the release and the rollback marked."""
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    for ax, (kind, result) in zip(axes[0], results.items()):
        verdict = "refused" if result["refused"] else "not refused"
        timeline(ax, result, f"{layer}: {kind} release ({verdict})", "release")
        top = ax.get_ylim()[1] / 1.25
        ax.axvline(result["rollback_event_s"], color="black", linestyle=":", linewidth=1)
        ax.text(result["rollback_event_s"], top * 1.02, " rollback", fontsize=9)
    machine_note(fig, env)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def bars(ax: Axes, labels: list[str], values: list[float], fmt: str = "{:.0f}", colors: Any = None) -> None:
    """A bar per label with its value written on top."""
    drawn = ax.bar(labels, values, color=colors or NEUTRAL)
    ax.bar_label(drawn, labels=[fmt.format(v) for v in values], fontsize=9, padding=2)
    ax.set_ylim(0, max(values) * 1.2 if max(values) > 0 else 1)


def autoscale(hpa: dict[str, Any], env: dict[str, Any]) -> Figure:
    """The HPA's run (harness.scenarios.autoscale): Ready pods and the HPA's desired count above, the requests
    answered and failed per second below, on one time axis; the load's span shaded in both."""
    fig, (pods, served) = plt.subplots(2, 1, figsize=(10, 5.2), sharex=True, height_ratios=(1, 1))
    t, s = hpa["timeline"], hpa["served"]
    pods.step(t["t_s"], t["ready"], where="post", color=OK, label="Ready pods")
    pods.step(t["t_s"], t["desired"], where="post", color=NEUTRAL, linestyle="--", label="the HPA's desired count")
    pods.set_ylim(0, max(max(t["ready"]), max(d or 0 for d in t["desired"])) + 1)
    pods.set(title="The HorizontalPodAutoscaler under CPU load, then quiet", ylabel="pods")
    width = s["t_s"][1] - s["t_s"][0] if len(s["t_s"]) > 1 else 1.0
    served.bar(s["t_s"], [n / width for n in s["ok"]], width, align="edge", color=OK, label="answered")
    served.bar(s["t_s"], [n / width for n in s["failed"]], width, bottom=[n / width for n in s["ok"]],
               align="edge", color=FAILED, label="failed")  # fmt: skip
    served.set(title="What the pods served meanwhile", xlabel="seconds since the load started",
               ylabel="requests per second")  # fmt: skip
    for ax in (pods, served):
        ax.axvspan(0, hpa["load_stopped_s"], color=FAILED, alpha=0.08, label=f"load: {hpa['clients']} clients")
        ax.legend(loc="upper right", fontsize=8)
    machine_note(fig, env)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def slow_clients(ax: Axes, result: dict[str, Any], title: str) -> None:
    """Normal requests answered and failed over time in a slow-clients result, the slow clients' wait shaded."""
    timeline(ax, result, title, f"{result['slow_clients']} slow clients connect")
    ax.axvspan(result["event_s"], result["release_s"], color=NEUTRAL, alpha=0.2, label="slow clients waiting")
    ax.legend(loc="upper right", fontsize=8)
