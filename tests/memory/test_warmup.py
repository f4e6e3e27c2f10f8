"""The warm-up ramp week by week, on a clock the test owns (the memory backend's)."""

from __future__ import annotations

import pytest

from callthrottle import NumberState, RateLimited, Throttle
from callthrottle.backends import MemoryBackend

NUMBER = "+8657188880001"
DAY = 86400.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def calls_admitted_today(throttle: Throttle) -> int:
    admitted = 0
    while True:
        try:
            await throttle.release(await throttle.acquire(NUMBER, timeout=0))
        except RateLimited:
            return admitted
        admitted += 1
        if admitted > 100:
            return admitted


async def test_daily_caps_ramp_up_by_week_then_stop() -> None:
    clock = FakeClock()
    config = {"default_profile": "new", "profiles": {"new": {"warmup": [10, 20, 30]}}}
    backend = MemoryBackend(clock=clock, wall_clock=clock)
    async with Throttle(
        backend, config=config, lease_ttl=366 * DAY
    ) as throttle:  # no lease lapses in the 4 weeks
        await throttle.set_state(NUMBER, NumberState.WARMING)
        seen = []
        for week in range(4):
            clock.now = 1_000_000.0 + week * 7 * DAY + 3600
            seen.append(await calls_admitted_today(throttle))
            clock.now += DAY + 1  # a day later: the window is empty again
            assert await calls_admitted_today(throttle) == seen[-1]
        assert seen == [10, 20, 30, 101]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
