"""A simulated campaign's report: charts of each number's concurrency against its cap and of
the waits for a slot, as a self-contained HTML page (images embedded as base64 PNG) or a PNG.
Needs the ``report`` extra (matplotlib)."""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.figure import Figure

    from ..simulate import CampaignResult

__all__ = ("FORMATS", "require_matplotlib", "write_report")

FORMATS = (".html", ".png")


def require_matplotlib() -> None:
    """Fail early, before a campaign runs, when the ``report`` extra is missing."""
    try:
        import matplotlib  # noqa: F401 - only checking that the extra is installed
    except ImportError:
        raise click.UsageError(
            "--report needs matplotlib, in the 'report' extra: pip install 'callthrottle[report]'"
        ) from None


def _concurrency(result: CampaignResult, fig: Figure, rows: int = 0) -> None:
    """One chart per number: calls up (the peak of each stretch of time) against its cap."""
    count = len(result.numbers)
    axes = fig.subplots(count + rows, 1, sharex=False, squeeze=False)[:, 0]
    for ax, report in zip(axes, result.numbers, strict=False):
        times = [i * result.bucket for i in range(len(report.timeline) + 1)]
        values = [*report.timeline, report.timeline[-1] if report.timeline else 0]
        ax.step(
            times, values, where="post", color="tab:blue", linewidth=2.5, label="calls up (peak)"
        )
        # Above the curve: a number working at its cap shows both.
        ax.axhline(report.cap, color="tab:red", linestyle="--", label=f"cap {report.cap}", zorder=4)
        ax.set_ylim(0, max(report.cap, report.max_concurrency) * 1.15 + 0.5)
        ax.set_xlim(0, result.duration)
        ax.set_ylabel("calls")
        mark = "" if report.within_cap else "  CAP EXCEEDED"
        ax.set_title(f"{report.number}: {report.calls} calls, peak {report.max_concurrency}{mark}")
        ax.legend(loc="lower right", fontsize="small")
    axes[count - 1].set_xlabel("simulated time (s)")
    if rows:
        _waits(result, axes[-1])


def _waits(result: CampaignResult, ax: object) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
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


def concurrency_png(result: CampaignResult) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 2.2 * len(result.numbers) + 0.5), layout="constrained")
    _concurrency(result, fig)
    return _png(fig)


def waits_png(result: CampaignResult) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.5), layout="constrained")
    _waits(result, fig.subplots())
    return _png(fig)


def combined_png(result: CampaignResult) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 2.2 * (len(result.numbers) + 1) + 0.5), layout="constrained")
    _concurrency(result, fig, rows=1)
    return _png(fig)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def html_page(result: CampaignResult) -> str:
    e = html.escape
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(str(cell))}</td>"
            for cell in (
                n.number,
                n.cap,
                n.calls,
                n.rejected,
                n.max_concurrency,
                "yes" if n.within_cap else "NO",
                f"{n.wait(0.5):.1f}",
                f"{n.wait(0.99):.1f}",
            )
        )
        + "</tr>"
        for n in result.numbers
    )
    refusals = (
        "".join(
            f"<tr><td>{e(reason)}</td><td>{count}</td></tr>"
            for reason, count in result.refusals.most_common()
        )
        or '<tr><td colspan="2">none</td></tr>'
    )
    verdict = (
        "every number stayed within its cap"
        if result.within_caps
        else "CAP EXCEEDED on " + ", ".join(n.number for n in result.numbers if not n.within_cap)
    )
    source = f"pool {result.pool}" if result.pool else f"{len(result.numbers)} numbers"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>callthrottle campaign report</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}
img{{max-width:100%}}</style></head><body>
<h1>Simulated campaign</h1>
<p>{result.agents} agents dialing from {e(source)} for {result.duration:g} simulated seconds
({result.speed:g}x, {result.elapsed:.1f} s real); call length {e(result.call_length)}.
{result.calls} calls placed, {result.waited} waited for a slot; {e(verdict)}.</p>
<h2>Numbers</h2>
<table><tr><th>number</th><th>cap</th><th>calls</th><th>carrier refused</th>
<th>max concurrency</th><th>within cap</th><th>wait p50 (s)</th><th>wait p99 (s)</th></tr>
{rows}</table>
<h2>Refusals</h2>
<table><tr><th>reason</th><th>count</th></tr>{refusals}</table>
<h2>Concurrency against the cap</h2>
{_img(concurrency_png(result), "calls up per number against its cap")}
<h2>Waits for a slot</h2>
{_img(waits_png(result), "distribution of the waits for a slot")}
</body></html>
"""


def write_report(result: CampaignResult, path: Path) -> None:
    """Write the report; its format follows the file's suffix (.html or .png)."""
    if path.suffix.lower() == ".png":
        path.write_bytes(combined_png(result))
    else:
        path.write_text(html_page(result), encoding="utf-8")
