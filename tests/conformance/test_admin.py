"""Operator queries and admin actions: the numbers a backend knows, a number's holders, and a
reset that frees a crashed switch's slots without stranding anyone waiting."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from callthrottle import AcquireTimeout, InvalidArgument, Lease, Throttle, Usage

from .test_fifo import NUMBER

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

OTHER = "+8657188880002"
POLICY_ONLY = "+8657188880003"


async def test_known_numbers_lists_leases_waiters_and_policies(throttle: Throttle) -> None:
    assert await throttle.known_numbers() == []
    await throttle.acquire(NUMBER, timeout=0)
    await throttle.acquire(OTHER, timeout=0)
    await throttle.set_state(POLICY_ONLY, "disabled")
    assert await throttle.known_numbers() == sorted([NUMBER, OTHER, POLICY_ONLY])


async def test_a_number_is_forgotten_once_idle(throttle: Throttle) -> None:
    lease = await throttle.acquire(NUMBER, timeout=0)
    await throttle.release(lease)
    assert await throttle.known_numbers() == []


async def test_holders_name_token_owner_and_expiry(new_throttle: ThrottleFactory) -> None:
    async with (
        new_throttle(owner_id="switch-a", lease_ttl=30.0) as a,
        new_throttle(owner_id="switch-b", lease_ttl=20.0, max_hold=600.0) as b,
    ):
        assert await a.holders(NUMBER) == []
        await a.acquire(NUMBER, token="call-1", timeout=0)
        await b.acquire(NUMBER, token="call-2", timeout=0)
        await a.acquire(OTHER, token="call-3", timeout=0)

        holders = await b.holders(NUMBER)
        assert [(h.number, h.token, h.owner) for h in holders] == [
            (NUMBER, "call-2", "switch-b"),  # the earliest expiry first
            (NUMBER, "call-1", "switch-a"),
        ]
        second, first = holders
        assert first.ttl == pytest.approx(30.0)
        assert 25.0 < first.expires_in <= 30.0
        assert first.hold_left is None
        assert 0 <= first.renewed_ago < 5.0
        assert 0 <= first.age < 5.0
        await anyio.sleep(0.3)
        [*_, later] = await b.holders(NUMBER)
        assert later.token == "call-1"
        assert later.age >= first.age + 0.25  # the time the call has held the slot
        assert second.ttl == pytest.approx(20.0)
        assert second.hold_left is not None
        assert 590.0 < second.hold_left <= 600.0


async def test_holders_normalises_and_validates_the_number(throttle: Throttle) -> None:
    await throttle.acquire(NUMBER, token="call-1", timeout=0)
    assert [h.token for h in await throttle.holders("+86 571 8888 0001")] == ["call-1"]
    with pytest.raises(InvalidArgument, match="number"):
        await throttle.holders("not-a-number")


async def test_reset_frees_every_slot_and_tells_the_holders(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle() as switch, new_throttle() as operator:
        leases = [await switch.acquire(NUMBER, limit=2, timeout=0) for _ in range(2)]
        other = await switch.acquire(OTHER, timeout=0)
        assert await operator.reset(NUMBER) == (2, 0)

        assert await operator.usage(NUMBER, limit=2) == Usage(in_use=0, limit=2, waiting=0)
        assert await operator.holders(NUMBER) == []
        assert (await operator.usage(OTHER)).in_use == 1  # other numbers untouched
        with anyio.fail_after(5):
            while not all(lease.released for lease in leases):
                await anyio.sleep(0.01)
        assert not other.released
        assert not any(lease.lost for lease in leases)
        assert switch.held == (other,)
        # The slots are free for new calls at once, and a late release is harmless.
        await switch.acquire(NUMBER, limit=2, timeout=0)
        assert await switch.release(leases[0]) is False


async def test_reset_wakes_waiters_instead_of_stranding_them(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle() as switch, new_throttle() as dialer, new_throttle() as operator:
        await switch.acquire(NUMBER, limit=1, timeout=0)
        granted: list[Lease] = []

        async def wait_for_slot() -> None:
            granted.append(await dialer.acquire(NUMBER, limit=1, timeout=30))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_slot)
            tg.start_soon(wait_for_slot)
            with anyio.fail_after(5):
                while (await operator.usage(NUMBER, limit=1)).waiting < 2:
                    await anyio.sleep(0.01)
            assert await operator.reset(NUMBER) == (1, 2)
            with anyio.fail_after(5):
                while not granted:
                    await anyio.sleep(0.01)
            # One waiter got the freed slot; the other waits in line again, served next.
            assert (await operator.usage(NUMBER, limit=1)).in_use == 1
            await dialer.release(granted[0])
        assert len(granted) == 2
        assert [h.token for h in await operator.holders(NUMBER)] == [granted[1].token]


async def test_reset_keeps_the_numbers_policy(throttle: Throttle) -> None:
    await throttle.set_cap(NUMBER, 1)
    await throttle.acquire(NUMBER, timeout=0)
    assert await throttle.reset(NUMBER) == (1, 0)
    assert (await throttle.status(NUMBER)).cap == 1
    await throttle.acquire(NUMBER, timeout=0)
    with pytest.raises(AcquireTimeout):
        await throttle.acquire(NUMBER, timeout=0)


async def test_reset_of_an_idle_number_does_nothing(throttle: Throttle) -> None:
    assert await throttle.reset(NUMBER) == (0, 0)
    assert await throttle.known_numbers() == []
