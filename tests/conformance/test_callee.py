"""Callee windows: at most so many calls to one person per window, from all caller IDs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from callthrottle import ConfigError, RateLimited, Throttle

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

A, B = "+8657188880001", "+8657188880002"
CALLEE, OTHER = "+8613800138000", "+8613900139000"


def config(**extra: Any) -> dict[str, Any]:
    return {
        "default_profile": "p",
        "profiles": {"p": {"cap": 10, "rates": "3/minute"}},
        "callee": {"rates": "2/minute;5/day"},
        **extra,
    }


async def test_calls_to_one_callee_are_counted_across_numbers(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(config=config()) as first, new_throttle(config=config()) as second:
        await first.acquire(A, callee=CALLEE, timeout=0)
        await second.acquire(B, callee=CALLEE, timeout=0)
        with pytest.raises(RateLimited, match=r"2 per 60 s for callee \+8613800138000") as caught:
            await first.acquire(A, callee=CALLEE, timeout=0)
        assert caught.value.refused_by == "rate window 2 per 60 s for callee +8613800138000"
        assert caught.value.retry_after is not None
        assert 55 < caught.value.retry_after <= 60.01
        # The refusal counted nothing against A: two more calls fit its 3/minute, not three.
        await first.acquire(A, callee=OTHER, timeout=0)
        await first.acquire(A, callee="+8613700137000", timeout=0)
        with pytest.raises(RateLimited, match=r"over its rate window 3 per 60 s; retry"):
            await first.acquire(A, callee="+8613600136000", timeout=0)
        await second.acquire(B, timeout=0)  # no callee given: no callee windows


async def test_tenants_count_their_callees_apart(new_throttle: ThrottleFactory) -> None:
    cfg = config(numbers={A: {"tenant": "acme"}, B: {"tenant": "globex"}})
    async with new_throttle(config=cfg) as throttle:
        for number in (A, A, B, B):
            await throttle.acquire(number, callee=CALLEE, timeout=0)
        for number in (A, B):
            with pytest.raises(RateLimited, match="for callee"):
                await throttle.acquire(number, callee=CALLEE, timeout=0)


async def test_a_queued_caller_is_checked_for_its_callee(new_throttle: ThrottleFactory) -> None:
    cfg = config()
    cfg["profiles"]["p"]["cap"] = 1
    async with new_throttle(config=cfg) as throttle:
        held = await throttle.acquire(A, callee=CALLEE, timeout=0)
        await throttle.acquire(B, callee=CALLEE, timeout=0)
        with pytest.raises(RateLimited, match="for callee"):
            await throttle.acquire(A, callee=CALLEE, timeout=5)
        await throttle.release(held)
        assert (await throttle.usage(A)).in_use == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"callee": {"rates": "often"}}, r"config\.callee\.rates must be rate limits"),
        (
            {"callee": {"limit": 3}},
            r"config\.callee\.limit must be a known key: rates, daily_reset",
        ),
        ({"default_tenant": ""}, r"config\.default_tenant must be a non-empty printable name"),
        ({"numbers": {A: {"tenant": "a{b}"}}}, r"\.tenant must be a non-empty printable name"),
    ],
)
def test_bad_callee_and_tenant_settings(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Throttle.from_url("memory://", config=config(**extra))


async def test_bad_callee_is_refused(throttle: Throttle) -> None:
    from callthrottle import InvalidArgument

    with pytest.raises(InvalidArgument, match="callee must be a valid phone number"):
        await throttle.acquire(A, callee="nobody")
    assert throttle.held == ()
