"""The age of the oldest waiter, as an operator's view shows it: how long the longest-waiting
live caller in a number's line has waited, read without writing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from callthrottle._inspector import Inspector

from .test_fifo import NUMBER, wait_for_waiting

if TYPE_CHECKING:
    from callthrottle import Throttle

    from ..conftest import BackendFactory, ThrottleFactory


async def test_oldest_wait_is_the_first_callers_time_in_line(
    new_throttle: ThrottleFactory, new_backend: BackendFactory
) -> None:
    async with (
        new_throttle(lease_ttl=30.0) as throttle,
        Inspector(new_backend(), close_backend=True) as inspector,
    ):
        assert await inspector.oldest_wait(NUMBER) is None  # nothing known of the number
        held = await throttle.acquire(NUMBER, limit=1, timeout=0)
        assert await inspector.oldest_wait(NUMBER) is None  # a holder is not a waiter

        async def waiter(t: Throttle) -> None:
            async with t.slot(NUMBER, limit=1, timeout=10):
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, throttle)
            await wait_for_waiting(throttle, 1)
            await anyio.sleep(0.4)
            tg.start_soon(waiter, throttle)  # a later caller does not make the wait shorter
            await wait_for_waiting(throttle, 2)
            oldest = await inspector.oldest_wait(NUMBER)
            assert oldest is not None
            assert 0.35 <= oldest < 5.0
            await anyio.sleep(0.2)
            later = await inspector.oldest_wait(NUMBER)
            assert later is not None
            assert later >= oldest + 0.15  # the same caller, waiting longer
            await throttle.release(held)
        assert await inspector.oldest_wait(NUMBER) is None  # both were served
