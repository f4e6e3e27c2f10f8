"""Every numeric input has a range (callthrottle._validate): at its edges both backends store
the value and read it back exactly; just past them, InvalidArgument names the argument and the
range, and nothing is written."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

from callthrottle import (
    Config,
    InvalidArgument,
    NumberState,
    Reaction,
    Throttle,
    Usage,
    Window,
    WindowUsage,
)
from callthrottle._validate import (
    MAX_AMOUNT,
    MAX_CAP,
    MAX_PRIORITY,
    MAX_SECONDS,
    MIN_SECONDS,
)
from callthrottle.backends import RedisBackend, RenewState

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

NUMBER = "+8657188880001"
CALLEE = "+8613912345678"
YEAR = 31_104_000.0  # "1/year" in the rate notation: 360 days
DAY = 86400.0


async def stored(throttle: Throttle) -> list[str]:
    """Everything the backend holds: on Redis every key under the throttle's prefix."""
    backend = throttle.backend
    if isinstance(backend, RedisBackend):
        pattern = backend._prefix + "*"
        return sorted([k.decode() async for k in backend.client.scan_iter(match=pattern)])
    memory: Any = backend
    return [
        *await backend.known_numbers(),
        *memory._pools,
        *memory._group_policies,
        *memory._group_holders,
    ]


# -- at the edges: stored and read back exactly ------------------------------------------------


async def test_a_lease_at_the_largest_cap_ttl_and_hold_reads_back(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(lease_ttl=MAX_SECONDS, max_hold=MAX_SECONDS) as throttle:
        lease = await throttle.acquire(
            NUMBER, limit=MAX_CAP, priority=MAX_PRIORITY, timeout=MAX_SECONDS
        )
        usage = await throttle.usage(NUMBER, limit=MAX_CAP)
        assert usage == Usage(in_use=1, limit=MAX_CAP, waiting=0)
        [holder] = await throttle.holders(NUMBER)
        assert holder.ttl == MAX_SECONDS
        assert holder.expires_in == pytest.approx(MAX_SECONDS, abs=5)
        assert holder.hold_left == pytest.approx(MAX_SECONDS, abs=5)
        # The lease record reads back at the next heartbeat: still held, not "released" (up
        # to its max_hold, which a TTL as long reaches).
        renewed = await throttle.backend.renew(throttle.owner_id, [(NUMBER, lease.token)])
        assert renewed == [RenewState.FINAL]
        assert await throttle.release(lease) is True


async def test_a_lease_at_the_smallest_cap_reads_back(throttle: Throttle) -> None:
    lease = await throttle.acquire(NUMBER, limit=1, priority=0, timeout=0)
    assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=1, limit=1, waiting=0)
    assert [h.token for h in await throttle.holders(NUMBER)] == [lease.token]
    assert await throttle.release(lease) is True


@pytest.mark.parametrize("cap", [1, MAX_CAP])
async def test_a_run_time_cap_at_each_edge_reads_back(throttle: Throttle, cap: int) -> None:
    await throttle.set_cap(NUMBER, cap)
    assert (await throttle.status(NUMBER)).cap == cap
    assert (await throttle.usage(NUMBER)).limit == cap


@pytest.mark.parametrize("cap", [1, MAX_CAP])
async def test_a_lowered_cap_at_each_edge_reads_back(
    new_throttle: ThrottleFactory, cap: int
) -> None:
    feedback = {"503": Reaction("lower_cap", seconds=MAX_SECONDS, cap=cap)}
    async with new_throttle(feedback=feedback) as throttle:
        await throttle.set_cap(NUMBER, MAX_CAP)
        await throttle.report(NUMBER, 503)
        status = await throttle.status(NUMBER)
        assert status.lowered_cap == cap
        assert status.lowered_remaining == pytest.approx(MAX_SECONDS, abs=5)


@pytest.mark.parametrize("duration", [MIN_SECONDS, MAX_SECONDS])
async def test_a_cool_down_at_each_edge_reads_back(throttle: Throttle, duration: float) -> None:
    await throttle.set_state(NUMBER, "cooling", duration=duration)
    status = await throttle.status(NUMBER)
    if duration == MAX_SECONDS:
        assert status.state is NumberState.COOLING
        assert status.remaining == pytest.approx(MAX_SECONDS, abs=5)
    else:  # a millisecond: over by now, or all but
        assert status.remaining is None or status.remaining <= MIN_SECONDS


@pytest.mark.parametrize(
    ("rates", "window"),
    [(f"{MAX_AMOUNT}/year", Window(MAX_AMOUNT, YEAR)), ("1/second", Window(1, 1.0))],
)
async def test_rate_windows_at_each_edge_read_back(
    throttle: Throttle, rates: str, window: Window
) -> None:
    await throttle.set_rates(NUMBER, rates)
    assert (await throttle.status(NUMBER)).rates == (window,)
    lease = await throttle.acquire(NUMBER, timeout=0)
    assert await throttle.window_usage(NUMBER) == [WindowUsage(window, 1)]
    assert await throttle.release(lease) is True


async def test_group_caps_reserves_and_warm_up_at_the_edges_read_back(
    new_throttle: ThrottleFactory,
) -> None:
    settings = {
        "profiles": {"big": {"cap": MAX_CAP, "warmup": [MAX_AMOUNT, 1]}},
        "trunks": {"t": {"cap": MAX_CAP, "reserve": MAX_CAP - 1}},
        "numbers": {NUMBER: {"profile": "big", "trunk": "t"}},
        "pools": {"p": {"numbers": [NUMBER], "strategy": "sticky", "sticky_ttl": MAX_SECONDS}},
    }
    async with new_throttle(config=settings) as throttle:
        assert (await throttle.group_usage("trunk", "t")).limit == MAX_CAP
        await throttle.set_state(NUMBER, "warming")
        lease = await throttle.acquire(NUMBER, priority=MAX_PRIORITY, timeout=0)
        assert await throttle.window_usage(NUMBER) == [WindowUsage(Window(MAX_AMOUNT, DAY), 1)]
        assert await throttle.group_usage("trunk", "t") == Usage(1, MAX_CAP, 0)
        assert await throttle.release(lease) is True
        await throttle.set_group_cap("trunk", "t", MAX_CAP)
        assert (await throttle.group_usage("trunk", "t")).limit == MAX_CAP
        await throttle.add_to_pool("p", [NUMBER])
        picked = await throttle.acquire_from("p", callee=CALLEE, priority=1, timeout=0)
        assert picked.number == NUMBER
        assert await throttle.release(picked) is True


async def test_a_timeout_of_negative_zero_tries_once(throttle: Throttle) -> None:
    lease = await throttle.acquire(NUMBER, limit=1, timeout=-0.0)
    assert await throttle.release(lease) is True


# -- just past the edges: refused, nothing written ---------------------------------------------

PAST = MAX_SECONDS + MIN_SECONDS
CAPS = "an int from 1 to 100000"
SECONDS = "a number of seconds from 0.001 to 31622400"
TIMEOUTS = "None, 0 (try once), inf or a number of seconds up to 31622400"
AMOUNTS = "an int from 1 to 1000000000"

Call = Callable[[Throttle], Awaitable[object]]
REFUSED_CALLS: list[tuple[str, Call, str, str]] = [
    ("limit", lambda t: t.acquire(NUMBER, limit=MAX_CAP + 1), "limit", CAPS),
    ("limit-huge", lambda t: t.acquire(NUMBER, limit=10**15), "limit", CAPS),
    ("limit-zero", lambda t: t.acquire(NUMBER, limit=0), "limit", CAPS),
    ("limit-float", lambda t: t.acquire(NUMBER, limit=5.0), "limit", CAPS),  # type: ignore[arg-type]
    ("limit-bool", lambda t: t.acquire(NUMBER, limit=True), "limit", CAPS),
    ("usage-limit", lambda t: t.usage(NUMBER, limit=MAX_CAP + 1), "limit", CAPS),
    (
        "priority",
        lambda t: t.acquire(NUMBER, priority=MAX_PRIORITY + 1),
        "priority",
        "an int from 0 to 1000000",
    ),
    ("priority-bool", lambda t: t.acquire(NUMBER, priority=True), "priority", "an int from 0"),
    ("timeout", lambda t: t.acquire(NUMBER, timeout=PAST), "timeout", TIMEOUTS),
    ("timeout-nan", lambda t: t.acquire(NUMBER, timeout=math.nan), "timeout", TIMEOUTS),
    ("timeout-minus-inf", lambda t: t.acquire(NUMBER, timeout=-math.inf), "timeout", TIMEOUTS),
    ("timeout-negative", lambda t: t.acquire(NUMBER, timeout=-MIN_SECONDS), "timeout", TIMEOUTS),
    (
        "pool-priority",
        lambda t: t.acquire_from("p", priority=MAX_PRIORITY + 1),
        "priority",
        "an int from 0",
    ),
    ("pool-timeout", lambda t: t.acquire_from("p", timeout=PAST), "timeout", TIMEOUTS),
    ("cap", lambda t: t.set_cap(NUMBER, MAX_CAP + 1), "cap", CAPS),
    ("group-cap", lambda t: t.set_group_cap("trunk", "t", MAX_CAP + 1), "cap", CAPS),
    (
        "cool-down",
        lambda t: t.set_state(NUMBER, "cooling", duration=PAST),
        "duration",
        SECONDS,
    ),
    (
        "cool-down-short",
        lambda t: t.set_state(NUMBER, "cooling", duration=MIN_SECONDS / 2),
        "duration",
        SECONDS,
    ),
    (
        "cool-down-inf",
        lambda t: t.set_state(NUMBER, "cooling", duration=math.inf),
        "duration",
        SECONDS,
    ),
    (
        "rate-amount",
        lambda t: t.set_rates(NUMBER, f"{MAX_AMOUNT + 1}/day"),
        "rates (calls per window)",
        AMOUNTS,
    ),
    (
        "rate-period",
        lambda t: t.set_rates(NUMBER, "1/2 years"),
        "rates (window length)",
        SECONDS,
    ),
    (
        "group-rate-amount",
        lambda t: t.set_group_rates("trunk", "t", f"{MAX_AMOUNT + 1}/day"),
        "rates (calls per window)",
        AMOUNTS,
    ),
]


@pytest.mark.parametrize(
    ("call", "argument", "rule"),
    [pytest.param(c, a, r, id=i) for i, c, a, r in REFUSED_CALLS],
)
async def test_a_value_past_its_range_is_refused_and_nothing_is_written(
    new_throttle: ThrottleFactory, call: Call, argument: str, rule: str
) -> None:
    settings = {"trunks": {"t": {"cap": 5}}, "pools": {"p": {"numbers": [NUMBER]}}}
    async with new_throttle(config=settings) as throttle:
        before = await stored(throttle)  # the configured pool's keys, if any
        with pytest.raises(InvalidArgument) as caught:
            await call(throttle)
        assert caught.value.argument == argument
        assert rule in caught.value.rule
        assert rule in str(caught.value)
        assert await stored(throttle) == before
        assert not any(NUMBER in key or ":g:" in key for key in before)
        assert throttle.held == ()


REFUSED_SETTINGS: list[tuple[str, dict[str, Any], str, str]] = [
    ("default_limit", {"default_limit": MAX_CAP + 1}, "default_limit", CAPS),
    ("lease_ttl", {"lease_ttl": PAST}, "lease_ttl", SECONDS),
    ("lease_ttl-short", {"lease_ttl": MIN_SECONDS / 2}, "lease_ttl", SECONDS),
    ("lease_ttl-nan", {"lease_ttl": math.nan}, "lease_ttl", SECONDS),
    ("lease_ttl-bool", {"lease_ttl": True}, "lease_ttl", SECONDS),
    ("max_hold", {"max_hold": PAST}, "max_hold", SECONDS),
    ("renew_interval", {"renew_interval": MIN_SECONDS / 2}, "renew_interval", SECONDS),
    (
        "feedback-seconds",
        {"feedback": {"503": Reaction("lower_cap", seconds=PAST, cap=1)}},
        "feedback['503'].seconds",
        SECONDS,
    ),
    (
        "feedback-cap",
        {"feedback": {"503": Reaction("lower_cap", seconds=1, cap=MAX_CAP + 1)}},
        "feedback['503'].cap",
        CAPS,
    ),
    (
        "feedback-factor",
        {"feedback": {"503": Reaction("lower_cap", seconds=1, factor="half")}},  # type: ignore[arg-type]
        "feedback['503'].factor",
        "a number between 0 and 1",
    ),
]
REFUSED_CONFIG: list[tuple[str, dict[str, Any], str, str]] = [
    ("profile-cap", {"profiles": {"x": {"cap": MAX_CAP + 1}}}, "config.profiles.x.cap", CAPS),
    (
        "trunk-reserve",
        {"trunks": {"t": {"cap": 5, "reserve": MAX_CAP + 1}}},
        "config.trunks.t.reserve",
        "an int from 0 to 100000",
    ),
    (
        "warmup",
        {"profiles": {"x": {"warmup": [10, MAX_AMOUNT + 1]}}},
        "config.profiles.x.warmup[1]",
        AMOUNTS,
    ),
    (
        "warmup-bool",
        {"profiles": {"x": {"warmup": [True]}}},
        "config.profiles.x.warmup[0]",
        AMOUNTS,
    ),
    (
        "profile-rates",
        {"profiles": {"x": {"rates": f"{MAX_AMOUNT + 1}/hour"}}},
        "config.profiles.x.rates",
        AMOUNTS,
    ),
    (
        "sticky_ttl",
        {"pools": {"p": {"numbers": [NUMBER], "sticky_ttl": PAST}}},
        "config.pools.p.sticky_ttl",
        SECONDS,
    ),
    (
        "feedback-seconds",
        {"feedback": {"503": {"action": "cooldown", "seconds": PAST}}},
        "config.feedback.503.seconds",
        SECONDS,
    ),
]


@pytest.mark.parametrize(
    ("options", "argument", "rule"),
    [pytest.param(o, a, r, id=i) for i, o, a, r in REFUSED_SETTINGS],
)
def test_a_setting_past_its_range_is_refused(
    options: dict[str, Any], argument: str, rule: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Throttle.from_url("memory://", **options)
    assert caught.value.argument == argument
    assert rule in caught.value.rule


@pytest.mark.parametrize(
    ("settings", "argument", "rule"),
    [pytest.param(s, a, r, id=i) for i, s, a, r in REFUSED_CONFIG],
)
def test_a_configured_value_past_its_range_is_refused(
    settings: dict[str, Any], argument: str, rule: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Config.from_dict(settings)
    assert caught.value.argument == argument
    assert rule in caught.value.rule


@pytest.mark.parametrize("ttl", [1.1, 2.007, 12.345, 4321.001])
async def test_a_ttl_in_whole_milliseconds_reads_back_exactly(
    new_throttle: ThrottleFactory, ttl: float
) -> None:
    """Kept to the millisecond, a value already in whole milliseconds is kept as it is (not one
    millisecond more, as 2.007 * 1000 = 2007.0000000000002 would round up to)."""
    async with new_throttle(lease_ttl=ttl, max_hold=ttl * 2) as throttle:
        lease = await throttle.acquire(NUMBER, timeout=0)
        [holder] = await throttle.holders(NUMBER)
        assert holder.ttl == ttl
        assert await throttle.release(lease) is True


async def test_a_ttl_finer_than_a_millisecond_is_rounded_up_alike_on_every_backend(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(lease_ttl=2.0071) as throttle:
        assert throttle.lease_ttl == 2.008
        lease = await throttle.acquire(NUMBER, timeout=0)
        [holder] = await throttle.holders(NUMBER)
        assert holder.ttl == 2.008
        assert await throttle.release(lease) is True
