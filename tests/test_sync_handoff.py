"""The blocking facade's hand-off to its event loop, attacked: a call racing the close, an
interruption while an interruption is handled, an interruption inside the scheduling itself,
and a forked child."""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import anyio
import pytest
from anyio.from_thread import start_blocking_portal

from callthrottle._handoff import LoopCaller
from callthrottle.sync import SyncThrottle

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterator

    from callthrottle import Event

NUMBER = "+8657188880001"


class _Interrupted(BaseException):
    """What a signal's handler raises in the waiting thread (as ``KeyboardInterrupt`` does)."""


@contextmanager
def interrupt_on(signum: int) -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise _Interrupted

    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, previous)


async def _wait_idle_within(caller: LoopCaller, seconds: float) -> None:
    with anyio.fail_after(seconds):
        await caller.wait_idle()


def test_a_call_racing_the_close_is_refused_or_served_never_left_waiting() -> None:
    # Closing a facade waits for the calls in flight (``wait_idle``) and stops the loop; a
    # thread that read the facade's caller just before (and was preempted) calls right then.
    for _ in range(40):
        left: list[str] = []
        with start_blocking_portal("asyncio") as portal:
            caller = portal.call(LoopCaller.here)

            def hammer(caller: LoopCaller = caller, left: list[str] = left) -> None:
                while True:
                    try:
                        caller.call(anyio.sleep, (0,), {})
                    except RuntimeError:
                        left.append("refused")
                        return

            threads = [threading.Thread(target=hammer, daemon=True) for _ in range(3)]
            for thread in threads:
                thread.start()
            time.sleep(0.002)
            portal.call(_wait_idle_within, caller, 10)
        for thread in threads:
            thread.join(5)
        assert not any(thread.is_alive() for thread in threads)
        assert left == ["refused"] * 3


def test_a_second_interruption_while_the_first_is_handled_leaks_no_slot() -> None:
    caller = threading.get_ident()

    def interrupt_twice_once_admitted(event: Event) -> None:
        if type(event).__name__ == "Admitted":
            signal.pthread_kill(caller, signal.SIGALRM)
            time.sleep(0.1)  # the caller is now waiting for the cancelled call's end
            signal.pthread_kill(caller, signal.SIGALRM)
            time.sleep(0.1)

    with SyncThrottle.from_url("memory://", default_limit=1) as throttle:
        throttle.add_hook(interrupt_twice_once_admitted)
        with interrupt_on(signal.SIGALRM), pytest.raises(_Interrupted):
            throttle.acquire(NUMBER, timeout=5)
        throttle.remove_hook(interrupt_twice_once_admitted)
        assert throttle.held == ()
        assert throttle.usage(NUMBER).in_use == 0


class _InterruptingLoop:
    """The loop, but the ``n``-th ``call_soon_threadsafe`` is interrupted before it schedules
    anything (as a signal's handler raising inside it would)."""

    def __init__(self, loop: Any, n: int) -> None:
        self._loop, self._left = loop, n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> Any:
        self._left -= 1
        if self._left == 0:
            raise _Interrupted
        return self._loop.call_soon_threadsafe(*args, **kwargs)


def test_a_short_call_interrupted_as_it_is_scheduled_still_runs_first() -> None:
    with SyncThrottle.from_url("memory://", default_limit=1) as throttle:
        lease = throttle.acquire(NUMBER, timeout=0)
        caller = throttle._caller
        assert caller is not None
        loop = caller._loop
        caller._loop = cast("asyncio.AbstractEventLoop", _InterruptingLoop(loop, 1))
        try:
            with pytest.raises(_Interrupted):
                throttle.release(lease)
        finally:
            caller._loop = loop
        assert throttle.held == ()  # the release ran to its end, as a short call does
        assert throttle.usage(NUMBER).in_use == 0


def test_a_forked_child_is_refused_not_left_waiting() -> None:
    with SyncThrottle.from_url("memory://", default_limit=1) as throttle:
        throttle.usage(NUMBER)
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            signal.alarm(5)
            try:
                throttle.usage(NUMBER)
            except RuntimeError as exc:
                os._exit(0 if "process" in str(exc) else 2)
            except BaseException:  # noqa: BLE001 (the child reports it by its exit code)
                os._exit(3)
            os._exit(4)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert throttle.usage(NUMBER).in_use == 0  # the parent's facade is untouched
