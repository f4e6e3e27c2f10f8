"""The report's charts (matplotlib, the ``report`` extra): per number, the calls up against its
cap, the callers waiting, the number's states over time and when it left the campaign for its
paid period; the waits for a slot."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from ..simulate._calendar import local_text, zone_name
from ..simulate._words import state_words

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..simulate import CampaignResult, NumberReport
    from ._run_info import RunInfo

__all__ = ("combined_png", "concurrency_png", "waits_png")

#: Inches per chart: the PNG of two numbers and the waits is 10 x 7.1 in.
ROW = 2.2
#: The shading of each state other than active (cooling: hatched, so it reads in grey too).
BANDS = {
    "cooling": ("#dadaeb", "//"),
    "lowered": ("#f6e8a6", ""),
    "warming": ("#c7e9c0", ""),
}
OUT_OF_SERVICE = ("#bdbdbd", "xx")  # flagged, disabled, expired, released


def _bands(ax: Axes, report: NumberReport, bucket: float) -> None:
    """Shade each stretch of time the number spent in a state other than active."""
    runs: list[tuple[str, int, int]] = []  # (state, first bucket, end bucket)
    for i, state in enumerate(report.states):
        if runs and runs[-1][0] == state and runs[-1][2] == i:
            runs[-1] = (state, runs[-1][1], i + 1)
        else:
            runs.append((state, i, i + 1))
    labelled = set()
    for state, first, end in runs:
        if state == "active":
            continue
        color, hatch = BANDS.get(state, OUT_OF_SERVICE)
        label = None if state in labelled else state_words(state)
        labelled.add(state)
        ax.axvspan(
            first * bucket, end * bucket, facecolor=color, hatch=hatch, edgecolor="#9e9ac8",
            linewidth=0, zorder=0, label=label,
        )  # fmt: skip


def _departure(ax: Axes, report: NumberReport, result: CampaignResult) -> None:
    """A line where the campaign first saw the number out for its paid period."""
    left = report.left
    if left is None:
        return
    when = local_text(result.at(left.at), result.zone)
    ax.axvline(
        left.at, color="black", linestyle="-.", linewidth=1.2, zorder=5,
        label=f"left: {state_words(left.state)} ({when})",
    )  # fmt: skip


def _steps(values: Sequence[float], bucket: float) -> tuple[list[float], list[float]]:
    times = [i * bucket for i in range(len(values) + 1)]
    return times, [*values, values[-1] if values else 0]


def _number(ax: Axes, report: NumberReport, result: CampaignResult) -> None:
    _bands(ax, report, result.bucket)
    times, values = _steps(report.timeline, result.bucket)
    # The trace is thick and filled, the cap a thin dashed line over it: a number working at
    # its cap shows both, the trace through the gaps of the dashes.
    ax.fill_between(times, values, step="post", color="tab:blue", alpha=0.2, linewidth=0, zorder=2)
    ax.step(times, values, where="post", color="tab:blue", linewidth=3, label="calls up", zorder=3)
    ax.axhline(
        report.cap, color="tab:red", linestyle=(0, (4, 4)), linewidth=1.2, zorder=4,
        label=f"cap {report.cap}",
    )  # fmt: skip
    if any(limit < report.cap for limit in report.limits):
        times, limits = _steps(report.limits, result.bucket)
        ax.step(
            times, limits, where="post", color="tab:red", linestyle=":", linewidth=1.2,
            zorder=4, label="cap in force",
        )  # fmt: skip
    _departure(ax, report, result)
    ax.set_ylim(0, max(report.cap, report.max_concurrency) * 1.15 + 0.5)
    ax.set_xlim(0, result.duration)
    ax.set_ylabel("calls up")
    # Callers waiting for a slot: on this number, or on the pool when dialing from one.
    queue, who = (result.queue, "waiting for the pool") if result.pool else (report.queue, "")
    waiting = ax.twinx()
    times, values = _steps(queue, result.bucket)
    label = f"callers {who or 'waiting'} (average)"
    waiting.step(times, values, where="post", color="tab:orange", linewidth=1.2, label=label)
    waiting.set_ylim(0, max(max(queue, default=0), 1) * 1.15)
    waiting.set_ylabel("waiting", color="tab:orange")
    mark = "" if report.within_cap else "  CAP EXCEEDED"
    ax.set_title(
        f"{report.number}: {report.calls} calls placed of {report.attempts} attempts, "
        f"peak {report.max_concurrency}{mark}"
    )
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = waiting.get_legend_handles_labels()
    waiting.legend(
        handles + more, labels + more_labels, loc="upper left", bbox_to_anchor=(1.08, 1),
        fontsize="small",
    )  # fmt: skip


def _concurrency(result: CampaignResult, fig: Figure, info: RunInfo | None, rows: int = 0) -> None:
    """One chart per number, and ``rows`` more (the waits) below them."""
    count = len(result.numbers)
    axes = fig.subplots(count + rows, 1, sharex=False, squeeze=False)[:, 0]
    for ax, report in zip(axes, result.numbers, strict=False):
        _number(ax, report, result)
    began = f"{local_text(result.start, result.zone)} ({zone_name(result.zone)})"
    axes[count - 1].set_xlabel(f"simulated time (s) from {began}")
    if rows:
        _waits(result, axes[-1])
    if info is not None:
        fig.suptitle(f"{info.line()}\n{info.command()}", fontsize="x-small", wrap=True)


def _waits(result: CampaignResult, ax: Axes) -> None:
    waits = result.waits
    ax.hist(waits or [0.0], bins=40, color="tab:green")
    ax.set_yscale("log")
    ax.set_xlabel("wait for a slot (simulated s)")
    ax.set_ylabel("calls")
    ax.set_title(f"waits of {len(waits)} placed calls ({result.waited} waited > 1 s)")


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    return out.getvalue()


def concurrency_png(result: CampaignResult, info: RunInfo | None = None) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, ROW * len(result.numbers) + 0.5), layout="constrained")
    _concurrency(result, fig, info)
    return _png(fig)


def waits_png(result: CampaignResult) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.5), layout="constrained")
    _waits(result, fig.subplots())
    return _png(fig)


def combined_png(result: CampaignResult, info: RunInfo | None = None) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, ROW * (len(result.numbers) + 1) + 0.5), layout="constrained")
    _concurrency(result, fig, info, rows=1)
    return _png(fig)
