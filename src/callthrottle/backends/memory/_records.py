"""What the memory backend keeps of a number: its leases and its line (on Redis, the keys H, Q,
W and M described in ``_common.lua``), and the leases that lapsed or ended (its keys X and E)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._base import ENDED_KEPT, EXPIRED_KEPT

if TYPE_CHECKING:
    from ._sessions import _Session


@dataclass(slots=True)
class _Entry:
    """A holder or a waiter of one number. Twin of ``meta`` and ``parse_meta`` in
    ``_common.lua`` (a token's record in M, beside its score in H or W)."""

    owner: str
    ttl: float
    limit: int
    max_hold: float | None
    # holder: lease expiry (a session lease: its deadline); waiter: when its place lapses
    expires: float
    deadline: float = math.inf  # holder only: now + max_hold at grant time
    rated: bool = False  # has rate windows: never handed a slot without asking
    since: float = 0.0  # holder: when it was granted; waiter: when it queued
    session: _Session | None = None  # a session lease (or a waiter for one): its session
    life: int = 0  # a session lease: the life of its session it was granted in


def _expiry(entry: _Entry) -> float:
    """When a holder's lease lapses: its own expiry, or its session's when that comes first
    (a session lease's "expiry" is its session's: waiters time their retries by it). Twin of
    ``lapse_of`` in ``_common.lua``."""
    session = entry.session
    if session is None:
        return entry.expires
    return min(entry.expires, session.end_of(entry.life))


@dataclass(slots=True)
class _NumberState:
    """A number's leases (H on Redis) and line (Q and W), by token."""

    holders: dict[str, _Entry] = field(default_factory=dict)
    queue: dict[str, _Entry] = field(default_factory=dict)  # insertion order is FIFO order
    # At most the earliest expiry of any holder or waiter: until then nothing can lapse, so
    # settling need not look at every entry. Lowered whenever an entry's expiry is set.
    next_expiry: float = math.inf


def _live(state: _NumberState, now: float, but: str = "") -> int:
    """A pool member's load: its live leases (``but`` one, being released). Twin of
    ``live_leases`` in ``_common.lua``."""
    return sum(1 for t, e in state.holders.items() if _expiry(e) > now and t != but)


class _Lapsed:
    """Leases dropped because they lapsed (not renewed in time, or their session died), by
    number: token -> when its record lapses (:data:`EXPIRED_KEPT` TTLs on), so that a release
    arriving later reports the lease expired. Twin of ``lapsed_key``, ``mark_lapsed`` and
    ``remembered`` in ``_common.lua`` (the key X)."""

    __slots__ = ("marks", "records")

    def __init__(self) -> None:
        self.records: dict[str, dict[str, float]] = {}
        self.marks = 0

    def mark(self, number: str, token: str, ttl: float, lapse: float, now: float) -> None:
        """The lease ``token`` (taken with ``ttl``) lapsed at ``lapse``: remembered until
        :data:`EXPIRED_KEPT` ttls after that (a lapse older than that is forgotten, as on Redis,
        where the number's keys live that long past their leases). Twin of ``mark_lapsed`` in
        ``_common.lua``."""
        until = lapse + EXPIRED_KEPT * ttl
        if until <= now:
            return
        records = self.records.setdefault(number, {})
        for lapsed in [t for t, until in records.items() if until <= now]:
            del records[lapsed]
        records[token] = until
        self.marks += 1
        if self.marks % 1024 == 0:  # now and then, forget the numbers whose records all lapsed
            self.records = {
                n: r for n, r in self.records.items() if any(u > now for u in r.values())
            }

    def take(self, number: str, token: str, now: float) -> bool:
        """Whether the token's lease lapsed (recently enough to be remembered); the record goes:
        a second release finds nothing."""
        records = self.records.get(number)
        if not records:
            return False
        until = records.pop(token, None)
        if not records:
            del self.records[number]
        return until is not None and until > now

    def forget(self, number: str, token: str) -> None:
        records = self.records.get(number)
        if records:
            records.pop(token, None)


class _Ended:
    """Leases ended for good (released by another process, reset, released with their owner),
    by number: (owner, token) -> when its record lapses. A holder cut off meanwhile cannot
    count them again (:meth:`MemoryBackend.restore`); the owner's next lease of the token (a
    call ID used again) drops the record. Twin of ``ended_key``, ``mark_ended``, ``was_ended``
    and ``forget_ended`` in ``_common.lua`` (the key E)."""

    __slots__ = ("marks", "records")

    def __init__(self) -> None:
        self.records: dict[str, dict[tuple[str, str], float]] = {}
        self.marks = 0

    def mark(self, number: str, owner: str, token: str, ttl: float, now: float) -> None:
        """The lease ``token`` of ``owner`` ended for good. Twin of ``mark_ended`` in
        ``_common.lua``."""
        records = self.records.setdefault(number, {})
        for lapsed in [k for k, until in records.items() if until <= now]:
            del records[lapsed]
        records[(owner, token)] = now + ENDED_KEPT * ttl
        self.marks += 1
        if self.marks % 1024 == 0:  # now and then, forget the numbers whose records all lapsed
            self.records = {
                n: r for n, r in self.records.items() if any(u > now for u in r.values())
            }

    def ended(self, number: str, owner: str, token: str, now: float) -> bool:
        """Twin of ``was_ended`` in ``_common.lua``."""
        return self.records.get(number, {}).get((owner, token), -math.inf) > now

    def forget(self, number: str, owner: str, token: str) -> None:
        """A new lease of the token: its earlier one's end no longer applies. Twin of
        ``forget_ended`` in ``_common.lua``."""
        records = self.records.get(number)
        if records:
            records.pop((owner, token), None)
