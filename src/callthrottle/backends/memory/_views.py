"""What an operator sees (read only: nothing here changes the state, not even to drop what
lapsed): a number's usage, leases and rate windows, a group's usage, the numbers and pools
known. Twins of ``usage.lua``, ``holders.lua``, ``oldest_wait.lua``, ``window_usage.lua`` and
``group_usage.lua``."""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, cast

from ..._models import Holder, Usage, WindowUsage
from ._policy import _NO_POLICY, _Policies
from ._records import _expiry
from ._windows import _window_start

if TYPE_CHECKING:
    from ..._rates import GroupPlan, RatePlan


class _Views(_Policies):
    """``usage``, ``holders``, ``oldest_wait``, ``window_usage``, ``group_usage`` and
    ``known_numbers``."""

    __slots__ = ()

    async def usage(self, number: str, limit: int) -> Usage:
        """Lua twin: ``usage.lua``."""
        await self._checkpoint()
        now = self._clock()
        cap = self._policies.get(number, _NO_POLICY).cap_in_force(limit, now)
        state = self._numbers.get(number)
        if state is None:
            return Usage(in_use=0, limit=cap, waiting=0)
        in_use = sum(1 for e in state.holders.values() if _expiry(e) > now)
        waiting = sum(1 for e in state.queue.values() if e.expires > now)
        return Usage(in_use=in_use, limit=cap, waiting=waiting)

    async def holders(self, number: str) -> list[Holder]:
        """Lua twin: ``holders.lua``."""
        await self._checkpoint()
        now = self._clock()
        state = self._numbers.get(number)
        if state is None:
            return []
        live = sorted(
            (expires, token, e)
            for token, e in state.holders.items()
            if (expires := _expiry(e)) > now
        )
        return [
            Holder(
                number,
                token,
                e.owner,
                expires - now,
                e.ttl,
                None if e.deadline == math.inf else e.deadline - now,
                max(now - e.since, 0.0),
            )
            for expires, token, e in live
        ]

    async def oldest_wait(self, number: str) -> float | None:
        """Lua twin: ``oldest_wait.lua``."""
        await self._checkpoint()
        now = self._clock()
        state = self._numbers.get(number)
        if state is None:
            return None
        waits = [max(now - e.since, 0.0) for e in state.queue.values() if e.expires > now]
        return max(waits, default=None)

    async def window_usage(self, number: str, rates: RatePlan) -> list[WindowUsage]:
        """Lua twin: ``window_usage.lua``."""
        await self._checkpoint()
        now, wall = self._clock(), self._wall_clock()
        policy = self._policies.get(number)
        windows = rates.windows if policy is None else policy.windows_in_force(rates, now)
        hits = self._rates[number].seen(now) if number in self._rates else []
        return [
            WindowUsage(
                window,
                len(hits)
                - bisect.bisect_left(hits, _window_start(window, now, rates.tz_offset, wall)),
            )
            for window in windows
        ]

    async def group_usage(self, group: GroupPlan, tag: str) -> Usage:
        """Lua twin: ``group_usage.lua``."""
        await self._checkpoint()
        now = self._clock()
        waiting = sum(
            1 for lapse in self._group_waiters.get(group.group, {}).values() if lapse > now
        )
        cap = self._group_policies.get(group.group, {}).get("cap", group.cap or 0)
        # Counted, not settled: a lapsed lease is dropped by the next decision, not by a view.
        holders = self._group_holders.get(group.group, {})
        in_use = sum(1 for e in holders.values() if _expiry(e) > now)
        return Usage(in_use, cast("int", cap), waiting)

    async def known_numbers(self) -> list[str]:
        """No Lua twin: on Redis a SCAN of the key prefix, in Python."""
        await self._checkpoint()
        now = self._clock()
        policies = [n for n in self._policies if self._policy_seen(n, now) is not None]
        return sorted(set(self._numbers) | set(policies))

    async def number_tags(self) -> dict[str, list[str]]:
        """No Lua twin: numbers have no hash tags in memory (on Redis, from a SCAN)."""
        await self._checkpoint()
        return {}

    async def known_pools(self) -> dict[str, list[str]]:
        """No Lua twin: on Redis a SCAN of the pools' keys, then ``pool_members.lua``."""
        await self._checkpoint()
        return {name: list(pool.order) for name, pool in sorted(self._pools.items()) if pool.order}
