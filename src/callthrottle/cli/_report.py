"""A simulated campaign's report: the summary (the same words as the command line's, from
``simulate._explain``), each number's table row, charts of each number over time (calls up
against its cap, callers waiting, its states) and of the waits for a slot, and the run's
metadata, as a self-contained HTML page (images embedded as base64 PNG) or a PNG. Needs the
``report`` extra (matplotlib)."""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING

import click

from ..simulate._explain import findings, number_cells, pool_cells
from ..simulate._words import COLUMNS
from ._charts import combined_png, concurrency_png, waits_png

if TYPE_CHECKING:
    from pathlib import Path

    from ..simulate import CampaignResult
    from ._run_info import RunInfo

__all__ = ("FORMATS", "require_matplotlib", "write_report")

FORMATS = (".html", ".png")

_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
td.text{text-align:left}img{max-width:100%}pre{background:#f6f6f6;padding:.5em}
.error,.collapse{color:#b00;font-weight:bold}.warning{color:#a60}.ok{color:#070}"""

#: Columns written as text (left-aligned) rather than as figures.
_TEXT = {"number", "why", "states"}


def require_matplotlib() -> None:
    """Fail early, before a campaign runs, when the ``report`` extra is missing."""
    try:
        import matplotlib  # noqa: F401 - only checking that the extra is installed
    except ImportError:
        raise click.UsageError(
            "--report needs matplotlib, in the 'report' extra: pip install 'callthrottle[report]'"
        ) from None


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _numbers(result: CampaignResult) -> str:
    e = html.escape
    head = "".join(f"<th>{e(column)}</th>" for column in COLUMNS)
    table = [number_cells(n, result) for n in result.numbers]
    if result.pool is not None:
        table.append(pool_cells(result))
    rows = "".join(
        "<tr>"
        + "".join(
            f'<td class="text">{e(cell)}</td>' if column in _TEXT else f"<td>{e(cell)}</td>"
            for column, cell in cells.items()
        )
        + "</tr>\n"
        for cells in table
    )
    return f'<table class="numbers"><tr>{head}</tr>\n{rows}</table>'


def _run(info: RunInfo) -> str:
    e = html.escape
    options = "".join(
        f'<tr><td class="text">{e(name)}</td><td class="text">{e(value)}</td></tr>'
        for name, value in info.options
    )
    if info.configuration is None:
        config = (
            "<p>No configuration file: the caps from the options (or the defaults), the "
            "built-in reactions to carrier answers.</p>"
        )
    else:
        config = f"<p>{e(info.config_path or '')}:</p><pre>{e(info.configuration)}</pre>"
    return f"""<table class="run">
<tr><td class="text">date</td><td class="text">{e(info.date)}</td></tr>
<tr><td class="text">backend</td><td class="text">{e(info.backend)}</td></tr>
<tr><td class="text">callthrottle</td><td class="text">{e(info.version)}</td></tr>
{options}</table>
<h3>Configuration</h3>
{config}"""


def html_page(result: CampaignResult, info: RunInfo) -> str:
    e = html.escape
    summary = "\n".join(f'<p class="{f.level}">{e(f.text)}.</p>' for f in findings(result))
    refusals = (
        "".join(
            f'<tr><td class="text">{e(reason)}</td><td>{count}</td></tr>'
            for reason, count in result.refusals.most_common()
        )
        or '<tr><td colspan="2">none</td></tr>'
    )
    source = f"pool {result.pool}" if result.pool else f"{len(result.numbers)} numbers"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>callthrottle campaign report</title>
<style>{_STYLE}</style></head><body>
<h1>Simulated campaign</h1>
<p class="meta">{e(info.line())}</p>
<p>{result.agents} agents dialing from {e(source)} for {result.duration:g} simulated seconds
({result.speed:g}x, {result.elapsed:.1f} s real); call length {e(result.call_length)}.</p>
<h2>Summary</h2>
{summary}
<h2>Numbers</h2>
{_numbers(result)}
<h2>Refusals</h2>
<table><tr><th>reason</th><th>count</th></tr>{refusals}</table>
<h2>Each number over time</h2>
<p>Calls up (blue, filled, the peak of each stretch of time) against the cap (red, dashed)
and the cap in force when a carrier's answer lowered it (red, dotted); callers waiting for a
slot, on average (orange, right axis); the number's state when not active (shaded: cooling
down hatched, cap lowered yellow, out of service grey).</p>
{_img(concurrency_png(result, info), "calls up, callers waiting and state per number")}
<h2>Waits for a slot</h2>
{_img(waits_png(result), "distribution of the waits for a slot")}
<h2>Run</h2>
{_run(info)}
</body></html>
"""


def write_report(result: CampaignResult, path: Path, info: RunInfo) -> None:
    """Write the report; its format follows the file's suffix (.html or .png)."""
    if path.suffix.lower() == ".png":
        path.write_bytes(combined_png(result, info))
    else:
        path.write_text(html_page(result, info), encoding="utf-8")
