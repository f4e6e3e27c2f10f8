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
Every public method and property of the async throttle is here, blocking; hooks are called
in the event loop's thread.

A call crosses to the loop and back once (on asyncio; on another loop given as ``portal``,
through the portal). A blocking call cannot be cancelled by its caller, only given a timeout;
but if the calling thread's wait is interrupted (a signal's handler raised, such as
``KeyboardInterrupt``), the call is cancelled on the loop as a cancelled task's would be (a
place in line is given up), a slot it had just been granted is given back, and the
interruption goes on once that is done. That is so on asyncio only: through another loop's
portal, an interrupted call goes on on the loop (a slot it is granted later is held, and
renewed, until the facade closes).
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import TYPE_CHECKING, Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._handoff import LoopCaller
from ._throttle import Throttle

if TYPE_CHECKING:
    import os
    from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    from ._config import Config
    from ._events import Event
    from ._health import NumberState, NumberStatus, Reaction
    from ._models import Holder, Lease, ReleaseOutcome, Usage, WindowUsage
    from ._publishing import PublishedPolicy
    from ._terms import Calendar
    from .backends import Backend

__all__ = ("SyncThrottle",)


class SyncThrottle:
    """A :class:`~callthrottle.Throttle` behind blocking calls (see the module doc).

    :param make_throttle: builds the throttle (called on the facade's event loop)
    :param portal: run the throttle on this portal's event loop (which the caller keeps open
        for as long as the facade is) instead of starting one: several facades can share a
        loop, and a backend object may then be shared by their throttles
    """

    def __init__(
        self, make_throttle: Callable[[], Throttle], *, portal: BlockingPortal | None = None
    ) -> None:
        self._make = make_throttle
        self._given_portal = portal
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self._throttle: Throttle | None = None
        self._caller: LoopCaller | None = None  # None: through the portal (not asyncio)

    @classmethod
    def from_url(
        cls, url: str, *, portal: BlockingPortal | None = None, **kwargs: Any
    ) -> SyncThrottle:
        """As :meth:`Throttle.from_url`; arguments are checked at once, in the calling thread."""
        Throttle.from_url(url, **kwargs)  # validate now; the real one is built on the loop
        return cls(partial(Throttle.from_url, url, **kwargs), portal=portal)

    def __enter__(self) -> SyncThrottle:
        if self._stack is not None:
            raise RuntimeError("this SyncThrottle is already open; enter it only once")
        stack = contextlib.ExitStack()
        try:
            portal = self._given_portal
            if portal is None:
                portal = stack.enter_context(start_blocking_portal("asyncio"))
            caller = portal.call(_caller_on_loop)
            if caller is not None:  # closing waits for the calls in flight (after the throttle)
                stack.callback(portal.call, caller.wait_idle)
            throttle = portal.call(self._build)
            # Entered and left in one task of the loop (its task group needs that).
            stack.enter_context(portal.wrap_async_context_manager(throttle))
        except BaseException:
            stack.close()
            raise
        self._stack, self._portal, self._throttle = stack, portal, throttle
        self._caller = caller
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._portal = self._throttle = self._caller = None
        if stack is not None:
            stack.close()

    async def _build(self) -> Throttle:
        return self._make()

    def _call(self, function: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        caller = self._caller
        if caller is not None:
            return caller.call(function, args, kwargs)
        if self._portal is None:
            raise RuntimeError("open the SyncThrottle first: with SyncThrottle.from_url(...) as t")
        return self._portal.call(partial(function, *args, **kwargs))

    def _take(self, function: Callable[..., Awaitable[Lease]], *args: Any, **kwargs: Any) -> Lease:
        """A call that returns a lease: given back if the caller's wait was interrupted."""
        caller = self._caller
        if caller is None:
            lease: Lease = self._call(function, *args, **kwargs)
            return lease
        # One that may wait in line is cancelled if its caller is interrupted.
        waits = kwargs["timeout"] != 0
        taken: Lease = caller.call(function, args, kwargs, self.throttle.release, cancellable=waits)
        return taken

    def _wrap(
        self, manager: AbstractAsyncContextManager[Lease], timeout: float | None
    ) -> Iterator[Lease]:
        caller = self._caller
        if caller is None:
            if self._portal is None:
                raise RuntimeError(
                    "open the SyncThrottle first: with SyncThrottle.from_url(...) as t"
                )
            with self._portal.wrap_async_context_manager(manager) as lease:
                yield lease
            return
        # Entered in one task of the loop and left in another: the throttle's slot managers
        # hold nothing bound to a task across their ``yield``.
        leave = manager.__aexit__
        lease = caller.call(
            manager.__aenter__, (), {}, lambda _: leave(None, None, None), cancellable=timeout != 0
        )
        try:
            yield lease
        except BaseException as exc:
            if not caller.call(leave, (type(exc), exc, exc.__traceback__), {}):
                raise
        else:
            caller.call(leave, (None, None, None), {})

    @property
    def throttle(self) -> Throttle:
        """The async throttle underneath (its methods must be called on its own loop)."""
        if self._throttle is None:
            raise RuntimeError("open the SyncThrottle first")
        return self._throttle

    @property
    def backend(self) -> Backend:
        """The backend the throttle uses (an async object: call it on the throttle's loop)."""
        return self.throttle.backend

    @property
    def owner_id(self) -> str:
        """Identifies the throttle's leases (see :attr:`Throttle.owner_id`)."""
        return self.throttle.owner_id

    @property
    def session(self) -> str | None:
        """The session the throttle's leases belong to, or None (see
        :attr:`Throttle.session`)."""
        return self.throttle.session

    @property
    def default_limit(self) -> int:
        """The cap applied when :meth:`acquire` is given no ``limit``."""
        return self.throttle.default_limit

    @property
    def lease_ttl(self) -> float:
        """Seconds a lease lives without renewal."""
        return self.throttle.lease_ttl

    def add_hook(self, hook: Callable[[Event], object]) -> None:
        """:meth:`Throttle.add_hook`; the hook is called in the event loop's thread."""
        self._call(_sync_on_loop, self.throttle.add_hook, hook)

    def remove_hook(self, hook: Callable[[Event], object]) -> None:
        """:meth:`Throttle.remove_hook`."""
        self._call(_sync_on_loop, self.throttle.remove_hook, hook)

    # -- the Throttle's API, blocking -----------------------------------------------------------

    def acquire(
        self,
        number: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        limit: int | None = None,
        callee: str | None = None,
        priority: int = 0,
    ) -> Lease:
        """:meth:`Throttle.acquire`, blocking."""
        return self._take(
            self.throttle.acquire,
            number,
            token=token,
            timeout=timeout,
            limit=limit,
            callee=callee,
            priority=priority,
        )

    def release(self, lease: Lease) -> bool:
        """:meth:`Throttle.release`, blocking."""
        return bool(self._call(self.throttle.release, lease))

    def end_call(self, lease: Lease) -> ReleaseOutcome:
        """:meth:`Throttle.end_call`, blocking: releases the lease and says whether it was
        live (``RELEASED``), had lapsed (``EXPIRED``) or was not known (``UNKNOWN``)."""
        outcome: ReleaseOutcome = self._call(self.throttle.end_call, lease)
        return outcome

    def keepalive(self) -> None:
        """:meth:`Throttle.keepalive`, blocking: keeps the throttle's session alive for
        ``lease_ttl`` more seconds (one call), for every process's leases of the session."""
        self._call(self.throttle.keepalive)

    @contextlib.contextmanager
    def slot(
        self,
        number: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        limit: int | None = None,
        callee: str | None = None,
        priority: int = 0,
    ) -> Iterator[Lease]:
        """:meth:`Throttle.slot`: the slot is given back when the block ends, however it ends
        (a failure to give it back is logged, not raised over the block's own outcome)."""
        yield from self._wrap(
            self.throttle.slot(
                number, token=token, timeout=timeout, limit=limit, callee=callee, priority=priority
            ),
            timeout,
        )

    def acquire_from(
        self,
        pool: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        callee: str | None = None,
        priority: int = 0,
        strategy: str | None = None,
    ) -> Lease:
        """:meth:`Throttle.acquire_from`, blocking."""
        return self._take(
            self.throttle.acquire_from,
            pool,
            token=token,
            timeout=timeout,
            callee=callee,
            priority=priority,
            strategy=strategy,
        )

    @contextlib.contextmanager
    def slot_from(
        self,
        pool: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        callee: str | None = None,
        priority: int = 0,
        strategy: str | None = None,
    ) -> Iterator[Lease]:
        """:meth:`Throttle.slot_from`, blocking."""
        yield from self._wrap(
            self.throttle.slot_from(
                pool,
                token=token,
                timeout=timeout,
                callee=callee,
                priority=priority,
                strategy=strategy,
            ),
            timeout,
        )

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

    def pool_members(self, pool: str) -> list[str]:
        """:meth:`Throttle.pool_members`, blocking."""
        members: list[str] = self._call(self.throttle.pool_members, pool)
        return members

    def window_usage(self, number: str) -> list[WindowUsage]:
        """As :meth:`Throttle.window_usage`."""
        usage: list[WindowUsage] = self._call(self.throttle.window_usage, number)
        return usage

    def known_numbers(self) -> list[str]:
        """As :meth:`Throttle.known_numbers`."""
        numbers: list[str] = self._call(self.throttle.known_numbers)
        return numbers

    def holders(self, number: str) -> list[Holder]:
        """As :meth:`Throttle.holders`."""
        holders: list[Holder] = self._call(self.throttle.holders, number)
        return holders

    def reset(self, number: str) -> tuple[int, int]:
        """As :meth:`Throttle.reset`."""
        held, waiting = self._call(self.throttle.reset, number)
        return int(held), int(waiting)

    def set_cap(self, number: str, cap: int | None) -> None:
        """:meth:`Throttle.set_cap`, blocking."""
        self._call(self.throttle.set_cap, number, cap)

    def set_rates(self, number: str, rates: str | None) -> None:
        """:meth:`Throttle.set_rates`, blocking."""
        self._call(self.throttle.set_rates, number, rates)

    def group_usage(self, kind: str, name: str) -> Usage:
        """:meth:`Throttle.group_usage`, blocking."""
        usage: Usage = self._call(self.throttle.group_usage, kind, name)
        return usage

    def set_group_cap(self, kind: str, name: str, cap: int | None) -> None:
        """:meth:`Throttle.set_group_cap`, blocking."""
        self._call(self.throttle.set_group_cap, kind, name, cap)

    def set_group_rates(self, kind: str, name: str, rates: str | None) -> None:
        """:meth:`Throttle.set_group_rates`, blocking."""
        self._call(self.throttle.set_group_rates, kind, name, rates)

    @property
    def held(self) -> tuple[Lease, ...]:
        """The leases the throttle holds and renews."""
        return self.throttle.held

    @property
    def policy_version(self) -> int:
        """:attr:`Throttle.policy_version`."""
        return self.throttle.policy_version

    @property
    def config(self) -> Config:
        """:attr:`Throttle.config`."""
        return self.throttle.config

    @property
    def calendar(self) -> Calendar:
        """:attr:`Throttle.calendar`."""
        return self.throttle.calendar

    def published_policy(self) -> PublishedPolicy | None:
        """:meth:`Throttle.published_policy`, blocking."""
        result: PublishedPolicy | None = self._call(self.throttle.published_policy)
        return result

    def policy_history(self, count: int = 20) -> list[PublishedPolicy]:
        """:meth:`Throttle.policy_history`, blocking."""
        result: list[PublishedPolicy] = self._call(self.throttle.policy_history, count)
        return result

    def publish_policy(
        self,
        config: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        *,
        default_limit: int | None = None,
        comment: str = "",
        expected: int | None = None,
    ) -> PublishedPolicy:
        """:meth:`Throttle.publish_policy`, blocking."""
        result: PublishedPolicy = self._call(
            self.throttle.publish_policy,
            config,
            default_limit=default_limit,
            comment=comment,
            expected=expected,
        )
        return result


async def _caller_on_loop() -> LoopCaller | None:
    """A caller onto the portal's loop if it is asyncio's (None on another)."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    return await LoopCaller.here()


async def _sync_on_loop(function: Callable[..., object], *args: object) -> None:
    """Run a plain function on the event loop (where the throttle's state lives)."""
    function(*args)
