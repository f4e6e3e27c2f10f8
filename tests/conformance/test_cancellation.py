"""Cancellation and timeouts leave nothing behind; release cannot be interrupted."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import Throttle, Usage

from .test_fifo import NUMBER, wait_for_waiting

if TYPE_CHECKING:
    from callthrottle.backends import AcquireResult, Backend

    from ..conftest import BackendFactory


async def test_cancelled_waiter_leaves_the_line(throttle: Throttle) -> None:
    held = await throttle.acquire(NUMBER, limit=1, timeout=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(throttle.acquire, NUMBER, limit=1))
        await wait_for_waiting(throttle, 1)
        tg.cancel_scope.cancel()
    assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=1, limit=1, waiting=0)
    await throttle.release(held)
    assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=0, limit=1, waiting=0)


@pytest.mark.parametrize("release_first", [True, False], ids=["releasefirst", "cancelfirst"])
async def test_waiter_cancelled_at_the_moment_of_hand_off(
    throttle: Throttle, release_first: bool
) -> None:
    """A waiter cancelled just as it is handed the slot leaks nothing.

    Either the acquire completed before the cancellation reached it (the caller holds the lease
    and gives it back at its next checkpoint, as ``slot()`` does), or it raised and gave the
    slot back itself. Both ways, the slot is free afterwards and the count is exact.
    """
    held = await throttle.acquire(NUMBER, limit=1, timeout=0)
    outcomes: list[str] = []

    async def waiter() -> None:
        try:
            async with throttle.slot(NUMBER, limit=1):
                outcomes.append("granted")
                await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            outcomes.append("cancelled")
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await wait_for_waiting(throttle, 1)
        if release_first:
            await throttle.release(held)
            tg.cancel_scope.cancel()
        else:
            tg.cancel_scope.cancel()
            await throttle.release(held)
    assert outcomes[-1] == "cancelled"
    assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=0, limit=1, waiting=0)
    assert throttle.held == ()
    await throttle.acquire(NUMBER, limit=1, timeout=0)


async def test_bare_acquire_cancelled_at_hand_off_is_exact(throttle: Throttle) -> None:
    """Without ``slot()``: a lease is held if and only if acquire returned it."""
    held = await throttle.acquire(NUMBER, limit=1, timeout=0)
    returned: list[object] = []

    async def waiter() -> None:
        returned.append(await throttle.acquire(NUMBER, limit=1))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await wait_for_waiting(throttle, 1)
        await throttle.release(held)
        tg.cancel_scope.cancel()
    usage = await throttle.usage(NUMBER, limit=1)
    assert usage.in_use == len(returned) == len(throttle.held)
    assert usage.waiting == 0


class _StallAfterGrant:
    """Wraps a backend: its acquire does the real work, then never returns (a lost reply)."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner
        self.granted = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def acquire(self, *args: Any, **kwargs: Any) -> AcquireResult:
        result = await self._inner.acquire(*args, **kwargs)
        self.granted.set()
        await anyio.sleep_forever()
        return result  # pragma: no cover


async def test_acquire_cancelled_after_the_grant_gives_the_slot_back(
    new_backend: BackendFactory,
) -> None:
    stalling = _StallAfterGrant(new_backend())
    async with (
        Throttle(stalling, close_backend=True) as throttle,
        Throttle(new_backend(), close_backend=True) as observer,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(throttle.acquire, NUMBER))
            await stalling.granted.wait()
            assert (await observer.usage(NUMBER)).in_use == 1
            tg.cancel_scope.cancel()
        assert (await observer.usage(NUMBER)).in_use == 0
        assert throttle.held == ()


async def test_timeout_during_a_stalled_acquire_gives_the_slot_back(
    new_backend: BackendFactory,
) -> None:
    stalling = _StallAfterGrant(new_backend())
    async with (
        Throttle(stalling, close_backend=True) as throttle,
        Throttle(new_backend(), close_backend=True) as observer,
    ):
        with pytest.raises(TimeoutError):
            await throttle.acquire(NUMBER, timeout=0.3)
        assert (await observer.usage(NUMBER)).in_use == 0


async def test_release_is_shielded_from_cancellation(throttle: Throttle) -> None:
    lease = await throttle.acquire(NUMBER, limit=1, timeout=0)
    with anyio.CancelScope() as scope:
        scope.cancel()
        assert await throttle.release(lease) is True
    assert (await throttle.usage(NUMBER, limit=1)).in_use == 0


async def test_slot_block_cancelled_gives_the_slot_back(throttle: Throttle) -> None:
    entered = anyio.Event()

    async def call() -> None:
        async with throttle.slot(NUMBER, limit=1):
            entered.set()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await entered.wait()
        assert (await throttle.usage(NUMBER, limit=1)).in_use == 1
        tg.cancel_scope.cancel()
    assert (await throttle.usage(NUMBER, limit=1)).in_use == 0
