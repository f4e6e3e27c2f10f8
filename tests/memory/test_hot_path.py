"""The embedded backend's hot path keeps its guarantees: a release that cannot be interrupted
(no shield, no checkpoint), a freed slot handed to the next in line without waking anyone
else, an acquire that decides before its checkpoint, and the timed wakes of waiters on
asyncio (one timer for all). Run on asyncio and trio."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import anyio
import pytest

from callthrottle import Lease, Throttle, Usage
from callthrottle._loop import Alarms, OnLoop
from callthrottle.backends import MemoryBackend

if TYPE_CHECKING:
    from callthrottle.backends import AcquireRequest, AcquireResult

NUMBER = "+8657188880001"


class _Counting(MemoryBackend):
    """A memory backend that counts the asks it answers and the words it sends."""

    __slots__ = ("asks", "told")

    def __init__(self) -> None:
        super().__init__()
        self.asks = 0
        self.told: list[str] = []

    async def acquire(self, request: AcquireRequest, *, enqueue: bool) -> AcquireResult:
        """No Lua twin: counts, then asks the memory backend."""
        self.asks += 1
        return await super().acquire(request, enqueue=enqueue)

    def _notify(self, owner: str, kind: str, number: str, token: str) -> None:
        self.told.append(kind)
        super()._notify(owner, kind, number, token)


async def _wait_for_waiting(throttle: Throttle, count: int, limit: int) -> None:
    with anyio.fail_after(5):
        while (await throttle.usage(NUMBER, limit=limit)).waiting != count:
            await anyio.sleep(0.005)


async def test_a_release_in_a_cancelled_scope_gives_the_slot_back_and_hands_it_on() -> None:
    async with Throttle.from_url("memory://") as throttle:
        held = await throttle.acquire(NUMBER, limit=1, timeout=0)
        got: list[Lease] = []

        async def waiter() -> None:
            got.append(await throttle.acquire(NUMBER, limit=1, timeout=5))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await _wait_for_waiting(throttle, 1, 1)
            with anyio.CancelScope() as scope:
                scope.cancel()
                assert await throttle.release(held) is True  # not interrupted
                assert held.released
                assert held not in throttle.held
            assert scope.cancelled_caught is False  # nothing in it could be cancelled
        assert len(got) == 1
        assert throttle.held == (got[0],)
        assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=1, limit=1, waiting=0)


async def test_a_release_cancelled_from_outside_is_done_before_the_cancellation_lands() -> None:
    async with Throttle.from_url("memory://") as throttle:
        lease = await throttle.acquire(NUMBER, limit=1, timeout=0)
        outcome: list[bool] = []
        async with anyio.create_task_group() as tg:

            async def release() -> None:
                outcome.append(await throttle.release(lease))
                await anyio.sleep_forever()

            tg.start_soon(release)
            tg.cancel_scope.cancel()
        # Cancelled before it started, or released in full: never half done.
        usage = await throttle.usage(NUMBER, limit=1)
        assert (usage.in_use, lease.released, len(throttle.held)) in ((0, True, 0), (1, False, 1))
        assert outcome in ([True], [])


async def test_one_release_hands_the_slot_on_and_wakes_nobody_else() -> None:
    backend = _Counting()
    async with Throttle(backend) as throttle:
        held = [await throttle.acquire(NUMBER, limit=2, timeout=0) for _ in range(2)]
        got: list[Lease] = []

        async def waiter() -> None:
            got.append(await throttle.acquire(NUMBER, limit=2, timeout=5))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(waiter)
            await _wait_for_waiting(throttle, 5, 2)
            asks, backend.told = backend.asks, []
            await throttle.release(held[0])
            with anyio.fail_after(5):
                while not got:
                    await anyio.sleep(0.005)
            # The first in line was granted the slot, and was told so: it did not ask again,
            # and nobody else in line was woken (the new lease lapses after the older one).
            assert backend.told == ["granted"]
            assert backend.asks == asks
            await _wait_for_waiting(throttle, 4, 2)
            tg.cancel_scope.cancel()


async def test_an_acquire_cancelled_at_its_checkpoint_holds_nothing() -> None:
    """The memory backend decides before its checkpoint: a caller cancelled there withdraws
    the slot it was granted (as after a reply lost on Redis)."""
    async with Throttle.from_url("memory://") as throttle:
        for timeout in (0, 5, None):
            with anyio.CancelScope() as scope:
                scope.cancel()
                await throttle.acquire(NUMBER, limit=1, timeout=timeout)
            assert scope.cancelled_caught
            assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=0, limit=1, waiting=0)
            assert throttle.held == ()
        await throttle.acquire(NUMBER, limit=1, timeout=0)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_alarms_set_each_signal_at_its_time_and_forget_those_set_sooner() -> None:
    part = OnLoop()
    part.use_loop(anyio.lowlevel.current_token().backend_class)
    alarms = Alarms(asyncio.get_running_loop())
    now = part._now()
    late, soon = part._new_signal(), part._new_signal()
    alarms.at(now + 0.2, late)
    alarms.at(now + 0.05, soon)
    with anyio.fail_after(5):
        await soon.wait()
    assert part._now() - now >= 0.05
    assert not late.is_set()
    await late.wait()
    assert part._now() - now >= 0.2
    # Signals set before their time leave entries behind, dropped as they pile up.
    for _ in range(10_000):
        signal = part._new_signal()
        alarms.at(part._now() + 60.0, signal)
        signal.set()
    assert len(alarms._heap) <= 128
    kept = part._new_signal()
    alarms.at(part._now() + 0.01, kept)
    alarms.clear()
    await anyio.sleep(0.05)
    assert not kept.is_set()
