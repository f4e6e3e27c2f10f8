"""The event loop's clock, cancel scopes and events, found once per throttle."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import anyio
from anyio.lowlevel import current_token

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ("OnLoop",)


class OnLoop:
    """A part of a throttle that sleeps, times or waits: until the throttle opens, anyio's
    functions; once open, the running event loop's own (the same functions, without finding
    the event loop again on every call)."""

    __slots__ = ("_cancel_scope", "_new_event", "_now", "_wait_until")

    def __init__(self) -> None:
        self._now: Callable[[], float] = anyio.current_time
        self._cancel_scope: Callable[..., anyio.CancelScope] = anyio.CancelScope
        self._new_event: Callable[[], anyio.Event] = anyio.Event
        self._wait_until: Callable[[anyio.Event, float], Awaitable[None]] = _wait_in_scope

    def use_loop(self, loop: Any) -> None:
        """Use ``loop``'s functions (an anyio backend class: ``current_token().backend_class``)."""
        self._now = loop.current_time
        self._cancel_scope = loop.create_cancel_scope
        self._new_event = loop.create_event
        native = current_token().native_token
        if isinstance(native, asyncio.AbstractEventLoop):
            self._wait_until = _timer_on(native)
        else:
            self._wait_until = _wait_in_scope


async def _wait_in_scope(event: anyio.Event, deadline: float) -> None:
    """Wait until ``event`` is set or the event loop's clock reaches ``deadline``."""
    with anyio.CancelScope(deadline=deadline):
        await event.wait()


def _timer_on(loop: asyncio.AbstractEventLoop) -> Callable[[anyio.Event, float], Awaitable[None]]:
    """:func:`_wait_in_scope` on asyncio, with a timer that sets the event at ``deadline``
    instead of a cancel scope (anyio's asyncio clock is the loop's): the same wait, without
    the cost of a scope. The wait is cancelled by the caller's scopes as any other."""
    call_at = loop.call_at

    async def wait_until(event: anyio.Event, deadline: float) -> None:
        timer = call_at(deadline, event.set)
        try:
            await event.wait()
        finally:
            timer.cancel()

    return wait_until
