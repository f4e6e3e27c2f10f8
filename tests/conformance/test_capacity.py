"""Never more than ``limit`` live leases on a number, however many ask at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from callthrottle import AcquireTimeout, Lease, LeaseConflict, Throttle, Usage

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

NUMBER = "+8657188880001"


async def test_grants_up_to_the_limit_then_refuses(throttle: Throttle) -> None:
    leases = [await throttle.acquire(NUMBER, timeout=0, limit=3) for _ in range(3)]
    assert len({lease.token for lease in leases}) == 3
    with pytest.raises(AcquireTimeout, match="no free slot on number '\\+8657188880001'"):
        await throttle.acquire(NUMBER, timeout=0, limit=3)
    assert await throttle.usage(NUMBER, limit=3) == Usage(in_use=3, limit=3, waiting=0)
    await throttle.release(leases[0])
    assert isinstance(await throttle.acquire(NUMBER, timeout=0, limit=3), Lease)


async def test_default_limit_is_20(throttle: Throttle) -> None:
    assert throttle.default_limit == 20
    for _ in range(20):
        await throttle.acquire(NUMBER, timeout=0)
    with pytest.raises(AcquireTimeout):
        await throttle.acquire(NUMBER, timeout=0)
    assert (await throttle.usage(NUMBER)).in_use == 20


async def test_numbers_are_independent(throttle: Throttle) -> None:
    await throttle.acquire(NUMBER, timeout=0, limit=1)
    other = await throttle.acquire("+8657188880002", timeout=0, limit=1)
    assert other.number == "+8657188880002"
    assert (await throttle.usage("+8657188880002", limit=1)).free == 0


@pytest.mark.parametrize("limit", [1, 3])
async def test_never_more_holders_than_the_limit(new_throttle: ThrottleFactory, limit: int) -> None:
    """Two throttles (standing in for two processes), 40 callers each, short holds."""
    holding = 0
    peak = 0
    completed = 0

    async def caller(throttle: Throttle) -> None:
        nonlocal holding, peak, completed
        async with throttle.slot(NUMBER, limit=limit, timeout=30):
            holding += 1
            peak = max(peak, holding)
            await anyio.sleep(0.002)
            holding -= 1
        completed += 1

    async with new_throttle() as first, new_throttle() as second, anyio.create_task_group() as tg:
        for index in range(80):
            tg.start_soon(caller, first if index % 2 else second)
    assert completed == 80
    assert peak == limit
    async with new_throttle() as observer:
        assert await observer.usage(NUMBER, limit=limit) == Usage(0, limit, 0)


async def test_lowered_limit_admits_nobody_until_usage_falls_under_it(throttle: Throttle) -> None:
    held = [await throttle.acquire(NUMBER, timeout=0, limit=5) for _ in range(4)]
    with pytest.raises(AcquireTimeout):
        await throttle.acquire(NUMBER, timeout=0, limit=3)
    usage = await throttle.usage(NUMBER, limit=3)
    assert (usage.in_use, usage.free) == (4, 0)
    await throttle.release(held[0])
    await throttle.release(held[1])
    await throttle.acquire(NUMBER, timeout=0, limit=3)


async def test_a_token_cannot_hold_two_slots_on_one_number(throttle: Throttle) -> None:
    await throttle.acquire(NUMBER, token="call-1", timeout=0)
    with pytest.raises(LeaseConflict, match="call-1"):
        await throttle.acquire(NUMBER, token="call-1", timeout=0)
    assert (await throttle.usage(NUMBER)).in_use == 1


async def test_two_owners_cannot_share_a_token(new_throttle: ThrottleFactory) -> None:
    """Repeated acquires with one token must not collapse into one counted slot."""
    async with new_throttle() as first, new_throttle() as second:
        await first.acquire(NUMBER, token="call-1", timeout=0, limit=2)
        with pytest.raises(LeaseConflict, match="another owner"):
            await second.acquire(NUMBER, token="call-1", timeout=0, limit=2)
        with pytest.raises(LeaseConflict, match="another owner"):
            await second.acquire(NUMBER, token="call-1", timeout=1, limit=2)
        assert await first.usage(NUMBER, limit=2) == Usage(in_use=1, limit=2, waiting=0)
        assert second.held == ()


async def test_spellings_of_one_number_share_its_cap(new_throttle: ThrottleFactory) -> None:
    """Numbers are normalised to E.164 (national numbers read in the default region)."""
    async with new_throttle(default_region="CN") as throttle:
        first = await throttle.acquire("+86 571 8888 0001", limit=3, timeout=0)
        second = await throttle.acquire("057188880001", limit=3, timeout=0)
        third = await throttle.acquire("+8657188880001", limit=3, timeout=0)
        assert {first.number, second.number, third.number} == {NUMBER}
        with pytest.raises(AcquireTimeout):
            await throttle.acquire("0571-8888-0001", limit=3, timeout=0)
        assert (await throttle.usage("057188880001", limit=3)).in_use == 3
        assert await throttle.release(Lease("0571 88880001", second.token)) is True
