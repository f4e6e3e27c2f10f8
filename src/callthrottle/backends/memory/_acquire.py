"""Taking a slot, or a place in line: twin of ``acquire.lua`` (and of each operation of
``batch.lua`` that acquires); each helper below names its twin among that file's local
functions."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import TYPE_CHECKING

from .._results import AcquireResult, Outcome
from ._lines import _Lines
from ._records import _Entry, _expiry
from ._sessions import _Session
from ._windows import _EMPTY_LOG, _RateLog

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..._rates import GroupPlan, RatePlan, Window
    from .._requests import AcquireRequest
    from ._records import _NumberState

_GRANTED = AcquireResult(Outcome.GRANTED)  # immutable: one instance serves every grant
_CONFLICT = AcquireResult(Outcome.CONFLICT)
_STALE = AcquireResult(Outcome.STALE)
_QUEUED = Outcome.QUEUED

# A place in line's reply, made field by field (a frozen dataclass's __init__ sets each field
# through object.__setattr__, three times slower): the hot path of a contended number.
_FIELDS = ("outcome", "retry_in", "state", "reason", "window", "for_callee", "group", "fenced")
assert tuple(f.name for f in fields(AcquireResult)) == _FIELDS
_new_result = object.__new__
_set_outcome, _set_retry_in, *_set_others = (
    getattr(AcquireResult, name).__set__ for name in _FIELDS
)
_set_state, _set_reason, _set_window, _set_for_callee, _set_group, _set_fenced = _set_others


def _queued(retry_in: float | None) -> AcquireResult:
    """``AcquireResult(Outcome.QUEUED, retry_in)``, made faster."""
    result: AcquireResult = _new_result(AcquireResult)
    _set_outcome(result, _QUEUED)
    _set_retry_in(result, retry_in)
    _set_state(result, None)
    _set_reason(result, None)
    _set_window(result, None)
    _set_for_callee(result, False)
    _set_group(result, None)
    _set_fenced(result, False)
    return result


class _Acquire(_Lines):
    """``acquire``, and the decision it shares with ``pick``."""

    __slots__ = ()

    async def acquire(self, request: AcquireRequest, *, enqueue: bool) -> AcquireResult:
        """Lua twin: ``acquire.lua`` (also run for each operation of ``batch.lua`` and for each
        number ``pick.lua`` tries)."""
        # Decided at once, then the checkpoint (a caller cancelled there withdraws what was
        # written, as after a reply lost on Redis); none after a place in line: the caller's
        # wait for its turn is its checkpoint.
        number, token, owner, limit, ttl, max_hold, rates, session, version = request  # (hot)
        if version != self._stamp and self._stale(version):
            result = _STALE
        elif session:
            result = self._acquire_in_session(request, enqueue)
        else:
            result = self._acquire_now(number, token, owner, limit, ttl, max_hold, enqueue, rates)
            if result.outcome is _QUEUED:
                return result
        await self._checkpoint()
        return result

    def _acquire_in_session(self, request: AcquireRequest, enqueue: bool) -> AcquireResult:
        """An acquire of a session lease: granted or queued, it keeps the session alive. Twin
        of ``told`` in ``acquire.lua``."""
        owner, ttl = request.owner, request.ttl
        record = self._sessions.get(owner)
        if record is None:
            record = self._sessions[owner] = _Session()
        result = self._acquire_now(
            request.number, request.token, owner, request.limit, ttl, request.max_hold, enqueue,
            request.rates, record,
        )  # fmt: skip
        if result.outcome is Outcome.GRANTED or result.outcome is Outcome.QUEUED:
            record.keep(self._clock(), ttl)
        return result

    def _acquire_now(
        self,
        number: str,
        token: str,
        owner: str,
        limit: int,
        ttl: float,
        max_hold: float | None,
        enqueue: bool,
        rates: RatePlan,
        session: _Session | None = None,
    ) -> AcquireResult:
        """The decision, after the checkpoint: the body of ``acquire.lua``, which ``pick.lua``
        runs for each number it tries (``session``: the record of a session lease)."""
        now = self._clock()
        policy = self._policies.get(number)
        # A waiter keeps the cap it asked for: the one in force is worked out when a slot frees.
        asked = limit
        if policy is None:
            windows = rates.windows  # what _NO_POLICY's windows_in_force and cap_in_force give
        else:
            unavailable = policy.unavailable(now)
            if unavailable is not None:
                # A token that holds a live slot already (an acquire sent again after its
                # reply was lost, the number disabled meanwhile) is told so: its call is up.
                numbers = self._numbers.get(number)
                held = None if numbers is None else numbers.holders.get(token)
                if held is not None and _expiry(held) > now:
                    return _GRANTED if held.owner == owner else _CONFLICT
                # Refused for good: a place it had in a group's line goes.
                self._leave_group_lines(number, token, owner, self._layout.groups_for(number))
                until = policy.until  # a cool-down's end; one past gives no time to retry at
                retry_in = None if until is None or until < now else until - now
                return AcquireResult(Outcome.UNAVAILABLE, retry_in, unavailable, policy.reason)
            limit = policy.cap_in_force(limit, now)
            windows = policy.windows_in_force(rates, now)
        state = self._settle(number, now)
        holders, queue = state.holders, state.queue
        current = holders.get(token)
        if current is not None:
            return _GRANTED if current.owner == owner else _CONFLICT
        callee_log = None if rates.callee is None else self._callee_log(number, rates)
        # Without windows or groups nothing can refuse a call but the cap.
        rated = bool(windows) or callee_log is not None or bool(rates.groups)
        waiting = queue.get(token)
        if waiting is not None:
            if waiting.owner != owner:
                return _CONFLICT
            if next(iter(queue)) == token and len(holders) < limit:
                # First in line with a slot free: take it, if the rate windows allow.
                del queue[token]
                if rated:
                    refused = self._refusal(
                        number, token, owner, ttl, rates, now, windows, callee_log, wait=True
                    )
                    if refused is not None:
                        self._settle(number, now)
                        self._forget_if_idle(number, state)
                        return refused
                self._admit(state, number, token, waiting, now, windows, rates)
                if queue:  # the next is served (or told to ask) when a slot is still free
                    self._settle(number, now)
                return _GRANTED
            waiting.expires = expires = now + waiting.ttl
            state.next_expiry = min(state.next_expiry, expires)
            return _queued(self._retry_in(number, state, now))
        if rated:
            refused = self._refusal(
                number, token, owner, ttl, rates, now, windows, callee_log, wait=enqueue
            )
            if refused is not None:
                self._forget_if_idle(number, state)
                return refused
        expires = now + ttl
        # A session's waiter claims its slot itself, as a rated one does: one that died never
        # asks, and no slot is kept for it as long as its session lives.
        claims = rated or session is not None
        entry = _Entry(owner, ttl, asked, max_hold, expires, math.inf, claims, session=session)
        if not queue and len(holders) < limit:
            if self._ended.records:
                self._ended.forget(number, owner, token)  # a new lease of the token
            if rated:
                self._admit(state, number, token, entry, now, windows, rates)
            else:
                self._grant(state, number, token, entry, now)
            return _GRANTED
        retry_in = self._retry_in(number, state, now)
        if enqueue:
            if rates.groups:  # it waits in the number's line now
                self._leave_group_lines(number, token, owner, rates.groups)
            entry.since = now  # when it queued (the "since" of its meta in Lua)
            queue[token] = entry
            if self._ended.records:
                self._ended.forget(number, owner, token)  # a new lease of the token, to come
            state.next_expiry = min(state.next_expiry, expires)
            return _queued(retry_in)
        self._forget_if_idle(number, state)
        return AcquireResult(Outcome.REFUSED, retry_in)

    def _refusal(
        self,
        number: str,
        token: str,
        owner: str,
        ttl: float,
        rates: RatePlan,
        now: float,
        windows: tuple[Window, ...],
        callee_log: _RateLog | None,
        wait: bool,
    ) -> AcquireResult | None:
        """A full rate window's or group's refusal (a group registers a waiter), or None. Twin
        of ``refusal`` in ``acquire.lua``."""
        logs = [(self._rates.get(number), windows, "n"), (callee_log, rates.callee_windows, "c")]
        logs += [
            (self._group_logs.get(g.group), self._group_in_force(g)[1], g.group)
            for g in rates.groups
        ]
        refused = self._rate_refusal(logs, now, rates.tz_offset)
        if refused is not None:
            # It asks again when the window has room: meanwhile it keeps no group's slot.
            self._leave_group_lines(number, token, owner, rates.groups)
            return refused
        return self._group_full(number, token, owner, ttl, rates, now, wait=wait)

    def _rate_refusal(
        self,
        logs: Sequence[tuple[_RateLog | None, Sequence[Window], str]],
        now: float,
        tz_offset: float,
    ) -> AcquireResult | None:
        """The refusal of the first full window among the logs (``whose``: "n" the number's,
        "c" the callee's, else a group's name), or None. Twin of ``rate_limited`` in
        ``acquire.lua``."""
        wall = self._wall_clock()
        for log, windows, whose in logs:
            if log is None or not windows:
                continue
            refusal = log.refusal(windows, now, tz_offset, wall)
            if refusal is not None:
                retry_in, window = refusal
                group = whose if whose not in ("n", "c") else None
                return AcquireResult(
                    Outcome.RATE_LIMITED, retry_in, window=window, for_callee=whose == "c",
                    group=group,
                )  # fmt: skip
        return None

    def _callee_log(self, number: str, rates: RatePlan, create: bool = False) -> _RateLog | None:
        """The log of calls to the callee from the number's tag, if callee windows apply."""
        if rates.callee is None or not rates.callee_windows:
            return None
        key = (self._layout.tag_for(number), rates.callee)
        log = self._callees.get(key)
        if log is not None or not create:
            return log or _EMPTY_LOG
        log = self._callees[key] = _RateLog()
        if len(self._callees) % 1024 == 0:
            # Now and then, forget the callees whose calls all left their windows (on Redis
            # their logs expire), so that calls to ever new callees keep a bounded number.
            now = self._clock()
            self._callees = {k: v for k, v in self._callees.items() if v.lapses > now}
        return log

    def _group_full(
        self,
        number: str,
        token: str,
        owner: str,
        ttl: float,
        rates: RatePlan,
        now: float,
        wait: bool,
    ) -> AcquireResult | None:
        """None if every group has a slot; else the refusal (registering a waiter). A slot is
        free for the caller only if the callers ahead of it in the group's line leave one: a
        slot that frees is theirs first (see _group_has_room). Twin of ``group_full`` in
        ``acquire.lua`` (and ``join_group_line`` in ``_common.lua``)."""
        me = (owner, number, token)
        reserved = rates.priority >= 1
        for group in rates.groups:
            cap = self._group_in_force(group)[0]
            if cap is None or self._group_has_room(group, cap, me, reserved, now):
                continue
            self._leave_group_lines(number, token, owner, rates.groups, but=group.group)
            if wait:
                line = self._group_waiters.setdefault(group.group, {})
                if me not in line and reserved and group.reserve > 0:
                    self._group_reserve_line.setdefault(group.group, {})[me] = None
                line[me] = now + ttl
            # A cap of 0 for this call (all of it a reserve) is full with no lease to wait for.
            holders = self._group_holders.get(group.group)
            retry_in = None
            if holders:
                retry_in = max(min(map(_expiry, holders.values())) - now, 0.0)
            return AcquireResult(Outcome.GROUP_FULL, retry_in, group=group.group)
        return None

    def _leave_group_lines(
        self, number: str, token: str, owner: str, groups: Sequence[GroupPlan], but: str = ""
    ) -> None:
        """The caller leaves the line of every group but ``but``: it waits in one line at a
        time, so that two callers never each keep the slot the other waits for. Twin of
        ``leave_group_lines`` in ``acquire.lua``."""
        for group in groups:
            if group.group != but:
                self._leave_group_line(group.group, (owner, number, token), True)

    def _admit(
        self,
        state: _NumberState,
        number: str,
        token: str,
        entry: _Entry,
        now: float,
        windows: Sequence[Window],
        rates: RatePlan,
    ) -> None:
        """Grant the slot and count the call in every log and group it is under. Twin of
        ``grant`` in ``acquire.lua``."""
        self._grant(state, number, token, entry, now)
        if windows:
            self._rates.setdefault(number, _RateLog()).hit(windows, now)
        callee_log = self._callee_log(number, rates, create=True)
        if callee_log is not None:
            callee_log.hit(rates.callee_windows, now)
        for group in rates.groups:
            holders = self._group_holders.setdefault(group.group, {})
            holders[(number, token)] = entry
            # Out of the group's line; the next is told when a slot is still free for someone.
            cap, group_windows = self._group_in_force(group)
            free = cap is None or len(holders) < cap
            self._leave_group_line(group.group, (entry.owner, number, token), free)
            if group_windows:
                self._group_logs.setdefault(group.group, _RateLog()).hit(group_windows, now)
