"""``callthrottle status`` (and the snapshots ``top`` refreshes): what every number, trunk,
tenant and pool carries now. Read only: they go through an :class:`~callthrottle._inspector.Inspector`, never a
throttle, and write nothing to the backend."""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import click

from .._errors import BackendUnavailable
from ._common import Target, backend_options, console, run
from ._render import render, written

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._inspector import Inspector
    from .._models import Usage

__all__ = ("Filters", "Snapshot", "collect", "filter_options", "filters_from", "status")


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
class WindowRow:
    window: str  # as rate notation writes it: "100/hour"
    used: int
    allowed: int


@dataclass
class NumberRow:
    number: str
    state: str
    reason: str | None
    in_use: int
    cap: int
    waiting: int
    rates: list[str]  # each window's use: "37 of 100/hour"
    holders: list[HolderRow] | None = None
    remaining: float | None = None  # seconds until a cool-down ends (None: none running)
    oldest_wait: float | None = None  # seconds the longest-waiting caller has waited
    windows: list[WindowRow] = field(default_factory=list)


@dataclass
class LeaseRow:
    number: str
    token: str
    age: float
    expires_in: float


@dataclass
class OwnerRow:
    """An owner's live leases (what ``release-owner`` ends)."""

    owner: str
    leases: int
    holds: list[LeaseRow]


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
class Totals:
    """Of the numbers shown."""

    numbers: int = 0
    in_use: int = 0
    waiting: int = 0


@dataclass
class Snapshot:
    url: str
    refreshed: str = ""  # when it was read: local wall-clock time, ISO 8601
    totals: Totals = field(default_factory=Totals)
    numbers: list[NumberRow] = field(default_factory=list)
    owners: list[OwnerRow] | None = None  # with --holders: the leases, by owner
    groups: list[GroupRow] = field(default_factory=list)
    pools: list[PoolRow] = field(default_factory=list)

    @property
    def refreshed_time(self) -> str:
        """The time of day it was read (``HH:MM:SS``)."""
        return self.refreshed[11:19]

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
    snapshot = Snapshot(target.shown_url, _now())
    for number in sorted(numbers):
        row = await _number(inspector, number, filters)
        if row is not None:
            snapshot.numbers.append(row)
    snapshot.totals = Totals(
        len(snapshot.numbers),
        sum(row.in_use for row in snapshot.numbers),
        sum(row.waiting for row in snapshot.numbers),
    )
    if filters.holders:
        snapshot.owners = _by_owner(snapshot.numbers)
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


async def _number(inspector: Inspector, number: str, filters: Filters) -> NumberRow | None:
    """One number's row (None: filtered out by ``--busy``)."""
    usage = await inspector.usage(number)
    if filters.busy and not (usage.in_use or usage.waiting):
        return None
    status = await inspector.status(number)
    windows = await inspector.window_usage(number)
    row = NumberRow(
        number,
        status.state.value,
        status.reason,
        usage.in_use,
        usage.limit,
        usage.waiting,
        [f"{w.used} of {written(w.window)}" for w in windows],
        remaining=status.remaining,
        # A round trip only when someone waits (the count may be stale by then: None is fine).
        oldest_wait=await inspector.oldest_wait(number) if usage.waiting else None,
        windows=[WindowRow(written(w.window), w.used, w.window.amount) for w in windows],
    )
    if filters.holders:
        row.holders = [
            HolderRow(h.token, h.owner, h.age, h.expires_in, h.hold_left)
            for h in await inspector.holders(number)
        ]
    return row


def _by_owner(rows: list[NumberRow]) -> list[OwnerRow]:
    """The leases of the rows, by owner (the most leases first)."""
    owners: dict[str, list[LeaseRow]] = {}
    for row in rows:
        for h in row.holders or ():
            owners.setdefault(h.owner, []).append(
                LeaseRow(row.number, h.token, h.age, h.expires_in)
            )
    ordered = sorted(owners.items(), key=lambda item: (-len(item[1]), item[0]))
    return [OwnerRow(owner, len(leases), leases) for owner, leases in ordered]


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _usage(used: Usage) -> tuple[int, int, int]:
    return (used.in_use, used.limit, used.waiting)


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
            click.option("--holders", is_flag=True, help="List the live leases, by owner."),
        ]
    ):
        func = option(func)
    return func


def filters_from(target: Target, numbers: tuple[str, ...], **options: object) -> Filters:
    return Filters(
        numbers=tuple(target.number(n, "--number") for n in numbers),
        **options,  # type: ignore[arg-type]
    )


@click.command()
@backend_options
@filter_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def status(target: Target, numbers: tuple[str, ...], as_json: bool, **options: object) -> None:
    """Show every number (and trunk, tenant, pool): calls up against the cap, callers waiting
    (and the oldest one's wait), state (a cool-down's time left) and rate windows, with totals;
    with --holders, every lease by owner. Exits 1 when the backend is unreachable."""
    filters = filters_from(target, numbers, **options)

    async def once() -> Snapshot:
        try:
            async with target.inspector() as inspector:
                return await collect(inspector, target, filters)
        except BackendUnavailable as exc:
            raise click.ClickException(f"{target.shown_url} is unreachable: {exc}") from None

    snapshot = run(once)
    if as_json:
        click.echo(snapshot.to_json())
    else:
        console().print(render(snapshot))
