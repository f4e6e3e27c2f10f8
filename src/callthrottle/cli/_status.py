"""``callthrottle status`` and ``callthrottle top``: what every number, trunk, tenant and pool
carries now. Read only: they go through an :class:`~callthrottle._inspector.Inspector`, never a
throttle, and write nothing to the backend."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, TypeVar

import anyio
import click
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._survey import Filters, Snapshot, collect
from ._common import Target, backend_options, console, run

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import RenderableType

__all__ = ("Filters", "Snapshot", "collect", "render", "status", "top")


def _load(in_use: int, cap: int) -> Text:
    style = "bold red" if in_use > cap else "yellow" if cap and in_use >= cap else "green"
    return Text(f"{in_use}/{cap}", style=style)


_STATE_STYLES = {"active": "green", "warming": "cyan", "cooling": "yellow"}


def render(snapshot: Snapshot) -> RenderableType:
    """The snapshot as rich tables."""
    tables: list[RenderableType] = []
    numbers = Table(title=f"numbers on {snapshot.url}", title_justify="left")
    for column in ("number", "state", "in use/cap", "waiting", "rate windows (used/allowed)"):
        numbers.add_column(column, justify="right" if column in ("waiting",) else "left")
    with_holders = any(row.holders is not None for row in snapshot.numbers)
    if with_holders:
        numbers.add_column("holders (token, owner, age, expires in)")
    for row in snapshot.numbers:
        state = Text(row.state, style=_STATE_STYLES.get(row.state, "bold red"))
        if row.reason:
            state.append(f" ({row.reason})", style="dim")
        cells: list[RenderableType] = [
            row.number,
            state,
            _load(row.in_use, row.cap),
            str(row.waiting),
            ", ".join(row.rates) or "-",
        ]
        if with_holders:
            cells.append(
                "\n".join(
                    f"{h.token}  {h.owner}  {h.age:.0f} s  {h.expires_in:.0f} s"
                    for h in row.holders or ()
                )
                or "-"
            )
        numbers.add_row(*cells)
    if not snapshot.numbers:
        numbers.caption = "no numbers: none configured, and the backend holds no state"
    tables.append(numbers)
    if snapshot.groups:
        groups = Table(title="trunks and tenants", title_justify="left")
        for column in ("group", "in use/cap", "waiting"):
            groups.add_column(column)
        for group in snapshot.groups:
            groups.add_row(group.group, _load(group.in_use, group.cap), str(group.waiting))
        tables.append(groups)
    if snapshot.pools:
        pools = Table(title="pools", title_justify="left")
        for column in ("pool", "numbers", "in use/caps", "waiting"):
            pools.add_column(column)
        for pool in snapshot.pools:
            name = Text(pool.pool)
            if not pool.published:  # listed by the configuration only, or by nobody
                where = "configured only: " if pool.members else ""
                name.append(f" ({where}not in the backend)", style="dim")
            pools.add_row(name, str(pool.members), _load(pool.in_use, pool.cap), str(pool.waiting))
        tables.append(pools)
    return Group(*tables)


F = TypeVar("F", bound="Callable[..., object]")


def filter_options(func: F) -> F:
    for option in reversed(
        [
            click.option(
                "--number",
                "numbers",
                multiple=True,
                metavar="NUMBER",
                help="Only this number (repeatable).",
            ),
            click.option("--match", metavar="GLOB", help="Only numbers matching, e.g. '+86571*'."),
            click.option("--pool", help="Only the numbers of this pool."),
            click.option("--busy", is_flag=True, help="Only numbers with calls up or waiting."),
            click.option("--holders", is_flag=True, help="List each number's live leases."),
        ]
    ):
        func = option(func)
    return func


def _filters(target: Target, numbers: tuple[str, ...], **options: object) -> Filters:
    return Filters(
        numbers=tuple(target.number(n, "--number") for n in numbers),
        **options,  # type: ignore[arg-type]
    )


@click.command()
@backend_options
@filter_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def status(target: Target, numbers: tuple[str, ...], as_json: bool, **options: object) -> None:
    """Show every number (and trunk, tenant, pool): calls up against the cap, callers waiting,
    state and rate windows; with --holders, who holds each slot."""
    filters = _filters(target, numbers, **options)

    async def once() -> Snapshot:
        async with target.inspector() as inspector:
            return await collect(inspector, target, filters)

    snapshot = run(once)
    if as_json:
        click.echo(snapshot.to_json())
    else:
        console().print(render(snapshot))


@click.command()
@backend_options
@filter_options
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    help="Stop after this many refreshes (default: until Ctrl-C).",
)
def top(
    target: Target,
    numbers: tuple[str, ...],
    interval: float,
    iterations: int | None,
    **options: object,
) -> None:
    """The status tables, refreshed live until Ctrl-C."""
    filters = _filters(target, numbers, **options)
    out = console()

    async def watch() -> None:
        async with target.inspector() as inspector:
            snapshot = await collect(inspector, target, filters)
            with Live(render(snapshot), console=out, auto_refresh=False) as live:
                count = 1
                while iterations is None or count < iterations:
                    await anyio.sleep(interval)
                    snapshot = await collect(inspector, target, filters)
                    live.update(render(snapshot), refresh=True)
                    count += 1

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a live view ends
        run(watch)
