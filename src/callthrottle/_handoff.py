"""Calls from plain threads onto an asyncio event loop that runs in another thread, and back.

One call is one hand-off each way: the calling thread schedules the call with
``loop.call_soon_threadsafe`` and sleeps on a lock; on the loop, the call runs in a task of its
own (in a cancel scope if it may wait long), which releases the lock when it ends. (An anyio portal's ``call`` waits
for the loop twice: once for the task to be started in its task group, once for the result.)

A caller whose wait is interrupted (a signal's handler raised, e.g. ``KeyboardInterrupt``) has
its call cancelled if it may wait long (a call in line for a slot), and waits for the call's
end; if the call ended with a result that holds something (a lease), ``undo`` gives it back,
and the interruption goes on.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from typing import TYPE_CHECKING, Any

from anyio.lowlevel import current_token

_library: ContextVar[str | None] | None
try:
    from sniffio import current_async_library_cvar as _library
except ImportError:  # pragma: no cover (anyio then knows asyncio by its running loop)
    _library = None

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable
    from contextvars import ContextVar

    import anyio

__all__ = ("LoopCaller",)

_forks = [0]  # forks into this process (a child's loops have no thread to run them)


def _forked() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_forked)


class _Call:
    """One call on the loop: what to run, how it ended, and the lock its caller sleeps on."""

    __slots__ = (
        "args", "cancellable", "cancelled", "done", "ended", "error", "function", "kwargs",
        "result", "scope", "started",
    )  # fmt: skip

    def __init__(
        self,
        function: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        cancellable: bool,
    ) -> None:
        self.function, self.args, self.kwargs = function, args, kwargs
        self.cancellable = cancellable  # run in a cancel scope (a call that may wait long)
        self.done = threading.Lock()
        self.done.acquire()  # released once, on the loop, when the call has ended
        self.result: Any = None
        self.error: BaseException | None = None
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False  # the caller left: cancel the call (in the loop's thread)
        self.started = False  # its task was made (on the loop)
        self.ended = False  # set on the loop just before ``done`` is released

    async def run(self, caller: LoopCaller) -> None:
        try:
            if not self.cancellable:  # a short call: an interrupted caller waits for its end
                self.result = await self.function(*self.args, **self.kwargs)
                return
            with caller.new_scope() as scope:
                self.scope = scope
                if self.cancelled:
                    scope.cancel()
                self.result = await self.function(*self.args, **self.kwargs)
            if scope.cancelled_caught:
                self.error = concurrent.futures.CancelledError()
        except BaseException as exc:  # handed to the caller (a loop's shutdown cancels it too)
            self.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            self.scope = None
            self.end(caller)

    def end(self, caller: LoopCaller) -> None:
        self.ended = True
        caller.running.pop(self, None)
        caller.calls.discard(self)
        self.done.release()

    def never_ran(self, caller: LoopCaller) -> None:
        """The task ended: if it was cancelled before it started (the loop shutting down),
        :meth:`run` never ran, and the caller is told here."""
        if not self.ended:
            self.error = concurrent.futures.CancelledError()
            self.end(caller)

    def cancel(self, caller: LoopCaller) -> None:
        """Cancel the call (on the loop's thread), if it has not ended. Its caller left while
        it scheduled it: if it was not scheduled (this comes after its start if it was), it
        ends here, never run."""
        if self.ended:
            return
        if not self.cancellable:  # a short call runs to its end, even one never scheduled
            if not self.started:
                caller._start(self)
            return
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()
        elif not self.started:
            self.error = concurrent.futures.CancelledError()
            self.end(caller)


class LoopCaller:
    """Runs coroutine functions on ``loop`` (an asyncio loop running in another thread) for
    blocking callers in any other thread."""

    __slots__ = ("_fork", "_loop", "_open", "_thread", "calls", "new_scope", "running")

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: int) -> None:
        self._loop = loop
        self._thread = thread  # the loop's: a call from it would wait for itself for ever
        self._fork = _forks[0]  # a forked child has no loop thread: its calls would never end
        self._open = True  # False once :meth:`wait_idle` began: calls are refused
        # The calls registered and not ended (added by callers, removed on the loop).
        self.calls: set[_Call] = set()
        # The calls started and not ended, and their tasks (touched on the loop only).
        self.running: dict[_Call, asyncio.Task[None]] = {}
        self.new_scope: Callable[[], anyio.CancelScope] = _no_scope

    @classmethod
    async def here(cls) -> LoopCaller:
        """A caller onto the running event loop (call on the loop)."""
        import asyncio

        caller = cls(asyncio.get_running_loop(), threading.get_ident())
        caller.new_scope = current_token().backend_class.create_cancel_scope
        return caller

    def _start(self, call: _Call) -> None:
        call.started = True
        if _library is not None:  # the caller's context (copied) may name another library
            _library.set("asyncio")
        try:
            task = self._loop.create_task(call.run(self))
        except BaseException as exc:  # noqa: BLE001 (the caller raises it)
            call.error = exc
            call.end(self)
            return
        self.running[call] = task
        task.add_done_callback(lambda _: call.never_ran(self))

    def call(
        self,
        function: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        undo: Callable[[Any], Awaitable[Any]] | None = None,
        *,
        cancellable: bool = False,
    ) -> Any:
        """``await function(*args, **kwargs)`` on the loop; its result, or its error raised.

        :param undo: if the caller is interrupted after the call succeeded, ``undo(result)`` is
            awaited on the loop before the interruption goes on (e.g. a lease's release)
        :param cancellable: the call may wait long (in line for a slot): if its caller is
            interrupted, it is cancelled (else it runs to its end, which the caller waits for)
        """
        if threading.get_ident() == self._thread:
            raise RuntimeError("a blocking call cannot be made from the event loop's thread")
        if _forks[0] != self._fork:
            raise RuntimeError("the event loop runs in another process (this one was forked)")
        if not self._loop.is_running():  # (a call scheduled on it would never end)
            raise RuntimeError("the event loop is not running")
        call = _Call(function, args, kwargs, cancellable)
        try:
            # Registered, then checked: a close that began after the check waits for it.
            self.calls.add(call)
            if not self._open:
                self.calls.discard(call)
                raise RuntimeError("the event loop is closing")
            self._loop.call_soon_threadsafe(self._start, call)
            call.done.acquire()
            if call.error is None:
                return call.result
        except BaseException:  # interrupted anywhere above, even inside call_soon_threadsafe
            self._abandon(call, undo)
            raise
        error, call.error = call.error, None  # no cycle through the traceback's frames
        raise error

    def _abandon(self, call: _Call, undo: Callable[[Any], Awaitable[Any]] | None) -> None:
        """The caller of ``call`` was interrupted: cancel the call, wait for its end, and
        undo what it did if it succeeded. A further interruption meanwhile is raised once that
        is done (else the slot just granted would be kept, and nobody would know of it)."""
        if call not in self.calls and not call.ended:
            return  # never registered (interrupted before, or refused): nothing ran
        again: BaseException | None = None
        told = False
        while True:
            try:
                if not told:
                    try:
                        self._loop.call_soon_threadsafe(call.cancel, self)
                    except RuntimeError:  # the loop is closed: the call never ran, or has ended
                        return
                    told = True
                if not call.ended:  # (if it has, the lock is ours already, or free)
                    call.done.acquire()
                break
            except BaseException as exc:  # noqa: BLE001 (raised below, once the call ended)
                again = exc
        if call.error is None and undo is not None:
            try:
                self.call(undo, (call.result,), {})
            except Exception:  # noqa: BLE001, S110 (a release that failed: the lease lapses)
                pass
            except BaseException as exc:  # noqa: BLE001 (interrupted: the undo ran all the same)
                again = exc
        if again is not None:
            raise again

    async def wait_idle(self) -> None:
        """Refuse calls from now on, and wait until every call made has ended (call on the
        loop)."""
        import asyncio

        self._open = False
        while self.calls:  # (one registered and not scheduled yet is, within a moment)
            if self.running:
                await asyncio.wait(list(self.running.values()))
            else:
                await asyncio.sleep(0.001)


def _no_scope() -> anyio.CancelScope:
    raise RuntimeError("LoopCaller.here() makes a caller")
