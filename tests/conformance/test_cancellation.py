"""Cancellation and timeouts leave nothing behind; release cannot be interrupted."""

from __future__ import annotations

import math
import random
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import Throttle, Usage

from .test_fifo import NUMBER, wait_for_waiting

if TYPE_CHECKING:
    from callthrottle.backends import AcquireResult, Backend

    from ..conftest import BackendFactory, ThrottleFactory


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


@pytest.mark.parametrize("seed", range(3))
async def test_callers_cancelled_at_random_instants(
    new_throttle: ThrottleFactory, seed: int
) -> None:
    """Callers of two throttles in line, cancelled at random instants (deadlines that land
    while they wait, as they are handed the slot, or as the backend answers; others all at
    once from outside): never more holders than the cap, nothing left behind, and the callers
    never cancelled are served in the order they queued."""
    rnd = random.Random(seed)
    holding = peak = 0
    served: list[int] = []
    scopes: list[anyio.CancelScope] = []

    async def caller(index: int, throttle: Throttle) -> None:
        nonlocal holding, peak
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            lease = await throttle.acquire(NUMBER, limit=1, timeout=rnd.choice([None, 30]))
            holding += 1
            peak = max(peak, holding)
            try:
                if scope.deadline == math.inf and index % 4 != 3:
                    served.append(index)
                await anyio.sleep(rnd.random() * 0.003)
            finally:
                holding -= 1
                await throttle.release(lease)

    async with new_throttle() as first, new_throttle() as second:
        held = await first.acquire(NUMBER, limit=1, timeout=0)
        async with anyio.create_task_group() as tg:
            for index in range(20):
                tg.start_soon(caller, index, rnd.choice([first, second]))
                await wait_for_waiting(first, index + 1)
            now = anyio.current_time()
            for scope in scopes:
                if rnd.random() < 0.3:
                    scope.deadline = now + rnd.random() * 0.05
            await anyio.sleep(rnd.random() * 0.02)
            await first.release(held)
            await anyio.sleep(rnd.random() * 0.02)
            for index in range(3, 20, 4):
                scopes[index].cancel()
        assert peak <= 1
        assert served == sorted(served)
        assert len(served) >= 5
        assert await first.usage(NUMBER, limit=1) == Usage(in_use=0, limit=1, waiting=0)
        assert first.held == second.held == ()
