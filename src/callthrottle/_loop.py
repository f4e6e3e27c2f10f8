"""The event loop's clock, cancel scopes and events, found once per throttle; on asyncio, the
signals waiters wait for and their timed wakes (one timer of the loop for all of them)."""

from __future__ import annotations

import asyncio
import math
import types
from heapq import heapify, heappop, heappush
from itertools import count
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.lowlevel import current_token

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator

__all__ = ("Alarms", "OnLoop", "Signal")


class Signal(Protocol):
    """What a waiter waits for: set once (by the backend's word, or a timer), waited for once
    (an ``anyio.Event``, or on asyncio a bare future: see :class:`_FutureSignal`)."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self) -> Awaitable[None]: ...


class OnLoop:
    """A part of a throttle that sleeps, times or waits: until the throttle opens, anyio's
    functions; once open, the running event loop's own (the same functions, without finding
    the event loop again on every call). On asyncio, waiters wait for bare futures
    (``_new_signal``) and are woken at a time by ``_alarms`` rather than by a cancel scope."""

    __slots__ = ("_alarms", "_cancel_scope", "_new_event", "_new_signal", "_now")

    def __init__(self) -> None:
        self._now: Callable[[], float] = anyio.current_time
        self._cancel_scope: Callable[..., anyio.CancelScope] = anyio.CancelScope
        self._new_event: Callable[[], anyio.Event] = anyio.Event
        self._new_signal: Callable[[], Signal] = anyio.Event
        self._alarms: Alarms | None = None

    def use_loop(self, loop: Any) -> None:
        """Use ``loop``'s functions (an anyio backend class: ``current_token().backend_class``)."""
        self._now = loop.current_time
        self._cancel_scope = loop.create_cancel_scope
        self._new_event = self._new_signal = loop.create_event
        self._alarms = None
        native = current_token().native_token
        if isinstance(native, asyncio.AbstractEventLoop):
            self._now = native.time  # (what anyio's current_time reads, found once)
            create_future = native.create_future
            self._new_signal = lambda: _FutureSignal(create_future())
            self._alarms = Alarms(native)


class _FutureSignal:
    """A :class:`Signal` on asyncio: a bare future (what an ``asyncio.Event`` makes for each
    waiter, without the event around it). Waiting for it is cancelled by the caller's scopes
    as any wait; once set, waiting still lets other tasks run first, as an ``anyio.Event``
    does (a waiter told to ask again at each ask must not keep the event loop to itself)."""

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self._future = future

    def set(self) -> None:
        if not self._future.done():  # (nor cancelled: its waiter gave up)
            self._future.set_result(None)

    def is_set(self) -> bool:
        return self._future.done()

    def wait(self) -> Awaitable[None]:
        return _yield() if self._future.done() else self._future


@types.coroutine
def _yield() -> Generator[None, None, None]:
    """A checkpoint on asyncio (the body of ``asyncio.sleep(0)``)."""
    yield


class Alarms:
    """Timed wakes on asyncio: each sets a signal at a time of the loop's clock (as a cancel
    scope with that deadline around the wait would end it), all of them served by one timer
    of the event loop: a wake costs a push on a heap, not a timer of its own. A signal set
    sooner leaves its entry behind: dropped when it comes up, or once such entries make up
    three quarters of the heap."""

    __slots__ = ("_armed", "_call_at", "_heap", "_limit", "_now", "_order", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._call_at = loop.call_at
        self._now = loop.time
        self._heap: list[tuple[float, int, Signal]] = []
        self._order = count()  # (equal times: first come first)
        self._limit = 64  # the heap's size at which entries already set are dropped
        self._timer: asyncio.TimerHandle | None = None
        self._armed = math.inf  # when the loop's timer fires

    def at(self, deadline: float, signal: Signal) -> None:
        """Set ``signal`` at ``deadline`` (the loop's clock), unless it is set before."""
        heap = self._heap
        if len(heap) >= self._limit:
            heap[:] = [entry for entry in heap if not entry[2].is_set()]
            heapify(heap)
            self._limit = max(64, 4 * len(heap))
        heappush(heap, (deadline, next(self._order), signal))
        if deadline < self._armed:
            if self._timer is not None:
                self._timer.cancel()
            self._armed = deadline
            self._timer = self._call_at(deadline, self._ring)

    def clear(self) -> None:
        """Forget every wake (the throttle closed)."""
        self._heap.clear()
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed = None, math.inf

    def _ring(self) -> None:
        heap = self._heap
        due = max(self._armed, self._now())
        while heap and (heap[0][0] <= due or heap[0][2].is_set()):
            heappop(heap)[2].set()
        self._timer, self._armed = None, math.inf
        if heap:
            self._armed = heap[0][0]
            self._timer = self._call_at(self._armed, self._ring)
