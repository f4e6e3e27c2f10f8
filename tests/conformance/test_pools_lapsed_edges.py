"""Pools and paid periods at their edges: what a refusal says when every number lapsed while
callers were in line."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import PoolExhausted

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

N1, N2 = "+8657188800001", "+8657188800002"


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.timezone.utc).timestamp()


class Calendar:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(numbers: list[str], paid: dict[str, str]) -> dict[str, Any]:
    return {
        "default_profile": "one",
        "profiles": {"one": {"cap": 1}},
        "numbers": {number: {"paid_until": day} for number, day in paid.items()},
        "pools": {"p": {"numbers": numbers}},
    }


async def test_every_number_lapsed_is_said_also_while_a_caller_is_in_line(
    new_throttle: ThrottleFactory,
) -> None:
    """N1, full, lapses at midnight while a caller waits for it in line: a caller trying once
    just after midnight is refused because every number lapsed (README: "When every number of
    the pool lapsed, PoolExhausted says so"), not as if the pool were busy."""
    calendar = Calendar(at(2027, 1, 31, 23, 59))
    settings = config([N1], {N1: "2027-01-31"})
    async with new_throttle(config=settings, calendar=calendar, lease_ttl=60) as throttle:
        held = await throttle.acquire_from("p", timeout=0)
        async with anyio.create_task_group() as group:

            async def wait_in_line() -> None:
                with pytest.raises(PoolExhausted):
                    await throttle.acquire_from("p", timeout=3)

            group.start_soon(wait_in_line)
            await anyio.sleep(0.05)  # it took its place in line (N1 was full)
            calendar.now = at(2027, 2, 1, 0, 1)
            with pytest.raises(PoolExhausted) as refused:
                await throttle.acquire_from("p", timeout=0)
            assert refused.value.lapsed, str(refused.value)
            group.cancel_scope.cancel()
        await throttle.release(held)
