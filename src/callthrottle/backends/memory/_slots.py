"""A lease after it was taken: given back, abandoned, renewed, counted again. Twins of
``release.lua`` (and of each operation of ``batch.lua`` that releases), ``abandon.lua``,
``renew.lua`` and ``restore.lua``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .._results import ReleaseState, RenewState, RestoreOutcome
from ._lines import _Lines
from ._records import _Entry
from ._sessions import _Session

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._requests import AcquireRequest

_RELEASED, _EXPIRED, _UNKNOWN = ReleaseState.RELEASED, ReleaseState.EXPIRED, ReleaseState.UNKNOWN


class _Slots(_Lines):
    """``release``, ``abandon``, ``renew`` and ``restore``."""

    __slots__ = ()

    async def release(self, number: str, token: str, releaser: str, pool: str | None = None) -> int:
        """Lua twin: ``release.lua`` (also run for each operation of ``batch.lua``)."""
        # All the work happens before the checkpoint: a release cancelled there is not lost.
        outcome = self.release_now(number, token, releaser, pool)
        await self._checkpoint()
        return outcome

    def release_now(self, number: str, token: str, releaser: str, pool: str | None = None) -> int:
        """Lua twin: ``release.lua``, as :meth:`release` without the checkpoint: a plain call,
        which nothing can interrupt (a throttle on this backend gives slots back with it)."""
        state = self._numbers.get(number)
        if pool is not None:
            self._note_load(pool, number, state, token)
        now = self._clock()
        if state is None:
            return _EXPIRED if self._lapsed.take(number, token, now) else _UNKNOWN
        if state.next_expiry <= now:
            self._purge(number, state, now)
        entry = state.holders.pop(token, None)
        if entry is not None:
            if self._group_holders or self._group_waiters:
                self._leave_groups(number, token, entry.owner, nudge=True)
            if entry.owner != releaser:
                # Its holder may not hear of it (cut off): the record keeps it from counting
                # it again.
                self._ended.mark(number, entry.owner, token, entry.ttl, now)
                self._notify(entry.owner, "released", number, token)
            elif entry.session is not None:
                # A session's other processes hear of it too (the one that took it may hold
                # it still).
                self._notify(entry.owner, "released", number, token)
            if self._lapsed.records:
                self._lapsed.forget(number, token)
            outcome = _RELEASED
        elif self._lapsed.take(number, token, now):
            outcome = _EXPIRED
        else:
            outcome = _UNKNOWN
        if state.queue:  # the freed slot goes to the next in line
            self._promote(number, state, now)
        elif not state.holders:
            self._numbers.pop(number, None)
        return outcome

    async def abandon(self, number: str, token: str, owner: str) -> None:
        """Lua twin: ``abandon.lua``."""
        await self._checkpoint()
        state = self._numbers.get(number)
        if state is None:
            self._leave_groups(number, token, owner, nudge=True)
            return
        now = self._clock()
        self._settle(number, now)  # a lease that lapsed meanwhile is recorded as expired
        for entries in (state.queue, state.holders):
            entry = entries.get(token)
            if entry is not None and entry.owner == owner:
                del entries[token]
        self._leave_groups(number, token, owner, nudge=True)
        self._settle(number, now)
        self._forget_if_idle(number, state)

    async def renew(
        self, owner: str, items: Sequence[tuple[str, str]], ttl: float = 0.0
    ) -> list[RenewState]:
        """Lua twin: ``renew.lua`` (called once per number)."""
        await self._checkpoint()
        now = self._clock()
        states: list[RenewState] = []
        for number, token in items:
            if number not in self._numbers:
                states.append(RenewState.GONE)
                continue
            state = self._settle(number, now)
            holder = state.holders.get(token)
            waiter = state.queue.get(token)
            if holder is not None and holder.owner == owner and holder.session is not None:
                states.append(RenewState.HELD)  # its session keeps it alive, not renewals
            elif holder is not None and holder.owner == owner:
                holder.expires = min(now + holder.ttl, holder.deadline)
                state.next_expiry = min(state.next_expiry, holder.expires)
                final = holder.expires == holder.deadline
                states.append(RenewState.FINAL if final else RenewState.HELD)
            elif waiter is not None and waiter.owner == owner:
                waiter.expires = now + waiter.ttl
                state.next_expiry = min(state.next_expiry, waiter.expires)
                states.append(RenewState.QUEUED)
            else:
                states.append(RenewState.GONE)
            self._forget_if_idle(number, state)
        return states

    async def restore(self, request: AcquireRequest, *, age: float = 0.0) -> RestoreOutcome:
        """Lua twin: ``restore.lua``."""
        await self._checkpoint()
        number, token, owner, ttl = request.number, request.token, request.owner, request.ttl
        now = self._clock()
        state = self._settle(number, now)
        known = state.holders.get(token) or state.queue.get(token)
        if known is not None:
            if known.owner == owner and token in state.holders:
                return RestoreOutcome.RESTORED
            return RestoreOutcome.TAKEN
        if self._ended.ended(number, owner, token, now):
            self._forget_if_idle(number, state)
            return RestoreOutcome.ENDED
        record = None
        if (
            request.session
        ):  # a session lease: it lives on with its session (a new life if it ended)
            record = self._sessions.get(owner)
            if record is None:
                record = self._sessions[owner] = _Session()
        groups = request.rates.groups
        claims = bool(groups) or record is not None
        entry = _Entry(
            owner, ttl, request.limit, request.max_hold, now + ttl, math.inf, claims, session=record
        )
        self._grant(state, number, token, entry, now)
        entry.since = now - age
        for group in groups:
            self._group_holders.setdefault(group.group, {})[(number, token)] = entry
        return RestoreOutcome.RESTORED
