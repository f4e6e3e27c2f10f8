"""The pool half of :class:`~callthrottle.Throttle`'s public API: filling pools and taking a
slot on any number of one. Each method is documented here and done by the throttle's
:class:`~callthrottle._pooling.Pools` part.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from ._models import Lease
    from ._pooling import Pools

__all__ = ("PoolMethods",)


class PoolMethods:
    """Mixed into :class:`~callthrottle.Throttle`, which provides ``_pools`` and
    ``_release_quietly``."""

    __slots__ = ()

    if TYPE_CHECKING:
        _pools: Pools

        async def _release_quietly(self, lease: Lease) -> None: ...

    async def add_to_pool(self, pool: str, numbers: Iterable[str]) -> int:
        """Add ``numbers`` to ``pool`` (created on first use), for every process; returns how
        many numbers the pool has now. Each number's cap, rate windows, trunk and tenant are
        taken from this throttle's configuration, as they are now.

        :raises InvalidArgument: on a bad pool name or number, before anything is written
        """
        return await self._pools.add(pool, numbers)

    async def remove_from_pool(self, pool: str, numbers: Iterable[str]) -> int:
        """Take ``numbers`` out of ``pool`` (their calls in progress are not touched); returns
        how many numbers the pool has now."""
        return await self._pools.remove(pool, numbers)

    async def pool_members(self, pool: str) -> list[str]:
        """The numbers of ``pool``, in round-robin order."""
        return await self._pools.members(pool)

    async def acquire_from(
        self,
        pool: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        callee: str | None = None,
        priority: int = 0,
        strategy: str | None = None,
    ) -> Lease:
        """Take a slot on any number of ``pool`` that can take the call; the lease names it.

        Every limit of the number picked applies (its state, cap, rate windows, trunk and
        tenant, and the callee's windows), decided with the pick in one step (one round trip on
        Redis). Numbers that cannot take the call are skipped, and so are those whose paid
        period lapsed by the throttle's ``calendar`` (those about to lapse are taken after
        their equals of load). If none can, the pool's
        ``fallback`` pool (configured) is tried, and so on; then the call waits for a number
        to free up (looking again when a lease of the pool is released in this process, at the
        earliest expiry the pick reported, and at least every 0.25 s) until ``timeout``, and
        raises :class:`PoolExhausted`.

        :param strategy: ``"least-loaded"``, ``"round-robin"``, ``"local"`` (numbers in the
            callee's area, then region, first) or ``"sticky"`` (the callee's last number
            first); defaults to the pool's configured one, else least-loaded
        :raises PoolExhausted: if no number could take the call within ``timeout``
            (``lapsed`` when the paid period of every number tried lapsed)
        :raises LeaseConflict: if ``token`` already holds a slot on a number of the pool for
            another owner (for this throttle's owner, that slot is returned)
        :raises InvalidArgument: on bad input, before anything is written; also, at once and
            whatever the ``timeout``, for a pool that is neither configured nor has numbers in
            the backend (a misspelt name; a pool made with :meth:`add_to_pool` is known once
            this throttle found it with numbers). A configured pool is known without asking;
            the backend is asked once a pick is refused, once, so no round trip is added on the
            way to a slot.
        """
        pools = self._pools
        return await pools.acquire_from(pool, token, timeout, callee, priority, strategy)

    @asynccontextmanager
    async def slot_from(
        self,
        pool: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        callee: str | None = None,
        priority: int = 0,
        strategy: str | None = None,
    ) -> AsyncIterator[Lease]:
        """Hold a slot on a number of ``pool`` for the ``async with`` block (the number is
        ``lease.number``); see :meth:`acquire_from` and :meth:`slot`."""
        lease = await self.acquire_from(
            pool, token=token, timeout=timeout, callee=callee, priority=priority, strategy=strategy
        )
        try:
            yield lease
        finally:
            await self._release_quietly(lease)
