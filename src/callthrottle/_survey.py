"""What ``callthrottle status`` and ``top`` show and the shared-state Prometheus collector
exports: one snapshot of the numbers (configured, or known to the backend), their trunks and
tenants and the pools, gathered through an :class:`~callthrottle._inspector.Inspector`. Read
only: nothing is written to the backend. No dependency of the ``cli`` or ``prometheus``
extras, so that both can use it."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._config import Config
    from ._inspector import Inspector
    from ._models import Usage

__all__ = (
    "Filters",
    "GroupRow",
    "HolderRow",
    "NumberRow",
    "PoolRow",
    "Snapshot",
    "Source",
    "collect",
)


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
    inspector: Inspector, target: Source, published: dict[str, list[str]], only: str | None
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


async def collect(inspector: Inspector, target: Source, filters: Filters) -> Snapshot:
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
    usages: dict[str, Usage] = {}  # each number read once: the pools' totals reuse them
    for number in sorted(numbers):
        usage = usages[number] = await inspector.usage(number)
        status = await inspector.status(number)
        if filters.busy and not (usage.in_use or usage.waiting):
            continue
        windows = await inspector.window_usage(number) if filters.rates else []
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


def _usage(used: Usage) -> tuple[int, int, int]:
    return (used.in_use, used.limit, used.waiting)
