"""A number's (a group's) runtime policy: a cap, a state, rate windows set while running.
Twins of ``set_policy.lua``, ``get_policy.lua`` and ``set_group_policy.lua``; the policy record
is the twin of ``policy``, ``cap_in_force``, ``unavailable`` and ``windows_in_force`` in
``_common.lua``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..._rates import WEEK
from .._policy import KEEP, RuntimePolicy
from ._lines import _Lines

if TYPE_CHECKING:
    from ..._rates import GroupPlan, RatePlan, Window
    from .._policy import GroupPolicyChange, PolicyChange


@dataclass(slots=True)
class _Policy:
    """A number's runtime policy (see :meth:`Backend.set_policy`); times by the backend clock.
    Twin of ``policy`` in ``_common.lua`` (the key P)."""

    cap: int | None = None
    state: str | None = None
    reason: str | None = None
    until: float | None = None
    lowered_cap: int | None = None
    lowered_until: float | None = None
    rates: tuple[Window, ...] | None = None
    warming_since: float | None = None

    def windows_in_force(self, plan: RatePlan, now: float) -> tuple[Window, ...]:
        """The windows set at run time, else the caller's; while warming, the warm-up's daily
        cap for the current week too. Twin of ``windows_in_force`` in ``_common.lua``."""
        windows = plan.windows if self.rates is None else self.rates
        if self.warming_since is not None:  # warming (or cooled down by a carrier meanwhile)
            warmup = plan.warmup_window((now - self.warming_since) / WEEK)
            if warmup is not None:
                windows = (*windows, warmup)
        return windows

    def cap_in_force(self, asked: int, now: float) -> int:
        """The cap set at run time, else the caller's; a lowered cap while it lasts. Twin of
        ``cap_in_force`` in ``_common.lua``."""
        cap = asked if self.cap is None else self.cap
        lowered, lapses = self.lowered_cap, self.lowered_until
        if lowered is not None and lapses is not None and lapses > now:
            cap = min(cap, lowered)
        return cap

    def unavailable(self, now: float) -> str | None:
        """The state that keeps the number from admitting calls, or None when it admits them.
        Twin of ``unavailable`` in ``_common.lua``."""
        if self.state is None or self.state in ("active", "warming"):
            return None
        if self.state == "cooling" and self.until is not None and self.until <= now:
            return None
        return self.state

    def drop_lapsed(self, now: float) -> None:
        """Forget the carrier reactions that lapsed (a lowered cap, a cool-down and its reason),
        as Redis does: its policy key expires with them, or drops them at the next change."""
        if self.lowered_until is not None and self.lowered_until <= now:
            self.lowered_cap = self.lowered_until = None
        if self.state == "cooling" and self.until is not None and self.until <= now:
            self.state = self.reason = self.until = None


_NO_POLICY = _Policy()


class _Policies(_Lines):
    """``set_policy``, ``get_policy`` and ``set_group_policy``."""

    __slots__ = ()

    async def set_policy(self, number: str, change: PolicyChange) -> None:
        """Lua twin: ``set_policy.lua``."""
        await self._checkpoint()
        now = self._clock()
        policy = self._policies.setdefault(number, _Policy())
        # Lapsed reactions go first, as in set_policy.lua: nothing of them survives the change
        # (a state set over a lapsed cool-down keeps neither its reason nor its end).
        policy.drop_lapsed(now)
        # A carrier's reaction leaves alone a state an operator set for good that keeps the
        # number from admitting calls: it stays out of service after the reaction's while.
        for_good = (
            change.reaction and policy.unavailable(now) is not None and policy.state != "cooling"
        )
        if change.cap is not KEEP:
            policy.cap = change.cap
        if not for_good:
            if change.state is not KEEP:
                policy.state = change.state
            if change.reason is not KEEP:
                policy.reason = change.reason
            if change.until is not KEEP:
                policy.until = None if change.until is None else now + change.until
            if change.warming is not KEEP:
                policy.warming_since = None if change.warming is None else now
        if change.lowered is not KEEP:
            lowered = change.lowered
            policy.lowered_cap = None if lowered is None else lowered[0]
            policy.lowered_until = None if lowered is None else now + lowered[1]
        if change.rates is not KEEP:
            policy.rates = change.rates
        policy.drop_lapsed(now)
        if policy == _NO_POLICY:
            del self._policies[number]
        if number in self._numbers:
            state = self._settle(number, now)
            for token, entry in state.queue.items():
                self._notify(entry.owner, "nudged", number, token)
            self._forget_if_idle(number, state)
        # Callers waiting for a slot of the number's groups are told too (a number that no
        # longer admits calls refuses them, and they leave the group's line).
        for group in self._layout.groups_for(number):
            for owner, on, token in list(self._purge_group_line(group.group, now)):
                if on == number:
                    self._notify(owner, "nudged", number, token)

    def _policy_now(self, number: str, now: float) -> _Policy | None:
        """The number's policy without its lapsed reactions; None (and forgotten) once nothing
        is left of it, as a Redis policy key that expired with its last reaction."""
        policy = self._policies.get(number)
        if policy is None:
            return None
        policy.drop_lapsed(now)
        if policy == _NO_POLICY:
            del self._policies[number]
            return None
        return policy

    def _policy_seen(self, number: str, now: float) -> _Policy | None:
        """The number's policy as :meth:`_policy_now` finds it, without changing what is
        stored (a view writes nothing: as on Redis, where the key expires by itself)."""
        policy = self._policies.get(number)
        if policy is None:
            return None
        seen = replace(policy)
        seen.drop_lapsed(now)
        return None if seen == _NO_POLICY else seen

    async def get_policy(self, number: str) -> RuntimePolicy:
        """Lua twin: ``get_policy.lua``."""
        await self._checkpoint()
        now = self._clock()
        policy = self._policy_seen(number, now) or _NO_POLICY
        until, lapses, since = policy.until, policy.lowered_until, policy.warming_since
        return RuntimePolicy(
            cap=policy.cap,
            state=policy.state,
            reason=policy.reason,
            until=None if until is None else until - now,
            lowered_cap=policy.lowered_cap,
            lowered_for=None if lapses is None else lapses - now,
            rates=policy.rates,
            warming_for=None if since is None else now - since,
        )

    async def set_group_policy(self, group: GroupPlan, tag: str, change: GroupPolicyChange) -> None:
        """Lua twin: ``set_group_policy.lua``."""
        await self._checkpoint()
        policy = self._group_policies.setdefault(group.group, {})
        for name, value in (("cap", change.cap), ("rates", change.rates)):
            if value is KEEP:
                continue
            if value is None:
                policy.pop(name, None)
            else:
                policy[name] = value
        now = self._clock()
        waiters = self._group_waiters.get(group.group, {})
        for owner, number, token in [key for key, lapse in waiters.items() if lapse > now]:
            self._notify(owner, "nudged", number, token)
