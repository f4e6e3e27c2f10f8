"""Configured caps: per carrier profile, overridden per number, on every backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from callthrottle import AcquireTimeout, NumberState, Throttle, Usage

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

CONFIG = {
    "default_region": "CN",
    "default_profile": "fixed-line",
    "profiles": {"fixed-line": {"cap": 4}, "mobile": {"cap": 1}},
    "numbers": {
        "057188880001": {"cap": 2},
        "13800138000": {"profile": "mobile"},
    },
    "feedback": {"477": {"action": "cooldown", "seconds": 60, "reason": "over-frequency"}},
}


async def fill(throttle: Throttle, number: str) -> int:
    """Take slots on ``number`` until it refuses; return how many were granted."""
    taken = 0
    while True:
        try:
            await throttle.acquire(number, timeout=0)
        except AcquireTimeout:
            return taken
        taken += 1


@pytest.mark.parametrize(
    ("number", "cap"),
    [("057188880001", 2), ("+8613800138000", 1), ("+8657188880005", 4)],
    ids=["number-override", "profile", "default-profile"],
)
async def test_configured_caps(new_throttle: ThrottleFactory, number: str, cap: int) -> None:
    async with new_throttle(config=CONFIG) as throttle:
        assert await fill(throttle, number) == cap
        assert await throttle.usage(number) == Usage(in_use=cap, limit=cap, waiting=0)


async def test_all_processes_with_one_config_share_the_cap(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(config=CONFIG) as first, new_throttle(config=CONFIG) as second:
        await first.acquire("057188880001", timeout=0)
        await second.acquire("+86 571 8888 0001", timeout=0)
        with pytest.raises(AcquireTimeout):
            await first.acquire("057188880001", timeout=0)


async def test_run_time_cap_overrides_the_configuration(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(config=CONFIG) as throttle:
        await throttle.set_cap("13800138000", 3)
        assert await fill(throttle, "13800138000") == 3
        assert (await throttle.usage("13800138000")).limit == 3


async def test_configured_feedback(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(config=CONFIG) as throttle:
        reaction = await throttle.report("057188880001", 477)
        assert reaction is not None
        assert reaction.reason == "over-frequency"
        status = await throttle.status("+8657188880001")
        assert (status.state, status.reason) == (NumberState.COOLING, "over-frequency")
