"""A blocking facade over :class:`~callthrottle.Throttle`, for dialers that are not async.

::

    from callthrottle.sync import SyncThrottle

    with SyncThrottle.from_url("redis://localhost:6379/0") as throttle:
        with throttle.slot("+8657188880001", timeout=5.0) as lease:
            ...  # place and hold the call

The throttle runs on an event loop of its own, in a background thread started when the facade
is entered; each call blocks the calling thread until the throttle answers. Any number of
threads may call at once: their calls run concurrently on that loop, with the same semantics
(queues, timeouts, renewal in the background, release on every exit of a ``with`` block).
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import TYPE_CHECKING, Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._throttle import Throttle

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator
    from types import TracebackType

    from ._health import NumberState, NumberStatus, Reaction
    from ._models import Lease, Usage

__all__ = ("SyncThrottle",)


class SyncThrottle:
    """A :class:`~callthrottle.Throttle` behind blocking calls (see the module doc).

    :param make_throttle: builds the throttle (called on the facade's event loop)
    """

    def __init__(self, make_throttle: Callable[[], Throttle]) -> None:
        self._make = make_throttle
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self._throttle: Throttle | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SyncThrottle:
        """As :meth:`Throttle.from_url`; arguments are checked at once, in the calling thread."""
        Throttle.from_url(url, **kwargs)  # validate now; the real one is built on the loop
        return cls(partial(Throttle.from_url, url, **kwargs))

    def __enter__(self) -> SyncThrottle:
        if self._stack is not None:
            raise RuntimeError("this SyncThrottle is already open; enter it only once")
        stack = contextlib.ExitStack()
        try:
            portal = stack.enter_context(start_blocking_portal("asyncio"))
            throttle = portal.call(self._build)
            # Entered and left in one task of the loop (its task group needs that).
            stack.enter_context(portal.wrap_async_context_manager(throttle))
        except BaseException:
            stack.close()
            raise
        self._stack, self._portal, self._throttle = stack, portal, throttle
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._portal = self._throttle = None
        if stack is not None:
            stack.close()

    async def _build(self) -> Throttle:
        return self._make()

    def _call(self, function: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        if self._portal is None:
            raise RuntimeError("open the SyncThrottle first: with SyncThrottle.from_url(...) as t")
        return self._portal.call(partial(function, *args, **kwargs))

    @property
    def throttle(self) -> Throttle:
        """The async throttle underneath (its methods must be called on its own loop)."""
        if self._throttle is None:
            raise RuntimeError("open the SyncThrottle first")
        return self._throttle

    # -- the Throttle's API, blocking -----------------------------------------------------------

    def acquire(self, number: str, **kwargs: Any) -> Lease:
        """:meth:`Throttle.acquire`, blocking (``token``, ``timeout``, ``limit``, ...)."""
        lease: Lease = self._call(self.throttle.acquire, number, **kwargs)
        return lease

    def release(self, lease: Lease) -> bool:
        """:meth:`Throttle.release`, blocking."""
        return bool(self._call(self.throttle.release, lease))

    @contextlib.contextmanager
    def slot(self, number: str, **kwargs: Any) -> Iterator[Lease]:
        """:meth:`Throttle.slot`: the slot is given back when the block ends, however it ends."""
        lease = self.acquire(number, **kwargs)
        try:
            yield lease
        finally:
            self.release(lease)

    def acquire_from(self, pool: str, **kwargs: Any) -> Lease:
        """:meth:`Throttle.acquire_from`, blocking."""
        lease: Lease = self._call(self.throttle.acquire_from, pool, **kwargs)
        return lease

    @contextlib.contextmanager
    def slot_from(self, pool: str, **kwargs: Any) -> Iterator[Lease]:
        """:meth:`Throttle.slot_from`, blocking."""
        lease = self.acquire_from(pool, **kwargs)
        try:
            yield lease
        finally:
            self.release(lease)

    def usage(self, number: str, *, limit: int | None = None) -> Usage:
        """:meth:`Throttle.usage`, blocking."""
        usage: Usage = self._call(self.throttle.usage, number, limit=limit)
        return usage

    def release_owner(self, owner_id: str) -> int:
        """:meth:`Throttle.release_owner`, blocking."""
        return int(self._call(self.throttle.release_owner, owner_id))

    def set_state(
        self,
        number: str,
        state: NumberState | str,
        *,
        reason: str | None = None,
        duration: float | None = None,
    ) -> None:
        """:meth:`Throttle.set_state`, blocking."""
        self._call(self.throttle.set_state, number, state, reason=reason, duration=duration)

    def status(self, number: str) -> NumberStatus:
        """:meth:`Throttle.status`, blocking."""
        status: NumberStatus = self._call(self.throttle.status, number)
        return status

    def report(self, number: str, outcome: int | str) -> Reaction | None:
        """:meth:`Throttle.report`, blocking."""
        reaction: Reaction | None = self._call(self.throttle.report, number, outcome)
        return reaction

    def add_to_pool(self, pool: str, numbers: Iterable[str]) -> int:
        """:meth:`Throttle.add_to_pool`, blocking."""
        return int(self._call(self.throttle.add_to_pool, pool, numbers))

    def remove_from_pool(self, pool: str, numbers: Iterable[str]) -> int:
        """:meth:`Throttle.remove_from_pool`, blocking."""
        return int(self._call(self.throttle.remove_from_pool, pool, numbers))

    @property
    def held(self) -> tuple[Lease, ...]:
        """The leases the throttle holds and renews."""
        return self.throttle.held
