"""The operator's half of :class:`~callthrottle.Throttle`'s public API: clearing an owner or
a number, run-time policy (caps, rate windows, states, carrier feedback) and views of what
every process holds. Each method is documented here and done by the throttle's
:class:`~callthrottle._operator.Operator` part; none is on the hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._health import NumberState, NumberStatus, Reaction
    from ._models import Holder, Usage, WindowUsage
    from ._operator import Operator

__all__ = ("OperatorMethods",)


class OperatorMethods:
    """Mixed into :class:`~callthrottle.Throttle`, which provides ``_operator``."""

    __slots__ = ()

    if TYPE_CHECKING:
        _operator: Operator

    async def release_owner(self, owner_id: str) -> int:
        """Free every lease and place in line of the throttle ``owner_id`` (e.g. a dead process).
        Given a session's name, the session ends at once: its leases, whoever took them, and
        its places in line go.

        :return: how many leases and places in line were removed
        """
        return await self._operator.release_owner(owner_id)

    # -- operator queries and admin actions -----------------------------------------------------

    async def known_numbers(self) -> list[str]:
        """Every number the backend holds state for (live leases, waiters, a runtime policy),
        sorted: with the configured numbers, what an operator's status view lists.

        On Redis this scans the key prefix (``SCAN``, several round trips): for operators, not
        for the hot path."""
        return await self._operator.known_numbers()

    async def holders(self, number: str) -> list[Holder]:
        """The number's live leases, across every process: token, owner, and when each expires
        unless renewed (oldest expiry first)."""
        return await self._operator.holders(number)

    async def reset(self, number: str) -> tuple[int, int]:
        """Clear the number's leases and its line at once, for every process: the operator's
        tool when a switch crashed and its calls are known to be down.

        Every holder is told its lease was released (``lease.released``); every waiter asks
        again at once, finding the number empty. The number's state, caps and rate windows set
        at run time stay.

        :return: (leases removed, waiters woken)
        """
        return await self._operator.reset(number)

    # -- number policy and health ----------------------------------------------------------------

    async def set_cap(self, number: str, cap: int | None) -> None:
        """Set the number's cap at run time, for every process at once (None: remove it).

        It overrides configured and per-call caps. Lowered below what is held, nobody new is
        admitted until usage falls under it; raised, waiters are admitted at once.
        """
        await self._operator.set_cap(number, cap)

    async def set_rates(self, number: str, rates: str | None) -> None:
        """Set the number's rate windows at run time, for every process at once.

        ``rates`` is in ``limits``' notation (``"1/second;100/hour;500/day"``) and replaces the
        configured windows (per-day windows reset as its profile says); None removes it.
        """
        await self._operator.set_rates(number, rates)

    async def set_state(
        self,
        number: str,
        state: NumberState | str,
        *,
        reason: str | None = None,
        duration: float | None = None,
    ) -> None:
        """Set the number's health state, for every process at once.

        Only ``active`` and ``warming`` numbers admit calls; the others refuse new ones with
        :class:`NumberUnavailable` (calls already up run out normally, and waiters are refused).
        ``cooling`` needs a ``duration`` in seconds, after which the number is active again.
        ``warming`` starts the warm-up of the number's profile (its daily caps by week) now.
        A cool-down that ended, like ``active`` set without a reason, leaves nothing stored.
        """
        await self._operator.set_state(number, state, reason, duration)

    async def status(self, number: str) -> NumberStatus:
        """The number's state and runtime caps, as every process sees them."""
        return await self._operator.status(number)

    async def report(self, number: str, outcome: int | str) -> Reaction | None:
        """Apply the configured reaction to a carrier's answer to a call from ``number``.

        ``outcome`` is a SIP status (403, 429, 503, 607, 608, ...) or a carrier's own code (477
        "caller over-frequency", 475 "over calls per second", ...). The reaction cools the number
        down, flags it, or lowers its cap for a while (see :class:`Reaction`).

        :return: the reaction applied, or None if the code has none
        """
        return await self._operator.report(number, outcome)

    # -- observing -----------------------------------------------------------------------------

    async def usage(self, number: str, *, limit: int | None = None) -> Usage:
        """A snapshot of the number's live leases and waiters, across every process."""
        return await self._operator.usage(number, limit)

    async def window_usage(self, number: str) -> list[WindowUsage]:
        """The calls each rate window in force on the number counts now, across every process:
        its windows set at run time (:meth:`set_rates`), else its configured ones, and its
        warm-up's daily cap while it is warming. Read only."""
        return await self._operator.window_usage(number)

    async def group_usage(self, kind: str, name: str) -> Usage:
        """A snapshot of a trunk's or tenant's live leases and waiters, and its cap."""
        return await self._operator.group_usage(kind, name)

    async def set_group_cap(self, kind: str, name: str, cap: int | None) -> None:
        """Set a trunk's or tenant's cap at run time, for every process at once (None: back to
        the configured one). Its reserve still applies to campaign calls."""
        await self._operator.set_group_cap(kind, name, cap)

    async def set_group_rates(self, kind: str, name: str, rates: str | None) -> None:
        """Set a trunk's or tenant's rate windows at run time, for every process at once."""
        await self._operator.set_group_rates(kind, name, rates)
