"""Trunk and tenant limits, taken with the number's in one decision."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import (
    AcquireTimeout,
    ConfigError,
    InvalidArgument,
    NumberState,
    NumberUnavailable,
    RateLimited,
    Throttle,
    Usage,
)

from .test_fifo import _DeafBackend

if TYPE_CHECKING:
    from ..conftest import BackendFactory, ThrottleFactory

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
        (
            {"trunks": {"t": {"reserve": -1}}},
            r"config\.trunks\.t\.reserve must be an int from 0 to 100000",
        ),
        (
            {"tenants": {"x": {"cap": 0}}},
            r"config\.tenants\.x\.cap must be an int from 1 to 100000",
        ),
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
    with pytest.raises(InvalidArgument, match="priority must be an int from 0 to 1000000"):
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


@pytest.mark.parametrize("kind", ["trunk", "tenant"])
async def test_a_slot_someone_waits_for_is_not_taken_by_a_later_caller(
    new_backend: BackendFactory, new_throttle: ThrottleFactory, kind: str
) -> None:
    """A caller waits for a full trunk (or tenant) on one number; a slot of the group frees.
    Until that caller has asked again (it never hears the news here, and with 60 s leases it
    would look again only 30 s later), neither a try-once call nor a caller that comes to wait
    later takes the slot on another number of the group."""
    group = "t400" if kind == "trunk" else "acme"
    cfg = {
        f"{kind}s": {group: {"cap": 1}},
        "numbers": {A: {kind: group}, B: {kind: group}},
    }
    deaf = _DeafBackend(new_backend())
    async with (
        new_throttle(config=cfg, lease_ttl=60) as holder,
        Throttle(deaf, config=cfg, lease_ttl=60, close_backend=True) as waiter_side,
    ):
        held = await holder.acquire(A, timeout=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(waiter_side.acquire, B, timeout=20))
            with anyio.fail_after(5):
                while (await holder.group_usage(kind, group)).waiting != 1:
                    await anyio.sleep(0.005)
            await holder.release(held)
            with pytest.raises(AcquireTimeout, match=f"{kind}:{group} is full"):
                await holder.acquire(A, timeout=0)
            with pytest.raises(AcquireTimeout, match=f"{kind}:{group} is full"):
                await holder.acquire(A, timeout=0.2)
            assert await holder.group_usage(kind, group) == Usage(in_use=0, limit=1, waiting=1)
            tg.cancel_scope.cancel()  # the waiter gives up: its place goes with it
        await holder.acquire(A, timeout=0)


async def test_release_owner_frees_a_dead_callers_place_in_a_groups_line(
    new_backend: BackendFactory, new_throttle: ThrottleFactory
) -> None:
    """A dead process waited first for a full trunk; once its owner is released, the slot that
    frees goes to the next caller in the trunk's line at once (with 60 s leases it would
    otherwise look again only 30 s later)."""
    cfg = config()
    cfg["trunks"]["t400"]["cap"] = 1
    deaf = _DeafBackend(new_backend())
    async with (
        new_throttle(config=cfg, lease_ttl=60) as holder,
        new_throttle(config=cfg, lease_ttl=60) as live,
        Throttle(deaf, config=cfg, lease_ttl=60, owner_id="dead", close_backend=True) as dead,
    ):
        held = await holder.acquire(A, timeout=0)
        async with anyio.create_task_group() as tg:
            for count, waiter in enumerate((dead, live), 1):
                tg.start_soon(partial(waiter.acquire, B, timeout=20))
                with anyio.fail_after(5):
                    while (await holder.group_usage("trunk", "t400")).waiting != count:
                        await anyio.sleep(0.005)
            assert await holder.release_owner("dead") == 1
            assert (await holder.group_usage("trunk", "t400")).waiting == 1
            released_at = anyio.current_time()
            await holder.release(held)
            with anyio.fail_after(5):
                while not live.held:
                    await anyio.sleep(0.005)
            assert anyio.current_time() - released_at < 2
            tg.cancel_scope.cancel()


async def test_callers_waiting_for_a_trunk_are_served_in_arrival_order(
    new_throttle: ThrottleFactory,
) -> None:
    """First come, first served across the trunk's numbers and across processes, also while
    the waiters keep asking again, each at its own pace (every 0.3 s with 0.6 s leases, every
    0.1 s with 0.2 s leases)."""
    cfg = config()
    cfg["trunks"]["t400"]["cap"] = 1
    order: list[str] = []
    async with (
        new_throttle(config=cfg, lease_ttl=60) as holder,
        new_throttle(config=cfg, lease_ttl=0.6) as first,
        new_throttle(config=cfg, lease_ttl=0.2) as second,
    ):
        held = await holder.acquire(A, timeout=0)

        async def wait(throttle: Throttle, number: str, name: str) -> None:
            lease = await throttle.acquire(number, timeout=10)
            order.append(name)
            await anyio.sleep(0.05)
            await throttle.release(lease)

        async with anyio.create_task_group() as tg:
            callers = [(first, A, "w1"), (second, B, "w2"), (first, B, "w3"), (second, A, "w4")]
            for count, caller in enumerate(callers, 1):
                tg.start_soon(wait, *caller)
                with anyio.fail_after(5):
                    while (await holder.group_usage("trunk", "t400")).waiting != count:
                        await anyio.sleep(0.005)
            await anyio.sleep(0.5)  # each has asked again meanwhile, in its own order
            await holder.release(held)
    assert order == ["w1", "w2", "w3", "w4"]


async def test_a_caller_whose_number_stops_admitting_calls_leaves_the_trunks_line(
    new_throttle: ThrottleFactory,
) -> None:
    """A caller waits first in a full trunk's line when its number is flagged: it is told at
    once (NumberUnavailable), and its place goes with it, so the next caller gets the slot
    that frees (with 60 s leases, nobody would look again for 30 s)."""
    cfg = config()
    cfg["trunks"]["t400"]["cap"] = 1
    refused: list[NumberUnavailable] = []
    async with (
        new_throttle(config=cfg, lease_ttl=60) as holder,
        new_throttle(config=cfg, lease_ttl=60) as waiters,
    ):
        held = await holder.acquire(A, timeout=0)

        async def caller(number: str) -> None:
            if number == A:
                await waiters.acquire(A, timeout=10)
                return
            with pytest.raises(NumberUnavailable) as caught:
                await waiters.acquire(B, timeout=10)
            refused.append(caught.value)

        async with anyio.create_task_group() as tg:
            for count, number in enumerate((B, A), 1):
                tg.start_soon(caller, number)
                with anyio.fail_after(5):
                    while (await holder.group_usage("trunk", "t400")).waiting != count:
                        await anyio.sleep(0.005)
            await holder.set_state(B, NumberState.FLAGGED, reason="carrier notice")
            with anyio.fail_after(5):
                while not refused:
                    await anyio.sleep(0.005)
            assert (await holder.group_usage("trunk", "t400")).waiting == 1
            await holder.release(held)
        assert [lease.number for lease in waiters.held] == [A]


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


async def test_a_waiting_campaign_call_does_not_keep_the_reserve_from_a_priority_call(
    new_throttle: ThrottleFactory,
) -> None:
    """Campaign calls fill the trunk but for its reserve, and one more waits: the reserved
    slot is not one it may take, so a priority call takes it at once (it does not queue behind
    a caller that cannot use it). The waiting call still has the next campaign slot that
    frees."""
    async with (
        new_throttle(config=config(reserve=1), lease_ttl=60) as holder,
        new_throttle(config=config(reserve=1), lease_ttl=60) as campaign,
    ):
        held = await holder.acquire(A, timeout=0)
        await holder.acquire(B, timeout=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(campaign.acquire, A, timeout=20))
            with anyio.fail_after(5):
                while (await holder.group_usage("trunk", "t400")).waiting != 1:
                    await anyio.sleep(0.005)
            reserved = await holder.acquire(B, timeout=0, priority=1)  # the reserve is free
            assert await holder.group_usage("trunk", "t400") == Usage(in_use=3, limit=3, waiting=1)
            await holder.release(reserved)
            await holder.release(held)
        assert [lease.number for lease in campaign.held] == [A]


async def test_a_waiting_priority_call_keeps_its_slot_from_a_campaign_call(
    new_backend: BackendFactory, new_throttle: ThrottleFactory
) -> None:
    """A priority call waits first for the full trunk (it never hears that slots free here);
    two slots free, one of them a campaign call's. The priority call may take either: a
    campaign call trying once does not take the one it waits for, a priority call takes the
    other."""
    deaf = _DeafBackend(new_backend())
    async with (
        new_throttle(config=config(reserve=1), lease_ttl=60) as holder,
        Throttle(deaf, config=config(reserve=1), lease_ttl=60, close_backend=True) as waiter,
    ):
        held = [await holder.acquire(A, timeout=0), await holder.acquire(B, timeout=0)]
        await holder.acquire(A, timeout=0, priority=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(waiter.acquire, B, timeout=20, priority=1))
            with anyio.fail_after(5):
                while (await holder.group_usage("trunk", "t400")).waiting != 1:
                    await anyio.sleep(0.005)
            for lease in held:
                await holder.release(lease)
            with pytest.raises(AcquireTimeout, match="trunk:t400 is full"):
                await holder.acquire(A, timeout=0)
            await holder.acquire(A, timeout=0, priority=1)
            assert await holder.group_usage("trunk", "t400") == Usage(in_use=2, limit=3, waiting=1)
            tg.cancel_scope.cancel()


async def test_a_priority_call_does_not_take_the_slot_a_campaign_call_waits_for(
    new_backend: BackendFactory, new_throttle: ThrottleFactory
) -> None:
    """A campaign call waits first for the full trunk (it never hears that slots free here);
    two slots free: the campaign call's last one and the reserve. A priority call taking one
    now would leave the campaign share full (every lease counts in it), so it does not: the
    slot is the waiting call's."""
    deaf = _DeafBackend(new_backend())
    async with (
        new_throttle(config=config(reserve=1), lease_ttl=60) as holder,
        Throttle(deaf, config=config(reserve=1), lease_ttl=60, close_backend=True) as waiter,
    ):
        held = await holder.acquire(A, timeout=0)
        await holder.acquire(B, timeout=0)
        reserved = await holder.acquire(A, timeout=0, priority=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(waiter.acquire, B, timeout=20))
            with anyio.fail_after(5):
                while (await holder.group_usage("trunk", "t400")).waiting != 1:
                    await anyio.sleep(0.005)
            await holder.release(held)
            await holder.release(reserved)
            with pytest.raises(AcquireTimeout, match="trunk:t400 is full"):
                await holder.acquire(A, timeout=0, priority=1)
            assert await holder.group_usage("trunk", "t400") == Usage(in_use=1, limit=3, waiting=1)
            tg.cancel_scope.cancel()


async def test_a_freed_reserved_slot_wakes_the_first_caller_that_may_take_it(
    new_throttle: ThrottleFactory,
) -> None:
    """A campaign call waits first, a priority call second; the reserved slot frees. Only the
    priority call may take it: it is told at once (with 60 s leases it would otherwise look
    again only 30 s later), and the campaign call keeps waiting, for the next campaign slot."""
    async with (
        new_throttle(config=config(reserve=1), lease_ttl=60) as holder,
        new_throttle(config=config(reserve=1), lease_ttl=60) as waiters,
    ):
        held = [await holder.acquire(A, timeout=0), await holder.acquire(B, timeout=0)]
        reserved = await holder.acquire(A, timeout=0, priority=1)
        async with anyio.create_task_group() as tg:
            for count, priority in enumerate((0, 1), 1):
                tg.start_soon(partial(waiters.acquire, B, timeout=20, priority=priority))
                with anyio.fail_after(5):
                    while (await holder.group_usage("trunk", "t400")).waiting != count:
                        await anyio.sleep(0.005)
            released_at = anyio.current_time()
            await holder.release(reserved)
            with anyio.fail_after(5):
                while not waiters.held:
                    await anyio.sleep(0.005)
            assert anyio.current_time() - released_at < 2
            assert await holder.group_usage("trunk", "t400") == Usage(in_use=3, limit=3, waiting=1)
            for lease in held:
                await holder.release(lease)
        assert sorted(lease.number for lease in waiters.held) == [B, B]
