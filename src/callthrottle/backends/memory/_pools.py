"""Pools of numbers: their members, and picking a number that admits the call. Twins of
``pool_update.lua``, ``pool_members.lua``, ``pick.lua`` and ``pool_leave.lua``."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..._rates import NO_RATES
from .._base import SESSION_HOLD_MAX
from .._results import Outcome, PickResult
from ._acquire import _Acquire
from ._choice import choose, every_one_lapsed
from ._pool_state import _RESTING, _Pool
from ._records import _expiry, _live
from ._sessions import _Session

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from ..._pools import MemberSpec
    from ..._rates import RatePlan
    from .._requests import PickRequest


def _with_call(plan: RatePlan, call: RatePlan) -> RatePlan:
    """A member's plan with the per-call parts of a pick (the callee counts only where callee
    windows apply)."""
    callee = call.callee if call.callee_windows else None
    if callee is None and not call.priority and plan is NO_RATES:
        return plan
    return replace(
        plan,
        callee=callee,
        callee_windows=call.callee_windows if callee is not None else (),
        priority=call.priority if plan.groups else 0,
        tz_offset=call.tz_offset,
    )


class _Pools(_Acquire):
    """``pool_update``, ``pool_members``, ``pick`` and ``pool_leave``."""

    __slots__ = ()

    async def pool_update(
        self, pool: str, add: Mapping[str, MemberSpec], remove: Sequence[str], policy: int = 0
    ) -> int:
        """Lua twin: ``pool_update.lua``."""
        await self._checkpoint()
        if policy != self._stamp and self._stale(policy):
            return -1
        state = self._pools.get(pool)
        if state is None:
            state = self._pools[pool] = _Pool()
        now = self._clock()
        for number, spec in add.items():
            numbers = self._numbers.get(number)
            state.add(number, spec, 0 if numbers is None else _live(numbers, now))
        for number in remove:
            state.remove(number)
        if not state.members:
            # Its counters start again, as on Redis, where they go with the last number. Its
            # line stays (callers still wait on it, and numbers may join it again), and so do
            # the records of slots picks took (a pick asked again still finds its slot, as on
            # Redis, where the record outlives the pool's members); the pool goes with both.
            state.cursor = state.picks = 0
            if not state.line and all(until <= now for _, until in state.taken.values()):
                del self._pools[pool]
            return 0
        return len(state.members)

    async def pool_members(self, pool: str) -> list[str]:
        """Lua twin: ``pool_members.lua``."""
        await self._checkpoint()
        state = self._pools.get(pool)
        return [] if state is None else list(state.order)

    def check_pool_members(self, pool: str, numbers: Iterable[str]) -> None:
        """No Lua twin: any number may be in any pool here."""

    async def pick(self, request: PickRequest, *, wait: bool = False) -> PickResult:
        """Lua twin: ``pick.lua``."""
        await self._checkpoint()
        if request.policy != self._stamp and self._stale(request.policy):
            return PickResult(Outcome.STALE)
        pool, token, owner, ttl = request.pool, request.token, request.owner, request.ttl
        max_hold, strategy, call = request.max_hold, request.strategy, request.call
        state = self._pools.get(pool)
        if state is None:
            return PickResult(Outcome.REFUSED)
        now = self._clock()
        record = None
        if request.session:
            record = self._sessions.get(owner)
            if record is None:
                record = self._sessions[owner] = _Session()
        # The token holds a slot of the pool already (this pick is asked again): that slot, as
        # the first pick answered; nothing else is touched.
        taken = state.taken.get(token)
        if taken is not None and taken[1] > now:
            numbers = self._numbers.get(taken[0])
            holder = None if numbers is None else numbers.holders.get(token)
            if holder is not None and _expiry(holder) > now:
                granted = holder.owner == owner
                if granted and record is not None:
                    record.keep(now, ttl)  # (its lease's life goes on)
                return PickResult(Outcome.GRANTED if granted else Outcome.CONFLICT, taken[0])
        me = (owner, token)
        line = state.line
        for waiter in [w for w, lapses in line.items() if lapses <= now]:
            del line[waiter]
        first = next(iter(line), None)
        if first is not None and first != me:
            if every_one_lapsed(state, request):
                return PickResult(Outcome.REFUSED, None, None, lapsed=True)
            if wait:
                line[me] = now + ttl
            return PickResult(Outcome.QUEUED if wait else Outcome.REFUSED)
        candidates, lapsed = choose(state, request, now)
        earliest: float | None = None
        full = False  # some number was full: a slot that frees may serve the caller
        for number in candidates:
            spec = state.members[number]
            rates = _with_call(spec.plan, call)
            result = self._acquire_now(
                number, token, owner, spec.limit, ttl, max_hold, False, rates, record
            )
            if result.outcome is Outcome.GRANTED:
                if record is not None:  # granted (or held already): the session lives on
                    record.keep(now, ttl)
                # Remembered as long as the lease may live (a session lease is not renewed).
                hold = max_hold if max_hold is not None else SESSION_HOLD_MAX
                state.took(token, number, now + (hold if record is not None else ttl), now)
                numbers = self._numbers.get(number)
                state.set_load(number, 0 if numbers is None else _live(numbers, now))
                if strategy == "sticky" and call.callee is not None:
                    state.remember(call.callee, number, now + request.sticky_ttl, now)
                if first == me:
                    self._leave_line(pool, state, me)
                return PickResult(result.outcome, number)
            if result.outcome is Outcome.CONFLICT:
                return PickResult(result.outcome, number)
            # It could not take the call: to the back, behind every number not known to be
            # unable, so that the next picks look at others first.
            state.set_load(number, _RESTING)
            full = full or result.outcome in (Outcome.REFUSED, Outcome.GROUP_FULL)
            if result.retry_in is not None and (earliest is None or result.retry_in < earliest):
                earliest = result.retry_in
        # A place in line only for a caller that a freed slot may serve: one held back by rate
        # windows (its callee's, say) or by states alone would keep every other caller waiting.
        if wait and full:
            line[me] = now + ttl  # a place kept in line (its order unchanged when it had one)
        elif first == me:
            self._leave_line(pool, state, me)
        return PickResult(Outcome.REFUSED, None, earliest, lapsed=lapsed)

    async def pool_leave(self, pool: str, token: str, owner: str) -> None:
        """Lua twin: ``pool_leave.lua``."""
        await self._checkpoint()
        state = self._pools.get(pool)
        if state is not None:
            self._leave_line(pool, state, (owner, token))
