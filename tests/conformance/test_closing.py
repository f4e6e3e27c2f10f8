"""Closing a throttle while its callers wait, on a number or on a pool: every waiter gives up
at once with the same error, and nothing it asked for is left on the backend."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
import pytest

from callthrottle import Event, Lease, Queued, Throttle, ThrottleError
from callthrottle._keeper import CLEANUP_TIMEOUT

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

NUMBER = "+8657188880001"
CONFIG = {"pools": {"one": {"numbers": [NUMBER]}}}


async def _take(throttle: Throttle, way: str, timeout: float | None = 0) -> Lease:
    """The number's only slot, asked for by number or from the pool."""
    if way == "pool":
        return await throttle.acquire_from("one", timeout=timeout)
    return await throttle.acquire(NUMBER, timeout=timeout)


@pytest.mark.parametrize("way", ["number", "pool"])
@pytest.mark.parametrize("holder", ["other", "closing"], ids=["held-elsewhere", "held-by-it"])
async def test_closing_stops_every_waiter_at_once_and_leaves_nothing_behind(
    new_throttle: ThrottleFactory, way: str, holder: str
) -> None:
    """The slot is held by another throttle, or by the closing one (closing gives it back,
    which must not hand it to the closing throttle's own waiter)."""
    events: list[Event] = []
    outcome: list[object] = []
    async with new_throttle(config=CONFIG, default_limit=1) as observer:
        closing = new_throttle(config=CONFIG, default_limit=1, hooks=[events.append])

        async def waiter() -> None:
            try:
                outcome.append(await _take(closing, way, timeout=30))
            except ThrottleError as exc:
                outcome.append(exc)

        with anyio.fail_after(15):  # the waiter ends by itself
            async with anyio.create_task_group() as tg:
                await closing.__aenter__()
                held = await _take(observer if holder == "other" else closing, way)
                tg.start_soon(waiter)
                while not any(isinstance(event, Queued) for event in events):
                    await anyio.sleep(0.005)
                started = time.perf_counter()
                await closing.__aexit__(None, None, None)
                took = time.perf_counter() - started
        assert took < CLEANUP_TIMEOUT / 4, f"close took {took:.2f} s"
        assert len(outcome) == 1
        error = outcome[0]
        assert type(error) is ThrottleError, error  # what a number's waiter gets
        assert "not open" in str(error)
        # Nothing is left: no lease of the closing throttle, no place in any line.
        usage = await observer.usage(NUMBER, limit=1)
        assert (usage.in_use, usage.waiting) == ((1, 0) if holder == "other" else (0, 0))
        if holder == "other":
            await observer.release(held)
        await observer.release(await _take(observer, way))  # the slot is free, nobody ahead
