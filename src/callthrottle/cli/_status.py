"""``callthrottle status`` and ``callthrottle top``: what every number, trunk, tenant and pool
carries now. Read only: they go through an :class:`~callthrottle._inspector.Inspector`, never a
throttle, and write nothing to the backend."""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import anyio
import click
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ._common import Target, backend_options, console, run

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import RenderableType

    from .._inspector import Inspector
    from .._models import Usage

__all__ = ("Filters", "Snapshot", "collect", "render", "status", "top")


@dataclass(frozen=True)
class Filters:
    numbers: tuple[str, ...] = ()  # only these (E.164)
    match: str | None = None  # glob on the E.164 form
    pool: str | None = None  # only this pool's members
    busy: bool = False  # only numbers with calls up or callers waiting
    holders: bool = False  # list each number's holders


@dataclass
class HolderRow:
    token: str
    owner: str
    age: float  # seconds since the slot was granted
    expires_in: float
    hold_left: float | None


@dataclass
class NumberRow:
    number: str
    state: str
    reason: str | None
    in_use: int
    cap: int
    waiting: int
    rates: list[str]
    holders: list[HolderRow] | None = None


@dataclass
class GroupRow:
    group: str  # "trunk:trunk-400", "tenant:acme"
    in_use: int
    cap: int
    waiting: int


@dataclass
class PoolRow:
    pool: str
    members: int
    in_use: int
    cap: int  # the sum of its members' caps
    waiting: int
    # Whether the backend holds the pool's numbers (published by a process); False: only the
    # configuration lists them (no process with this configuration has opened yet).
    published: bool = True


@dataclass
class Snapshot:
    url: str
    numbers: list[NumberRow] = field(default_factory=list)
    groups: list[GroupRow] = field(default_factory=list)
    pools: list[PoolRow] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


async def _pools(
    inspector: Inspector, target: Target, published: dict[str, list[str]], only: str | None
) -> dict[str, list[str]]:
    """The pools to show and their numbers: every pool the backend holds (``published``,
    whoever published it), then the configured ones it does not hold, with their configured
    numbers."""
    pools = dict(published)
    if only is not None and only not in pools:
        pools[only] = await inspector.pool_members(only)
    for name, numbers in target.config.pool_numbers().items():
        if not pools.get(name):
            pools[name] = list(numbers)
    return pools


async def collect(inspector: Inspector, target: Target, filters: Filters) -> Snapshot:
    """One snapshot of the numbers (configured, known to the backend, or named), their groups
    and pools, filtered. Read only: nothing is written (see :class:`Inspector`)."""
    config = target.config
    published = await inspector.known_pools()
    pools = await _pools(inspector, target, published, filters.pool)
    if filters.numbers:
        numbers = set(filters.numbers)
    else:
        numbers = set(config.numbers) | set(await inspector.known_numbers())
        for members in pools.values():
            numbers.update(members)
    if filters.pool is not None:
        numbers &= set(pools[filters.pool])
    if filters.match is not None:
        numbers = {n for n in numbers if fnmatch.fnmatchcase(n, filters.match)}
    snapshot = Snapshot(target.shown_url)
    rows: dict[str, NumberRow] = {}
    for number in sorted(numbers):
        usage = await inspector.usage(number)
        status = await inspector.status(number)
        if filters.busy and not (usage.in_use or usage.waiting):
            continue
        windows = await inspector.window_usage(number)
        row = NumberRow(
            number,
            status.state.value,
            status.reason,
            usage.in_use,
            usage.limit,
            usage.waiting,
            [str(w) for w in windows],
        )
        if filters.holders:
            row.holders = [
                HolderRow(h.token, h.owner, h.age, h.expires_in, h.hold_left)
                for h in await inspector.holders(number)
            ]
        rows[number] = row
    snapshot.numbers = list(rows.values())
    if not filters.numbers and filters.match is None:
        for kind, groups in (("trunk", config.trunks), ("tenant", config.tenants)):
            for name in groups:
                used = await inspector.group_usage(kind, name)
                snapshot.groups.append(GroupRow(f"{kind}:{name}", *_usage(used)))
        for name, members in sorted(pools.items()):
            if filters.pool is not None and name != filters.pool:
                continue
            usages = [await inspector.usage(member) for member in members]
            snapshot.pools.append(
                PoolRow(
                    name,
                    len(members),
                    sum(u.in_use for u in usages),
                    sum(u.limit for u in usages),
                    sum(u.waiting for u in usages),
                    bool(published.get(name)),
                )
            )
    return snapshot


def _usage(used: Usage) -> tuple[int, int, int]:
    return (used.in_use, used.limit, used.waiting)


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
