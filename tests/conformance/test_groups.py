"""Trunk and tenant limits, taken with the number's in one decision."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import AcquireTimeout, ConfigError, InvalidArgument, RateLimited, Throttle, Usage

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

A, B, C = "+8657188880001", "+8657188880002", "+8657188880003"


def config(**trunk: Any) -> dict[str, Any]:
    return {
        "trunks": {"t400": {"cap": 3, **trunk}},
        "tenants": {"acme": {"rates": "4/minute"}},
        "numbers": {A: {"trunk": "t400"}, B: {"trunk": "t400"}, C: {"tenant": "acme"}},
    }


async def test_a_trunk_caps_all_its_numbers_together(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(config=config()) as first, new_throttle(config=config()) as second:
        await first.acquire(A, timeout=0)
        await second.acquire(B, timeout=0)
        held = await first.acquire(B, timeout=0)
        for number in (A, B):
            with pytest.raises(AcquireTimeout, match="trunk:t400 is full") as caught:
                await second.acquire(number, timeout=0)
            assert caught.value.refused_by == "trunk:t400"
        assert await first.group_usage("trunk", "t400") == Usage(in_use=3, limit=3, waiting=0)
        assert (await first.usage(B)).in_use == 2
        await first.release(held)
        await second.acquire(A, timeout=0)


async def test_a_reserve_is_kept_for_priority_calls(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(config=config(reserve=1)) as throttle:
        await throttle.acquire(A, timeout=0)
        await throttle.acquire(B, timeout=0)
        with pytest.raises(AcquireTimeout, match="trunk:t400 is full"):
            await throttle.acquire(A, timeout=0)  # a campaign call sees 3 - 1 slots
        await throttle.acquire(A, timeout=0, priority=1)  # a callback may use the reserve
        with pytest.raises(AcquireTimeout, match="trunk:t400 is full"):
            await throttle.acquire(B, timeout=0, priority=1)


async def test_a_freed_trunk_slot_wakes_a_waiter_on_another_number(
    new_throttle: ThrottleFactory,
) -> None:
    """With 60 s leases only the group's notification can wake the waiter this fast."""
    async with (
        new_throttle(config=config(), lease_ttl=60) as first,
        new_throttle(config=config(), lease_ttl=60) as second,
    ):
        held = [await first.acquire(A, timeout=0) for _ in range(3)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(second.acquire, B, timeout=10))
            with anyio.fail_after(5):
                while (await first.group_usage("trunk", "t400")).waiting != 1:
                    await anyio.sleep(0.005)
            released_at = anyio.current_time()
            await first.release(held[0])
        assert anyio.current_time() - released_at < 2
        assert [lease.number for lease in second.held] == [B]
        assert await first.group_usage("trunk", "t400") == Usage(in_use=3, limit=3, waiting=0)


async def test_a_waiter_for_a_full_trunk_times_out_naming_it(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(config=config()) as throttle:
        for _ in range(3):
            await throttle.acquire(A, timeout=0)
        with pytest.raises(AcquireTimeout, match=r"within 0\.3 s: trunk:t400 is full"):
            await throttle.acquire(B, timeout=0.3)
        assert (await throttle.group_usage("trunk", "t400")).waiting == 0


async def test_tenant_windows_count_every_number(new_throttle: ThrottleFactory) -> None:
    cfg = config()
    cfg["numbers"][A]["tenant"] = "acme"
    cfg["numbers"][B]["tenant"] = "acme"
    async with new_throttle(config=cfg) as throttle:
        for number in (A, B, C, C):
            await throttle.release(await throttle.acquire(number, timeout=0))
        with pytest.raises(RateLimited, match="4 per 60 s of tenant:acme"):
            await throttle.acquire(A, timeout=0)


async def test_a_refusal_by_the_trunk_counts_nowhere(new_throttle: ThrottleFactory) -> None:
    cfg = config()
    cfg["numbers"][B]["rates"] = "1/minute"
    async with new_throttle(config=cfg) as throttle:
        held = [await throttle.acquire(A, timeout=0) for _ in range(3)]
        with pytest.raises(AcquireTimeout, match="trunk:t400 is full"):
            await throttle.acquire(B, timeout=0)
        await throttle.release(held[0])
        await throttle.acquire(B, timeout=0)  # B's 1/minute was not used up by the refusal
        with pytest.raises(RateLimited):
            await throttle.acquire(B, timeout=0)


async def test_release_owner_frees_trunk_slots(new_throttle: ThrottleFactory) -> None:
    async with (
        new_throttle(config=config(), owner_id="dead") as dead,
        new_throttle(config=config()) as survivor,
    ):
        for _ in range(3):
            await dead.acquire(A, timeout=0)
        assert await survivor.release_owner("dead") == 3
        assert (await survivor.group_usage("trunk", "t400")).in_use == 0
        await survivor.acquire(B, timeout=0)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            {"numbers": {A: {"trunk": "nope"}}},
            r"config\.numbers\.'\+8657188880001'\.trunk must be a trunk defined under \[trunks\]",
        ),
        ({"trunks": {"t": {"cap": 2, "reserve": 2}}}, r"config\.trunks\.t\.reserve must be less"),
        ({"trunks": {"t": {"reserve": -1}}}, r"config\.trunks\.t\.reserve must be an int >= 0"),
        ({"tenants": {"x": {"cap": 0}}}, r"config\.tenants\.x\.cap must be an int >= 1"),
        (
            {
                "trunks": {"t": {"cap": 2}},
                "numbers": {A: {"trunk": "t", "tenant": "x"}, B: {"trunk": "t", "tenant": "y"}},
            },
            r"config\.trunks\.t must be used by numbers of one tenant only",
        ),
    ],
)
def test_bad_group_configuration(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Throttle.from_url("memory://", config=cfg)


async def test_unknown_group_and_bad_priority(throttle: Throttle) -> None:
    with pytest.raises(InvalidArgument, match="group must be a configured trunk or tenant"):
        await throttle.group_usage("trunk", "nope")
    with pytest.raises(InvalidArgument, match="priority must be an int >= 0"):
        await throttle.acquire(A, priority=-1)


async def test_group_caps_and_windows_changed_at_run_time(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(config=config()) as operator, new_throttle(config=config()) as dialer:
        held = [await dialer.acquire(A, timeout=0) for _ in range(3)]
        await operator.set_group_cap("trunk", "t400", 2)  # below what is held
        assert await dialer.group_usage("trunk", "t400") == Usage(in_use=3, limit=2, waiting=0)
        await dialer.release(held[0])
        with pytest.raises(AcquireTimeout, match="trunk:t400 is full"):
            await dialer.acquire(B, timeout=0)  # 2 held, cap 2
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(dialer.acquire, B, timeout=10))
            with anyio.fail_after(5):
                while (await operator.group_usage("trunk", "t400")).waiting != 1:
                    await anyio.sleep(0.005)
            await operator.set_group_cap("trunk", "t400", 5)  # raised: the waiter gets in
        assert (await operator.group_usage("trunk", "t400")).in_use == 3
        await operator.set_group_rates("tenant", "acme", "1/minute")
        await dialer.acquire(C, timeout=0)
        with pytest.raises(RateLimited, match="1 per 60 s of tenant:acme"):
            await dialer.acquire(C, timeout=0)
        await operator.set_group_cap("trunk", "t400", None)
        assert (await operator.group_usage("trunk", "t400")).limit == 3


async def test_a_tenants_daily_cap_resets_at_local_midnight(new_throttle: ThrottleFactory) -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    cfg = config()
    cfg["timezone"] = "Asia/Shanghai"
    cfg["tenants"]["acme"] = {"rates": "1/day", "daily_reset": "midnight"}
    async with new_throttle(config=cfg) as throttle:
        await throttle.acquire(C, timeout=0)
        with pytest.raises(
            RateLimited, match=r"1 per day \(from local midnight\) of tenant:acme"
        ) as caught:
            await throttle.acquire(C, timeout=0)
    now = dt.datetime.now(ZoneInfo("Asia/Shanghai"))
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert caught.value.retry_after is not None
    assert abs(caught.value.retry_after - (midnight - now).total_seconds()) < 2


async def test_a_cap_set_down_to_its_reserve_refuses_campaign_calls(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(config=config(reserve=1)) as throttle:
        await throttle.set_group_cap("trunk", "t400", 1)  # all of it is now the reserve
        with pytest.raises(AcquireTimeout, match="trunk:t400 is full") as caught:
            await throttle.acquire(A, timeout=0)  # nobody holds a slot: no time to retry at
        assert caught.value.refused_by == "trunk:t400"
        lease = await throttle.acquire(A, timeout=0, priority=1)
        await throttle.release(lease)


@pytest.mark.direct_only("drives the throttle's backend directly, on the test's event loop")
async def test_abandoning_anothers_token_leaves_its_lease_in_the_trunk(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(config=config()) as throttle:
        lease = await throttle.acquire(A, timeout=0)
        await throttle.backend.abandon(A, lease.token, "someone-else")  # not the owner: no-op
        assert (await throttle.usage(A)).in_use == 1
        assert (await throttle.group_usage("trunk", "t400")).in_use == 1
        assert await throttle.release(lease) is True
        assert (await throttle.group_usage("trunk", "t400")).in_use == 0
