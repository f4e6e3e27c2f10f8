"""The event loop's clock, cancel scopes and events, found once per throttle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("OnLoop",)


class OnLoop:
    """A part of a throttle that sleeps, times or waits: until the throttle opens, anyio's
    functions; once open, the running event loop's own (the same functions, without finding
    the event loop again on every call)."""

    __slots__ = ("_cancel_scope", "_new_event", "_now")

    def __init__(self) -> None:
        self._now: Callable[[], float] = anyio.current_time
        self._cancel_scope: Callable[..., anyio.CancelScope] = anyio.CancelScope
        self._new_event: Callable[[], anyio.Event] = anyio.Event

    def use_loop(self, loop: Any) -> None:
        """Use ``loop``'s functions (an anyio backend class: ``current_token().backend_class``)."""
        self._now = loop.current_time
        self._cancel_scope = loop.create_cancel_scope
        self._new_event = loop.create_event
