"""A pool name that is neither configured nor has numbers in the backend (a typo) is an error at
once, whatever the timeout; a pool made at run time (``add_to_pool``) works as before."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import InvalidArgument, Lease, PoolExhausted

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

NUMBERS = [f"+86571888{i:05d}" for i in range(2)]
#: A shared tenant: on Redis Cluster, numbers added at run time need one (see the README).
CONFIG: dict[str, Any] = {"default_tenant": "acme", "pools": {"sales": {"numbers": NUMBERS}}}


@pytest.mark.parametrize("timeout", [None, 2.0, 0])
async def test_an_unknown_pool_is_refused_at_once_naming_it(
    new_throttle: ThrottleFactory, timeout: float | None
) -> None:
    async with new_throttle(config=CONFIG) as throttle:
        with anyio.fail_after(1), pytest.raises(InvalidArgument) as caught:
            await throttle.acquire_from("slaes", token="call-1", timeout=timeout)
        assert caught.value.argument == "pool"
        assert caught.value.value == "slaes"
        assert "a configured pool (sales) or one with numbers in the backend, got 'slaes'" in str(
            caught.value
        )
        with anyio.fail_after(1), pytest.raises(InvalidArgument):
            async with throttle.slot_from("slaes", timeout=timeout):
                pass
        # Nothing written, and the caller is in no line: the same token may ask again, and a
        # pool of that name made now serves a try-once call at once.
        assert await throttle.pool_members("slaes") == []
        assert await throttle.add_to_pool("slaes", NUMBERS[:1]) == 1
        lease = await throttle.acquire_from("slaes", token="call-1", timeout=0)
        assert lease.number == NUMBERS[0]
        assert await throttle.release(lease)


async def test_a_pool_made_at_run_time_waits_and_is_exhausted_as_before(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(config=CONFIG, default_limit=1) as throttle:
        await throttle.add_to_pool("late", NUMBERS)
        leases = [await throttle.acquire_from("late", timeout=0) for _ in NUMBERS]
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("late", timeout=0)
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("late", timeout=0.2)
        got: list[Lease] = []
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                got.append(await throttle.acquire_from("late", timeout=5))

            tg.start_soon(wait)
            await anyio.sleep(0.1)
            assert await throttle.release(leases[0])
        assert got[0].number == NUMBERS[0]
        for lease in (got[0], leases[1]):
            assert await throttle.release(lease)


async def test_a_configured_pool_with_no_number_is_exhausted_not_unknown(
    new_throttle: ThrottleFactory,
) -> None:
    config = {**CONFIG, "pools": {**CONFIG["pools"], "empty": {}}}  # filled at run time, later
    async with new_throttle(config=config) as throttle:
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("empty", timeout=0.1)
