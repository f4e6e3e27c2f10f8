"""``callthrottle simulate``: the load-test harness (a simulated campaign, a summary, a
report)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .._errors import InvalidArgument, ThrottleError
from ..simulate import DEFAULT_CAPS, CallLength, CampaignResult, caller_ids, run_campaign, sparkline
from ..simulate._calendar import check_start, local_text, zone_name
from ..simulate._explain import collapsed, findings, number_cells, pool_cells
from ..simulate._words import COLUMNS
from ._common import Target, backend_options, console, usage_error
from ._report import FORMATS, require_matplotlib, write_report
from ._run_info import RunInfo

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ("simulate",)

_SPARK = 48  # columns of the sparkline of calls up over time


def _caps(ctx: click.Context, param: click.Parameter, text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        caps = [int(part) for part in text.split(",")]
    except ValueError:
        caps = []
    if not caps or min(caps) < 1:
        raise click.BadParameter(f"a comma-separated list of caps >= 1, got {text!r}")
    return caps


def _call_length(ctx: click.Context, param: click.Parameter, text: str) -> CallLength:
    try:
        return CallLength.parse(text)
    except InvalidArgument as exc:
        raise click.BadParameter(exc.rule) from None


def _reports(ctx: click.Context, param: click.Parameter, paths: tuple[Path, ...]) -> list[Path]:
    for path in paths:
        if path.suffix.lower() not in FORMATS:
            raise click.BadParameter(f"{path} must end in .html or .png")
        # Checked now: a report that cannot be written would fail after the whole campaign.
        if not path.parent.is_dir():
            raise click.BadParameter(f"{path.parent} is not a directory")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise click.BadParameter(f"{path.parent} is not writable")
    if paths:
        require_matplotlib()
    return list(paths)


def _numbers(
    target: Target, count: int | None, cap: int | None, caps: list[int] | None
) -> list[tuple[str, int]]:
    """The campaign's numbers and caps: --caps, or --numbers x --cap, or the configured
    numbers, or four numbers with caps 20, 20, 15, 3."""
    if caps is not None:
        if count is not None and count != len(caps):
            raise usage_error(f"--numbers {count} but --caps lists {len(caps)} caps")
        return list(zip(caller_ids(len(caps)), caps, strict=True))
    if count is not None or cap is not None:
        return [(n, cap or 20) for n in caller_ids(count or len(DEFAULT_CAPS))]
    configured = list(target.config.numbers)
    if configured:
        return [(n, target.config.cap_for(n, 20)) for n in configured]
    return list(zip(caller_ids(len(DEFAULT_CAPS)), DEFAULT_CAPS, strict=True))


#: How the summary shows each kind of sentence (the words are the report's too).
_STYLES = {"ok": "green", "error": "bold red", "collapse": "bold red", "warning": "yellow"}


def summary(result: CampaignResult, out: Console) -> None:
    """The per-number table, the failed attempts by reason, then the findings."""
    # Two tables, so that each fits a terminal: the counts, then the states and a sparkline.
    numbers = Table(title="per number", title_justify="left")
    over_time = Table(title="per number over time", title_justify="left")
    counted = [c for c in COLUMNS if c != "states"]
    for column in counted:
        text = column in ("number", "why")
        numbers.add_column(column, justify="left" if text else "right", no_wrap=not text)
    over_time.add_column("number", no_wrap=True)
    over_time.add_column("states")
    over_time.add_column("calls up (█ = cap)", no_wrap=True, min_width=_SPARK)
    for n in result.numbers:
        cells = number_cells(n, result)
        row: list[str | Text] = [cells[c] for c in counted]
        row[counted.index("<= cap")] = (
            Text("✓", style="green") if n.within_cap else Text("✗", style="bold red")
        )
        numbers.add_row(*row)
        spark = Text(sparkline(n.timeline, n.cap, width=_SPARK), style="blue")
        over_time.add_row(n.number, cells["states"], spark)
    if result.pool is not None:
        pool = pool_cells(result)
        numbers.add_row(*(pool[c] for c in counted))
    out.print(numbers)
    out.print(over_time)
    refusals = Table(title="refusals by reason", title_justify="left")
    refusals.add_column("reason")
    refusals.add_column("count", justify="right")
    for reason, count in result.refusals.most_common():
        refusals.add_row(reason, str(count))
    if not result.refusals:
        refusals.add_row("none", "0")
    out.print(refusals)
    for finding in findings(result):
        style = _STYLES.get(finding.level)
        prefix = "warning: " if finding.level == "warning" else ""
        out.print(Text(prefix + finding.text, style=style or ""))


@click.command()
@backend_options
@click.option("--agents", type=click.IntRange(min=1), default=80, show_default=True)
@click.option("--numbers", "count", type=click.IntRange(min=1), help="Numbers to dial from.")
@click.option("--cap", type=click.IntRange(min=1), help="The same cap for every number [20].")
@click.option("--caps", callback=_caps, help="One cap per number, e.g. 20,15,3 [20,20,15,3].")
@click.option(
    "--pool", help="Dial from this pool (slot_from): the config's, or made of the numbers."
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    help="Simulated seconds.",
)
@click.option(
    "--call-length",
    default="exp:90",
    show_default=True,
    callback=_call_length,
    help="Call length (simulated s): exp:MEAN, lognormal:MEAN:SIGMA, fixed:S, uniform:LOW:HIGH.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Simulated seconds an agent waits for a slot before giving up.",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Simulated seconds per real second.",
)
@click.option(
    "--reject-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of placed calls the carrier refuses (reported with throttle.report).",
)
@click.option(
    "--reject-code",
    default="503",
    show_default=True,
    help="The carrier's answer to a refused call (SIP status or carrier code, e.g. 477).",
)
@click.option(
    "--start",
    help="When the campaign begins on its simulated calendar, e.g. 2027-01-30T09:00 (in the "
    "configured time zone) [now]: numbers whose paid period ends during it leave it.",
)
@click.option("--lease-ttl", type=click.FloatRange(min=0, min_open=True), default=30.0)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--report",
    "reports",
    multiple=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    callback=_reports,
    help="Write a report with charts: out.html (self-contained) or out.png. Repeatable.",
)
@click.option("--loop", type=click.Choice(["asyncio", "trio"]), default="asyncio")
@click.option(
    "--fail-on-collapse",
    is_flag=True,
    help="Exit with status 3 when most attempts did not become calls.",
)
def simulate(
    target: Target,
    count: int | None,
    cap: int | None,
    caps: list[int] | None,
    reports: list[Path],
    loop: str,
    reject_code: str,
    fail_on_collapse: bool,
    start: str | None,
    **settings: Any,
) -> None:
    """Dial a simulated outbound campaign in accelerated time, then show per number its
    attempts, the calls placed, the attempts that timed out or were refused and why, the states
    it went through, its peak concurrency against its cap and the waits, with warnings for
    undersized and idle numbers. Exit status: 0 when no number went over its cap (however many
    attempts failed: the summary says so), 1 if one did, 2 on bad input, 3 with
    --fail-on-collapse when most attempts did not become calls."""
    numbers = _numbers(target, count, cap, caps)
    # Without configured numbers, the campaign's own caps apply (--caps), unless it dials from
    # a pool of the configuration.
    configured = bool(target.config.numbers) or settings["pool"] in target.config.pools
    zone = target.config.timezone if configured else None
    try:
        first = check_start(time.time() if start is None else start, zone, settings["duration"])
    except InvalidArgument as exc:
        raise click.BadParameter(str(exc), param_hint="'--start'") from None
    began = f"{local_text(first, zone)} ({zone_name(zone)})"
    info = RunInfo.collect(click.get_current_context(), target.shown_url, {"start": began})
    out = console()
    options = {} if target.prefix is None else {"key_prefix": target.prefix}
    source = f"pool {settings['pool']}" if settings["pool"] else f"{len(numbers)} numbers"
    out.print(
        f"{settings['agents']} agents dialing from {source} for {settings['duration']:g} "
        f"simulated s ({settings['speed']:g}x) from {began} on {target.shown_url}"
    )
    out.print(Text(info.line(), style="dim"))
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=out,
        transient=True,
    ) as bar:
        task = bar.add_task("dialing", total=1.0, status="")

        def progress(fraction: float, result: CampaignResult) -> None:
            status = " ".join(f"{n.active}/{n.cap}" for n in result.numbers)
            bar.update(task, completed=fraction, status=f"{result.calls} calls, up {status}")

        async def campaign() -> CampaignResult:
            return await run_campaign(
                numbers,
                url=target.url,
                config=target.config if configured else None,
                reject_code=reject_code,
                options=options,
                progress=progress,
                start=first,
                **settings,
            )

        # The library's warnings (carrier answers, ...) are the campaign's expected events:
        # counted in the summary, not logged over the progress bar.
        library = logging.getLogger("callthrottle")
        level = library.level
        library.setLevel(logging.ERROR)
        try:
            result = anyio.run(campaign, backend=loop)
        except InvalidArgument as exc:
            raise usage_error(str(exc)) from None
        except ThrottleError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            library.setLevel(level)
    summary(result, out)
    for path in reports:
        write_report(result, path, info)
        out.print(f"report written to {path}")
    if not result.within_caps:
        sys.exit(1)
    sys.exit(3 if fail_on_collapse and collapsed(result) else 0)
