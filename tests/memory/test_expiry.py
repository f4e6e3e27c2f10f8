"""Leases and places in line lapse exactly on time, on a clock the test owns.

Settling skips its scan of a number's entries until the earliest of them can have lapsed; these
pin down that renewals, grants and refreshed places in line keep that bound right.
"""

from __future__ import annotations

import pytest

from callthrottle import Throttle, Usage
from callthrottle._rates import RatePlan, Window
from callthrottle.backends import AcquireRequest, MemoryBackend, Outcome, ReleaseState

NUMBER = "+8657188880001"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_leases_of_different_ttls_lapse_each_at_its_time() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    await backend.open()
    assert (
        await backend.acquire(AcquireRequest(NUMBER, "long", "a", 5, 100.0, None), enqueue=False)
    ).outcome == 1
    assert (
        await backend.acquire(AcquireRequest(NUMBER, "short", "a", 5, 10.0, None), enqueue=False)
    ).outcome == 1
    clock.now += 9.9
    assert await backend.usage(NUMBER, 5) == Usage(in_use=2, limit=5, waiting=0)
    clock.now += 0.2
    assert (await backend.usage(NUMBER, 5)).in_use == 1
    assert await backend.release(NUMBER, "short", "a") == ReleaseState.EXPIRED
    clock.now += 90.0
    assert await backend.release(NUMBER, "long", "a") == ReleaseState.EXPIRED
    assert await backend.usage(NUMBER, 5) == Usage(in_use=0, limit=5, waiting=0)


async def test_a_renewed_lease_lives_on_and_a_lapsed_one_frees_its_slot_for_the_line() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    await backend.open()
    await backend.acquire(AcquireRequest(NUMBER, "kept", "a", 2, 10.0, None), enqueue=False)
    await backend.acquire(AcquireRequest(NUMBER, "crashed", "b", 2, 10.0, None), enqueue=False)
    queued = await backend.acquire(AcquireRequest(NUMBER, "next", "c", 2, 10.0, None), enqueue=True)
    assert queued.outcome is Outcome.QUEUED
    for _ in range(3):  # renewed every 8 s: "kept" and the waiter's place outlive 10 s
        clock.now += 8.0
        await backend.renew("a", [(NUMBER, "kept")])
        await backend.renew("c", [(NUMBER, "next")])
    # "crashed" lapsed at 10 s: its slot went to the waiter at the next look.
    assert await backend.usage(NUMBER, 2) == Usage(in_use=2, limit=2, waiting=0)
    assert (
        await backend.acquire(AcquireRequest(NUMBER, "next", "c", 2, 10.0, None), enqueue=True)
    ).outcome == 1
    clock.now += 9.0
    assert (await backend.usage(NUMBER, 2)).in_use == 2
    clock.now += 1.0
    assert (await backend.usage(NUMBER, 2)).in_use == 0


async def test_a_short_max_hold_lapses_before_an_older_longer_lease() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    async with Throttle(backend, lease_ttl=60.0) as long_lived:
        await long_lived.acquire(NUMBER, timeout=0)
        clock.now += 1.0
        async with Throttle(backend, lease_ttl=60.0, max_hold=5.0) as short:
            await short.acquire(NUMBER, timeout=0)
            clock.now += 4.9
            assert (await short.usage(NUMBER)).in_use == 2
            clock.now += 0.1
            assert (await short.usage(NUMBER)).in_use == 1


async def test_a_lapsed_place_in_line_is_not_handed_a_slot() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    await backend.open()
    await backend.acquire(AcquireRequest(NUMBER, "holder", "a", 1, 100.0, None), enqueue=False)
    queued = await backend.acquire(AcquireRequest(NUMBER, "gone", "b", 1, 10.0, None), enqueue=True)
    assert queued.outcome is Outcome.QUEUED
    clock.now += 10.0  # "gone" never renewed its place: it lapses before the release
    assert await backend.release(NUMBER, "holder", "a") == ReleaseState.RELEASED
    assert await backend.usage(NUMBER, 1) == Usage(in_use=0, limit=1, waiting=0)


async def test_a_callee_log_is_forgotten_once_its_calls_left_every_window() -> None:
    """Calls to ever new callees keep a bounded number of logs, as on Redis, where each
    callee's log expires with its longest window."""
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    await backend.open()
    for i in range(5000):
        rates = RatePlan(callee=f"+86138{i:08d}", callee_windows=(Window(3, 60.0),))
        result = await backend.acquire(
            AcquireRequest(NUMBER, f"call-{i}", "a", 5, 30.0, None, rates), enqueue=False
        )
        assert result.outcome is Outcome.GRANTED
        await backend.release(NUMBER, f"call-{i}", "a")
        clock.now += 1.0
    assert len(backend._callees) <= 1100  # at most 61 callees called within the last minute
    again = RatePlan(callee=f"+86138{4999:08d}", callee_windows=(Window(1, 60.0),))
    refused = await backend.acquire(
        AcquireRequest(NUMBER, "again", "a", 5, 30.0, None, again), enqueue=False
    )
    assert refused.outcome is Outcome.RATE_LIMITED  # a live log is kept
