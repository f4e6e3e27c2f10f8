"""Rate windows: never over, nothing counted for a refused call, a clear retry time."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import anyio
import pytest

from callthrottle import (
    AcquireTimeout,
    InvalidArgument,
    Lease,
    NumberState,
    RateLimited,
    Throttle,
    Window,
    WindowUsage,
)

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

NUMBER = "+8657188880001"


def config(rates: str, daily_reset: str = "rolling", timezone: str = "UTC") -> dict[str, object]:
    return {
        "timezone": timezone,
        "default_profile": "p",
        "profiles": {"p": {"cap": 50, "rates": rates, "daily_reset": daily_reset}},
    }


async def test_a_full_window_refuses_and_says_when_to_retry(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(config=config("3/2seconds")) as throttle:
        for _ in range(3):
            await throttle.release(await throttle.acquire(NUMBER, timeout=0))
        with pytest.raises(RateLimited, match=r"over its rate window 3 per 2 s") as caught:
            await throttle.acquire(NUMBER, timeout=0)
        refusal = caught.value
        assert refusal.refused_by == "rate window 3 per 2 s"
        assert refusal.retry_after is not None
        assert 1.0 < refusal.retry_after <= 2.01
        assert isinstance(refusal, AcquireTimeout)
        assert throttle.held == ()
        # A refused call counted nothing: the window frees exactly when it said.
        await anyio.sleep(refusal.retry_after)
        await throttle.acquire(NUMBER, timeout=0)


async def test_concurrent_callers_never_exceed_a_window(new_throttle: ThrottleFactory) -> None:
    """Two throttles, 20 tasks, try-once in a loop for less than one window: exactly 5 win."""
    granted: list[Lease] = []

    async def caller(throttle: Throttle, until: float) -> None:
        while anyio.current_time() < until:
            try:
                granted.append(await throttle.acquire(NUMBER, timeout=0))
            except RateLimited:
                await anyio.sleep(0.01)

    cfg = config("5/2seconds")
    async with new_throttle(config=cfg) as first, new_throttle(config=cfg) as second:
        until = anyio.current_time() + 1.5
        async with anyio.create_task_group() as tg:
            for index in range(20):
                tg.start_soon(caller, first if index % 2 else second, until)
    assert len(granted) == 5


async def test_a_waiting_caller_gets_in_when_the_window_has_room(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(config=config("2/second")) as throttle:
        await throttle.acquire(NUMBER, timeout=0)
        await throttle.acquire(NUMBER, timeout=0)
        start = anyio.current_time()
        await throttle.acquire(NUMBER, timeout=3)
        assert 0.5 < anyio.current_time() - start < 1.6
        # The waiter got in when the first hit left the window; the second may leave up to
        # one round trip later (it was counted that much after the first), so this caller
        # may wait for it: the window then holds the last two.
        await throttle.acquire(NUMBER, timeout=1)
        with pytest.raises(RateLimited, match=r"within 0\.2 s; retry in") as caught:
            await throttle.acquire(NUMBER, timeout=0.2)
        assert caught.value.timeout == 0.2
        assert len(throttle.held) == 4


async def test_per_number_rates_override_the_profile(new_throttle: ThrottleFactory) -> None:
    cfg = config("100/second")
    cfg["numbers"] = {NUMBER: {"rates": "1/minute"}}
    async with new_throttle(config=cfg) as throttle:
        await throttle.acquire(NUMBER, timeout=0)
        with pytest.raises(RateLimited, match="1 per 60 s"):
            await throttle.acquire(NUMBER, timeout=0)
        for _ in range(5):
            await throttle.acquire("+8657188880002", timeout=0)


@pytest.mark.parametrize("timezone", ["Asia/Shanghai", "America/New_York"])
async def test_daily_caps_reset_at_local_midnight(
    new_throttle: ThrottleFactory, timezone: str
) -> None:
    async with new_throttle(config=config("2/day", "midnight", timezone)) as throttle:
        await throttle.acquire(NUMBER, timeout=0)
        await throttle.acquire(NUMBER, timeout=0)
        with pytest.raises(RateLimited, match="2 per day \\(from local midnight\\)") as caught:
            await throttle.acquire(NUMBER, timeout=0)
    now = dt.datetime.now(ZoneInfo(timezone))
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert caught.value.retry_after is not None
    assert abs(caught.value.retry_after - (midnight - now).total_seconds()) < 2


async def test_rolling_daily_caps_free_a_day_after_each_call(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(config=config("2/day")) as throttle:
        await throttle.acquire(NUMBER, timeout=0)
        await throttle.acquire(NUMBER, timeout=0)
        with pytest.raises(RateLimited) as caught:
            await throttle.acquire(NUMBER, timeout=0)
    assert caught.value.retry_after is not None
    assert 86_398 < caught.value.retry_after <= 86_400.01


async def test_a_queued_caller_is_checked_against_the_window_when_its_turn_comes(
    new_throttle: ThrottleFactory,
) -> None:
    """Cap 1 and 2 calls per 10 s: the second caller waits for the slot, gets it, and the
    third, whose turn comes with the window full, is refused with the window's retry time."""
    cfg = config("2/10seconds")
    cfg["profiles"]["p"]["cap"] = 1  # type: ignore[index]
    outcomes: list[str] = []

    async def caller(throttle: Throttle) -> None:
        try:
            lease = await throttle.acquire(NUMBER, timeout=5)
        except RateLimited as exc:
            outcomes.append(exc.refused_by)
            return
        outcomes.append("granted")
        await throttle.release(lease)

    async with new_throttle(config=cfg) as throttle:
        first = await throttle.acquire(NUMBER, timeout=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, throttle)
            tg.start_soon(caller, throttle)
            with anyio.fail_after(5):
                while (await throttle.usage(NUMBER)).waiting != 2:
                    await anyio.sleep(0.005)
            await throttle.release(first)
    assert sorted(outcomes) == ["granted", "rate window 2 per 10 s"]


def test_windows_must_be_valid_notation() -> None:
    from callthrottle import ConfigError

    with pytest.raises(ConfigError, match=r"config\.profiles\.p\.rates must be rate limits"):
        Throttle.from_url("memory://", config=config("five a second"))
    with pytest.raises(ConfigError, match=r"config\.timezone must be an IANA time zone"):
        Throttle.from_url("memory://", config=config("1/second", timezone="Mars/Olympus"))
    with pytest.raises(ConfigError, match=r"daily_reset must be 'rolling' or 'midnight'"):
        Throttle.from_url("memory://", config=config("1/second", daily_reset="noon"))


async def test_rates_set_at_run_time_reach_every_process(new_throttle: ThrottleFactory) -> None:
    async with new_throttle() as operator, new_throttle() as dialer:
        await operator.set_rates(NUMBER, "2/minute")
        await dialer.acquire(NUMBER, timeout=0)
        await dialer.acquire(NUMBER, timeout=0)
        with pytest.raises(RateLimited, match="2 per 60 s"):
            await dialer.acquire(NUMBER, timeout=0)
        assert (await dialer.status(NUMBER)).rates == (Window(2, 60.0),)
        await operator.set_rates(NUMBER, None)
        assert (await dialer.status(NUMBER)).rates is None
        await dialer.acquire(NUMBER, timeout=0)


async def test_a_warming_number_follows_its_warmup_cap(new_throttle: ThrottleFactory) -> None:
    cfg = config("100/second")
    cfg["profiles"]["p"]["warmup"] = [2, 5]  # type: ignore[index]
    async with new_throttle(config=cfg) as throttle:
        await throttle.set_state(NUMBER, NumberState.WARMING, reason="new number")
        status = await throttle.status(NUMBER)
        assert status.state is NumberState.WARMING
        assert status.warming_for is not None
        assert 0 <= status.warming_for < 5
        await throttle.acquire(NUMBER, timeout=0)
        await throttle.acquire(NUMBER, timeout=0)
        with pytest.raises(RateLimited, match="2 per 86400 s"):
            await throttle.acquire(NUMBER, timeout=0)
        await throttle.set_state(NUMBER, NumberState.ACTIVE)  # the warm-up no longer applies
        await throttle.acquire(NUMBER, timeout=0)
        assert (await throttle.status(NUMBER)).warming_for is None


async def test_a_carriers_cool_down_does_not_end_a_warm_up(new_throttle: ThrottleFactory) -> None:
    """A warming number is cooled down by a carrier's answer: when the cool-down ends, it is
    warming again, from the day its warm-up began, with the warm-up's daily cap."""
    cfg = config("100/second")
    cfg["profiles"]["p"]["warmup"] = [2, 5]  # type: ignore[index]
    cfg["feedback"] = {"477": {"action": "cooldown", "seconds": 0.2}}
    async with new_throttle(config=cfg) as throttle:
        await throttle.set_state(NUMBER, NumberState.WARMING, reason="new number")
        await throttle.report(NUMBER, 477)
        assert (await throttle.status(NUMBER)).state is NumberState.COOLING
        await anyio.sleep(0.3)
        status = await throttle.status(NUMBER)
        assert status.state is NumberState.WARMING
        assert status.warming_for is not None
        assert 0.2 < status.warming_for < 5
        await throttle.acquire(NUMBER, timeout=0)
        await throttle.acquire(NUMBER, timeout=0)
        with pytest.raises(RateLimited, match="2 per 86400 s"):
            await throttle.acquire(NUMBER, timeout=0)


async def test_window_usage_counts_the_calls_in_each_window_in_force(
    new_throttle: ThrottleFactory,
) -> None:
    cfg = config("3/second;10/minute")
    cfg["profiles"]["p"]["warmup"] = [4]  # type: ignore[index]
    async with new_throttle(config=cfg) as dialer, new_throttle(config=cfg) as operator:
        assert await operator.window_usage(NUMBER) == [
            WindowUsage(Window(3, 1.0), 0),
            WindowUsage(Window(10, 60.0), 0),
        ]
        leases = [await dialer.acquire(NUMBER, timeout=0) for _ in range(2)]
        usage = await operator.window_usage(NUMBER)  # another process sees them
        assert [(u.used, u.remaining) for u in usage] == [(2, 1), (2, 8)]
        assert str(usage[0]) == "2/3 per 1 s"
        for lease in leases:
            await dialer.release(lease)  # a release does not uncount a call
        assert [u.used for u in await operator.window_usage(NUMBER)] == [2, 2]
        with pytest.raises(RateLimited):  # nothing counted for a refused call
            for _ in range(2):
                await dialer.acquire(NUMBER, timeout=0)
        assert [u.used for u in await operator.window_usage(NUMBER)] == [3, 3]
        await operator.set_state(NUMBER, NumberState.WARMING)  # the warm-up's daily cap too
        assert (await operator.window_usage(NUMBER))[-1] == WindowUsage(Window(4, 86400.0), 3)
        await operator.set_rates(NUMBER, "5/hour")  # windows set at run time replace them
        assert [u.window for u in await operator.window_usage(NUMBER)] == [
            Window(5, 3600.0),
            Window(4, 86400.0),
        ]
        with pytest.raises(InvalidArgument, match="number"):
            await operator.window_usage("not a number")


def test_bad_warmup_and_run_time_rates() -> None:
    from callthrottle import ConfigError

    cfg = config("1/second")
    cfg["profiles"]["p"]["warmup"] = [10, 0]  # type: ignore[index]
    warmup_rule = r"config\.profiles\.p\.warmup\[1\] must be an int from 1 to 1000000000, got 0"
    with pytest.raises(ConfigError, match=warmup_rule):
        Throttle.from_url("memory://", config=cfg)


@pytest.mark.parametrize("how", ["set_rates", "warming"])
async def test_windows_set_while_a_caller_waits_count_its_call(
    new_throttle: ThrottleFactory, how: str
) -> None:
    """A caller queued on a number without windows; windows then come into force (set at run
    time, or the warm-up's daily cap when the number starts warming). The slot it gets later
    is counted in them, like any call admitted under them."""
    cfg = {"default_profile": "p", "profiles": {"p": {"cap": 50, "warmup": [1]}}}
    async with new_throttle(config=cfg) as holder, new_throttle(config=cfg) as waiter_side:
        held = await holder.acquire(NUMBER, limit=1, timeout=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: waiter_side.acquire(NUMBER, limit=1, timeout=10))
            with anyio.fail_after(5):
                while (await holder.usage(NUMBER, limit=1)).waiting != 1:
                    await anyio.sleep(0.005)
            if how == "set_rates":
                await holder.set_rates(NUMBER, "1/minute")
            else:
                await holder.set_state(NUMBER, NumberState.WARMING)
            await holder.release(held)
        assert [usage.used for usage in await holder.window_usage(NUMBER)] == [1]
        await waiter_side.release(waiter_side.held[0])
        with pytest.raises(RateLimited, match=r"1 per (60|86400) s"):
            await holder.acquire(NUMBER, limit=1, timeout=0)


async def test_slots_freed_together_reach_every_waiter_with_windows(
    new_throttle: ThrottleFactory,
) -> None:
    """Callers with rate windows are never handed a slot: the first in line is told to take
    it. Two slots free at once: once the first has taken its slot, the next is told too (with
    60 s leases it would otherwise look again only after a minute)."""
    cfg = config("100/minute")
    async with (
        new_throttle(config=cfg, lease_ttl=60) as holder,
        new_throttle(config=cfg, lease_ttl=60) as waiter_side,
    ):
        held = [await holder.acquire(NUMBER, limit=2, timeout=0) for _ in range(2)]
        async with anyio.create_task_group() as tg:
            for count in (1, 2):
                tg.start_soon(lambda: waiter_side.acquire(NUMBER, limit=2, timeout=5))
                with anyio.fail_after(5):
                    while (await holder.usage(NUMBER, limit=2)).waiting != count:
                        await anyio.sleep(0.005)
            for lease in held:
                await holder.release(lease)
        assert len(waiter_side.held) == 2
