"""What ``callthrottle status`` and ``top`` show and the shared-state Prometheus collector
exports: one snapshot of the numbers (configured, or known to the backend), their trunks and
tenants and the pools, gathered through an :class:`~callthrottle._inspector.Inspector`. Read
only: nothing is written to the backend. No dependency of the ``cli`` or ``prometheus``
extras, so that both can use it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._config import Config
    from ._inspector import Inspector
    from ._models import Usage
    from ._rates import Window
    from ._terms import Term

__all__ = (
    "Filters",
    "GroupRow",
    "HolderRow",
    "LeaseRow",
    "NumberRow",
    "OwnerRow",
    "PoolRow",
    "Snapshot",
    "Source",
    "Totals",
    "WindowRow",
    "collect",
    "written",
)

# Units of the rate notation (``limits``' own: "100/hour", "10/2 minutes"), largest first.
_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


class Source(Protocol):
    """Where a snapshot is read: the configuration (configured numbers, trunks, tenants, pools)
    and the backend's URL as shown (without its password)."""

    @property
    def config(self) -> Config: ...

    @property
    def shown_url(self) -> str: ...


@dataclass(frozen=True)
class Filters:
    numbers: tuple[str, ...] = ()  # only these (E.164)
    match: str | None = None  # glob on the E.164 form
    pool: str | None = None  # only this pool's members
    busy: bool = False  # only numbers with calls up or callers waiting
    holders: bool = False  # list each number's holders
    rates: bool = True  # read each number's rate windows (one more read per number)
    # only numbers with a paid period and at most this many days of it left (lapsed included)
    expiring_within: int | None = None

    @property
    def selecting(self) -> bool:
        """Whether only some numbers are listed."""
        return (
            bool(self.numbers)
            or self.busy
            or any(each is not None for each in (self.match, self.pool, self.expiring_within))
        )


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
    # where the cap comes from: "policy v3", "run-time", "lowered", "config" or "default"
    cap_from: str = ""
    windows_from: str | None = None  # where the rate windows come from (None: it has none)
    # Its paid period (None: not tracked): the last day paid for (ISO date), the days of it
    # left, today included (0 or less once lapsed), and for people: "expires in 3 days",
    # "expired yesterday; released on 2027-02-08"; whether warnings are due (its warning window,
    # or lapsed).
    paid_until: str | None = None
    days_left: int | None = None
    expires: str | None = None
    warning: bool = False


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
    # the carrier policy in force: "policy v3 (1a2b3c4d5e6f), published 2026-12-05T12:00:00+08:00
    # by ops@host" or what stands in for it while none is published
    policy: str = ""
    refreshed: str = ""  # when it was read: local wall-clock time, ISO 8601
    totals: Totals = field(default_factory=Totals)
    numbers: list[NumberRow] = field(default_factory=list)
    owners: list[OwnerRow] | None = None  # with --holders: the leases, by owner
    groups: list[GroupRow] = field(default_factory=list)
    pools: list[PoolRow] = field(default_factory=list)
    filtered: bool = False  # only the numbers a filter selects are listed

    @property
    def refreshed_time(self) -> str:
        """The time of day it was read (``HH:MM:SS``)."""
        return self.refreshed[11:19]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


async def _pools(
    inspector: Inspector, target: Source, published: dict[str, list[str]], only: str | None
) -> dict[str, list[str]]:
    """The pools to show and their numbers: every pool the backend holds (``published``,
    whoever published it), then the configured ones it does not hold, with their configured
    numbers."""
    pools = dict(published)
    if only is not None and only not in pools:
        pools[only] = await inspector.pool_members(only)
    for name, numbers in inspector.config.pool_numbers().items():
        if not pools.get(name):
            pools[name] = list(numbers)
    return pools


async def collect(inspector: Inspector, target: Source, filters: Filters) -> Snapshot:
    """One snapshot of the numbers (configured, known to the backend, or named), their groups
    and pools, filtered. Read only: nothing is written (see :class:`Inspector`)."""
    await inspector.refresh_policy()  # one read: a policy published since the last snapshot
    config = inspector.config  # the published policy's, once one is
    published = await inspector.known_pools()
    pools = await _pools(inspector, target, published, filters.pool)
    if filters.numbers:
        numbers = set(filters.numbers)
    else:
        numbers = set(config.numbers) | set(await inspector.known_numbers())
        for members in pools.values():
            numbers.update(members)
        # A number the policy gives a paid period is listed before it is ever dialled.
        numbers.update(config.numbers_with_terms())
    if filters.pool is not None:
        numbers &= set(pools[filters.pool])
    if filters.match is not None:
        numbers = {n for n in numbers if fnmatch.fnmatchcase(n, filters.match)}
    now = inspector.calendar()  # one day for every row
    if filters.expiring_within is not None:
        numbers = {n for n in numbers if _expiring(inspector.term_for(n), now, filters)}
    snapshot = Snapshot(target.shown_url, _policy(inspector), _now(), filtered=filters.selecting)
    usages: dict[str, Usage] = {}  # each number read once: the pools' totals reuse them
    for number in sorted(numbers):
        usage = usages[number] = await inspector.usage(number)
        row = await _number(inspector, number, usage, filters, now)
        if row is not None:
            snapshot.numbers.append(row)
    snapshot.totals = Totals(
        len(snapshot.numbers),
        sum(row.in_use for row in snapshot.numbers),
        sum(row.waiting for row in snapshot.numbers),
    )
    if filters.holders:
        snapshot.owners = _by_owner(snapshot.numbers)
    if not filters.numbers and filters.match is None and filters.expiring_within is None:
        for kind, groups in (("trunk", config.trunks), ("tenant", config.tenants)):
            for name in groups:
                used = await inspector.group_usage(kind, name)
                snapshot.groups.append(GroupRow(f"{kind}:{name}", *_usage(used)))
        for name, members in sorted(pools.items()):
            if filters.pool is not None and name != filters.pool:
                continue
            of_members = [usages.get(m) or await inspector.usage(m) for m in members]
            snapshot.pools.append(
                PoolRow(
                    name,
                    len(members),
                    sum(u.in_use for u in of_members),
                    sum(u.limit for u in of_members),
                    sum(u.waiting for u in of_members),
                    bool(published.get(name)),
                )
            )
    return snapshot


def _expiring(term: Term | None, now: float, filters: Filters) -> bool:
    """Whether the number passes ``--expiring-within``: a paid period with at most that many
    days left (a lapsed number's are 0 or fewer)."""
    assert filters.expiring_within is not None
    return term is not None and term.days_left(now) <= filters.expiring_within


async def _number(
    inspector: Inspector, number: str, usage: Usage, filters: Filters, now: float
) -> NumberRow | None:
    """One number's row (None: filtered out by ``--busy``)."""
    if filters.busy and not (usage.in_use or usage.waiting):
        return None
    status = await inspector.status(number, now=now)  # the calendar's state once it lapsed
    windows = await inspector.window_usage(number) if filters.rates else []
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
        cap_from=inspector.cap_source(number, status),
        windows_from=inspector.windows_source(number, status),
    )
    term = inspector.term_for(number)
    if term is not None:
        row.paid_until = term.paid_until.isoformat()
        row.days_left = term.days_left(now)
        row.expires = term.describe(now)
        row.warning = now >= term.warn_at
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


def _policy(inspector: Inspector) -> str:
    published = inspector.published
    if published is None:
        return "no carrier policy is published: caps from the configuration given, else the default"
    when = dt.datetime.fromtimestamp(published.published_at).astimezone()
    return (
        f"policy v{published.version} ({published.digest[:12]}), published "
        f"{when.isoformat(timespec='seconds')} by {published.by}"
    )


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _usage(used: Usage) -> tuple[int, int, int]:
    return (used.in_use, used.limit, used.waiting)


def written(window: Window) -> str:
    """A window as rate notation writes it: ``100/hour``, ``10/2 minutes``; a calendar day
    reads ``500/day (from local midnight)``."""
    if window.calendar:
        return f"{window.amount}/day (from local midnight)"
    for unit, seconds in _UNITS:
        count, rest = divmod(window.seconds, seconds)
        if count >= 1 and rest == 0:
            return f"{window.amount}/{unit}" if count == 1 else f"{window.amount}/{count:g} {unit}s"
    return f"{window.amount} per {window.seconds:g} s"  # under a second: no notation for it
