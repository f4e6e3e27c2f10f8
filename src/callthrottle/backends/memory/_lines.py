"""A number's line, and the hand-over of a freed slot to it; a pool's line. Twins of ``purge``,
``promote`` and ``retry_in`` in ``_common.lua`` (a lease lapses, the first in line gets its
slot or is told to ask), and of its pool line helpers.

Every helper here is synchronous: atomic within the event loop, as a Lua function is on Redis.
"""

from __future__ import annotations

import math
from operator import attrgetter
from typing import TYPE_CHECKING

from .._base import SESSION_HOLD_MAX
from ._groups import _GroupLines
from ._records import _expiry, _live, _NumberState

if TYPE_CHECKING:
    from ._pool_state import _Pool
    from ._records import _Entry


_session_of = attrgetter("session")
_expires_of = attrgetter("expires")


def _lapses_first(holders: dict[str, _Entry], granted: list[str], soonest: float) -> bool:
    """Whether the lease first in line to lapse is one of those just ``granted`` (the first of
    which to lapse does at ``soonest``): the lowest expiry (a session lease's deadline), the
    lowest token among equal ones. Twin of the test of ``ZRANGE H 0 0`` in ``promote`` in
    ``_common.lua``."""
    for entry in holders.values():  # the oldest first: mostly the first one tells
        if entry.expires < soonest:
            return False
    return min(t for t, e in holders.items() if e.expires == soonest) in granted


class _Lines(_GroupLines):
    """Settling a number (lapsed leases out, the line served) and granting a slot."""

    __slots__ = ()

    def _settle(self, number: str, now: float) -> _NumberState:
        """Drop expired holders and waiters, then grant waiters whose turn came. Twin of
        ``purge`` and ``promote`` in ``_common.lua``."""
        state = self._numbers.get(number)
        if state is None:
            state = self._numbers[number] = _NumberState()
            return state
        if state.next_expiry <= now:
            self._purge(number, state, now)
        if state.queue:
            self._promote(number, state, now)
        return state

    def _purge(self, number: str, state: _NumberState, now: float) -> None:
        """Drop expired holders and waiters. Twin of ``purge`` in ``_common.lua``."""
        holders, queue = state.holders, state.queue
        for token in [t for t, e in holders.items() if _expiry(e) <= now]:
            entry = holders.pop(token)
            # a release says "expired"
            self._lapsed.mark(number, token, entry.ttl, _expiry(entry), now)
            self._leave_groups(number, token, entry.owner, nudge=False)
        for token in [t for t, e in queue.items() if e.expires <= now]:
            del queue[token]
        # A session's expiry only moves later (or its leases go with it): a lower bound.
        state.next_expiry = min(
            min(map(_expiry, holders.values()), default=math.inf),
            min((e.expires for e in queue.values()), default=math.inf),
        )

    def _promote(self, number: str, state: _NumberState, now: float) -> None:
        """Grant waiters whose turn came (the line is not empty). Twin of ``promote`` in
        ``_common.lua``."""
        holders, queue = state.holders, state.queue
        policy = self._policies.get(number)
        if policy is None:
            if len(holders) >= queue[next(iter(queue))].limit:
                return  # full (the loop below grants nothing, and tells nobody): the hot path
        elif policy.unavailable(now) is not None:
            return
        # Windows set at run time, or a warm-up begun, since a waiter queued apply to it too:
        # it is not handed a slot without asking then, so that they are checked and counted.
        ruled = policy is not None and (bool(policy.rates) or policy.warming_since is not None)
        # Nor is a waiter that queued before the newest policy came (its cap may be older).
        reached = self._stamp_reached
        granted: list[str] = []
        soonest = math.inf  # when the first lease granted here lapses (its score in H on Redis)
        while queue:
            token = next(iter(queue))
            entry = queue[token]
            cap = entry.limit if policy is None else policy.cap_in_force(entry.limit, now)
            full = len(holders) >= cap
            if full or entry.rated or ruled or entry.since <= reached:
                # The head asks again: to time its wait from the new leases (when one of them
                # lapses first: it slept until an older one would), or (rate windows) to take
                # the free slot itself, so that its windows are checked.
                if not full or (granted and _lapses_first(holders, granted, soonest)):
                    self._notify(entry.owner, "nudged", number, token)
                return
            del queue[token]
            self._grant(state, number, token, entry, now)
            self._notify(entry.owner, "granted", number, token)
            granted.append(token)
            soonest = min(soonest, entry.expires)

    @staticmethod
    def _grant(state: _NumberState, number: str, token: str, entry: _Entry, now: float) -> None:
        """The entry holds a slot from now. Twin of ``lease_times``, ``grant_life`` and
        ``hold_for_session`` in ``_common.lua``."""
        entry.since = now
        session = entry.session
        if session is None:
            entry.deadline = now + entry.max_hold if entry.max_hold is not None else math.inf
            entry.expires = expires = min(now + entry.ttl, entry.deadline)
        else:
            # A session lease lives while its session does, never past its deadline (a lost
            # release cannot hold the slot for ever); the grant keeps the session alive.
            hold = entry.max_hold if entry.max_hold is not None else SESSION_HOLD_MAX
            entry.deadline = entry.expires = now + hold
            entry.life = session.keep(now, entry.ttl)
            expires = _expiry(entry)
        state.holders[token] = entry
        state.next_expiry = min(state.next_expiry, expires)

    def _retry_in(self, number: str, state: _NumberState, now: float) -> float | None:
        """Seconds until a slot may free without anyone being told: the earliest lease expiry,
        or the end of a lowered cap (None: neither). Twin of ``retry_in`` in ``_common.lua``."""
        retry_in = None
        holders = state.holders.values()
        if holders:
            # (Without a session lease, each lapses at its own expiry: read without a call.)
            lapse_of = _expiry if any(map(_session_of, holders)) else _expires_of
            retry_in = max(min(map(lapse_of, holders)) - now, 0.0)
        policy = self._policies.get(number)
        lapses = None if policy is None or policy.lowered_cap is None else policy.lowered_until
        if lapses is not None:
            lapses_in = lapses - now
            if lapses_in > 0 and (retry_in is None or lapses_in < retry_in):
                retry_in = lapses_in
        return retry_in

    def _leave_line(self, pool: str, state: _Pool, waiter: tuple[str, str]) -> None:
        """A caller leaves a pool's line (taken a slot, given up); the next is told when it was
        first. Twin of ``leave_pool_line`` in ``_common.lua``."""
        was_first = next(iter(state.line), None) == waiter
        state.line.pop(waiter, None)
        if was_first:
            self._nudge_line(pool, state)

    def _nudge_line(self, pool: str, state: _Pool) -> None:
        """Tell the first caller waiting on a pool to pick again. Twin of ``nudge_pool_line`` in
        ``_common.lua``."""
        first = next(iter(state.line), None)
        if first is not None:
            self._notify(first[0], "nudged", f"pool:{pool}", first[1])

    def _note_load(self, pool: str, number: str, state: _NumberState | None, token: str) -> None:
        """After a release through ``pool``: the number's load as it will be (``release.lua``
        does as much when given the pool's keys)."""
        pool_state = self._pools.get(pool)
        if pool_state is None or number not in pool_state.members:
            return
        held = 0 if state is None else _live(state, self._clock(), token)
        pool_state.set_load(number, held)
        self._nudge_line(pool, pool_state)
