"""The operator's side of a throttle: run-time policy (caps, rate windows, states, carrier
feedback), views of what every process holds, and clearing a number or an owner.

None of it is on the hot path: each call is one or a few round trips, logged for the audit.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Protocol

import anyio

from ._errors import InvalidArgument
from ._events import Reclaimed
from ._health import NumberState, NumberStatus, Reaction
from ._numbers import normalize_number
from ._rates import GroupPlan, parse_windows
from ._terms import on_calendar, system_calendar
from ._validate import (
    check_limit,
    check_outcome,
    check_owner,
    check_reason,
    check_state,
    check_ttl,
)
from .backends import GroupPolicyChange, Inspection, PolicyChange, PolicyStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._hooks import Hooks
    from ._models import Holder, Usage, WindowUsage
    from ._plans import Plans
    from ._settings import Settings
    from ._terms import Calendar, Term
    from .backends import RuntimePolicy

__all__ = ("Operator", "OperatorBackend")

logger = logging.getLogger("callthrottle")


class OperatorBackend(PolicyStore, Inspection, Protocol):
    """The roles of a backend that the operator uses: its policy, and what it reads and clears
    of the shared state."""


class Operator:
    """What :class:`~callthrottle.Throttle`'s operator methods do (their docstrings are there).

    Each method checks its input, then that the throttle is open (``check_open``), then asks
    the backend. ``forget_own`` is told when this throttle's own owner was released: its
    leases are gone.
    """

    __slots__ = (
        "_backend", "_check_open", "_forget_own", "_hooks", "_plans", "_refresh", "_settings",
    )  # fmt: skip

    def __init__(
        self,
        backend: OperatorBackend,
        settings: Settings,
        plans: Plans,
        hooks: Hooks,
        check_open: Callable[[], None],
        forget_own: Callable[[], None],
        refresh: Callable[[], Awaitable[None]],
    ) -> None:
        self._backend = backend
        self._refresh = refresh  # take the newest published policy (PolicySource.refresh)
        self._settings = settings
        self._plans = plans
        self._hooks = hooks
        self._check_open = check_open
        self._forget_own = forget_own

    def _number(self, number: str) -> str:
        return normalize_number(number, self._settings.region)

    def _log(self, key: str, value: str) -> dict[str, str]:
        return {key: value, "owner": self._settings.owner_id}

    async def release_owner(self, owner_id: str) -> int:
        owner = check_owner(owner_id)
        self._check_open()
        with anyio.CancelScope(shield=True):
            removed = await self._backend.release_owner(owner)
        if owner == self._settings.owner_id:
            self._forget_own()
        if self._hooks.installed:
            self._hooks.emit(Reclaimed(owner, removed))
        logger.info(
            "released %d lease(s) and places in line of owner %s",
            removed,
            owner,
            extra={"owner": self._settings.owner_id, "released_owner": owner},
        )
        return removed

    # -- views -----------------------------------------------------------------------------

    async def known_numbers(self) -> list[str]:
        self._check_open()
        return await self._backend.known_numbers()

    async def holders(self, number: str) -> list[Holder]:
        number = self._number(number)
        self._check_open()
        return await self._backend.holders(number)

    async def usage(self, number: str, limit: int | None) -> Usage:
        number = self._number(number)
        cap = self._plans.cap_for(number, limit)
        self._check_open()
        return await self._backend.usage(number, cap)

    async def window_usage(self, number: str) -> list[WindowUsage]:
        number = self._number(number)
        self._check_open()
        return await self._backend.window_usage(number, self._plans.configured(number)[1])

    async def group_usage(self, kind: str, name: str) -> Usage:
        group, tag = self._plans.group(kind, name)
        self._check_open()
        return await self._backend.group_usage(group, tag)

    async def status(self, number: str) -> NumberStatus:
        number = self._number(number)
        self._check_open()
        policy = await self._backend.get_policy(number)
        calendar = self._settings.calendar
        term = self._plans.configured(number)[2]
        if term is not None and calendar() >= term.lapses_at:
            # Lapsed by the policy this throttle knows: a renewal may be published since (one
            # read, as an acquire makes).
            await self._refresh()
            term = self._plans.configured(number)[2]
        return status_from_policy(policy, term, calendar)

    # -- actions ---------------------------------------------------------------------------

    async def reset(self, number: str) -> tuple[int, int]:
        number = self._number(number)
        self._check_open()
        held, waiting = await self._backend.reset_number(number)
        logger.warning(
            "reset %s: %d lease(s) removed, %d waiter(s) woken",
            number,
            held,
            waiting,
            extra=self._log("number", number),
        )
        return held, waiting

    async def set_cap(self, number: str, cap: int | None) -> None:
        number = self._number(number)
        value = None if cap is None else check_limit(cap, "cap")
        self._check_open()
        await self._backend.set_policy(number, PolicyChange(cap=value))
        logger.info("cap of %s set to %s", number, value, extra=self._log("number", number))

    async def set_rates(self, number: str, rates: str | None) -> None:
        number = self._number(number)
        windows = None
        if rates is not None:
            windows = parse_windows(rates, self._plans.midnight(number))
        self._check_open()
        await self._backend.set_policy(number, PolicyChange(rates=windows))
        logger.info(
            "rate windows of %s set to %s", number, rates, extra=self._log("number", number)
        )

    async def set_state(
        self, number: str, state: NumberState | str, reason: str | None, duration: float | None
    ) -> None:
        number = self._number(number)
        new_state = check_state(state)
        reason = check_reason(reason)
        if new_state is NumberState.COOLING:
            until: float | None = check_ttl(duration, "duration")
        elif duration is not None:
            raise InvalidArgument("duration", duration, "None unless the state is 'cooling'")
        else:
            until = None
        self._check_open()
        # Active with no reason is the default: nothing is stored (nothing to leave behind).
        stored = None if new_state is NumberState.ACTIVE and reason is None else new_state.value
        change = PolicyChange(
            state=stored,
            reason=reason,
            until=until,
            warming=True if new_state is NumberState.WARMING else None,
        )
        await self._backend.set_policy(number, change)
        logger.info(
            "state of %s set to %s%s",
            number,
            new_state.value,
            f" ({reason})" if reason else "",
            extra=self._log("number", number),
        )

    async def report(self, number: str, outcome: int | str) -> Reaction | None:
        number = self._number(number)
        code = check_outcome(outcome)
        self._check_open()
        reaction = self._settings.feedback.get(code)
        if reaction is None or reaction.action == "none":
            return None
        reason = reaction.reason or f"carrier answered {code}"
        if reaction.action == "cooldown":
            # Unlike set_state, it leaves a state an operator set for good (flagged, ...).
            change = PolicyChange(
                state=NumberState.COOLING.value,
                reason=reason,
                until=check_ttl(reaction.seconds, "seconds"),
                reaction=True,  # a warm-up's start stays: it goes on afterwards
            )
            await self._backend.set_policy(number, change)
        elif reaction.action == "flag":
            await self.set_state(number, NumberState.FLAGGED, reason, None)
        else:
            cap = reaction.cap
            if cap is None:
                usage = await self._backend.usage(number, self._plans.cap_for(number, None))
                cap = max(1, math.floor(usage.limit * (reaction.factor or 0.5)))
            lowered = (cap, check_ttl(reaction.seconds, "seconds"))  # checked with the settings
            await self._backend.set_policy(number, PolicyChange(lowered=lowered))
        logger.warning(
            "carrier answered %s for %s: %s",
            code,
            number,
            reaction.action,
            extra=self._log("number", number),
        )
        return reaction

    async def set_group_cap(self, kind: str, name: str, cap: int | None) -> None:
        group, tag = self._plans.group(kind, name)
        value = None if cap is None else check_limit(cap, "cap")
        self._check_open()
        await self._backend.set_group_policy(group, tag, GroupPolicyChange(cap=value))
        self._log_group("cap of %s set to %s", group, value)

    async def set_group_rates(self, kind: str, name: str, rates: str | None) -> None:
        group, tag = self._plans.group(kind, name)
        windows = None if rates is None else parse_windows(rates)
        self._check_open()
        await self._backend.set_group_policy(group, tag, GroupPolicyChange(rates=windows))
        self._log_group("rate windows of %s set to %s", group, rates)

    def _log_group(self, message: str, group: GroupPlan, value: object) -> None:
        logger.info(message, group.group, value, extra=self._log("group", group.group))


def status_from_policy(
    policy: RuntimePolicy, term: Term | None = None, calendar: Calendar = system_calendar
) -> NumberStatus:
    """A number's status from the run-time policy the backend stores for it and, if its paid
    period is tracked, the calendar (``calendar()``: seconds since the epoch)."""
    state = NumberState(policy.state or "active")
    remaining = policy.until
    if state is NumberState.COOLING and remaining is not None and remaining <= 0:
        state, remaining = NumberState.ACTIVE, None
    if state is NumberState.ACTIVE and policy.warming_for is not None:
        state = NumberState.WARMING  # a carrier's cool-down during a warm-up ended
    lowered_remaining = policy.lowered_for
    lowered = (
        policy.lowered_cap is not None and lowered_remaining is not None and lowered_remaining > 0
    )
    status = NumberStatus(
        state=state,
        reason=policy.reason,
        remaining=remaining,
        cap=policy.cap,
        lowered_cap=policy.lowered_cap if lowered else None,
        lowered_remaining=lowered_remaining if lowered else None,
        rates=policy.rates,
        warming_for=policy.warming_for if state is NumberState.WARMING else None,
    )
    return status if term is None else on_calendar(status, term, calendar())
