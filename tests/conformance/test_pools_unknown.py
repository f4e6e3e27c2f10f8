"""A pool name that is neither configured nor has numbers in the backend (a typo) is an error at
once, whatever the timeout; a pool made at run time (``add_to_pool``) works as before."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import InvalidArgument, Lease, PoolExhausted, Throttle

if TYPE_CHECKING:
    from callthrottle.backends import Backend

    from ..conftest import BackendFactory, ThrottleFactory

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


class _CountingMembers:
    """A backend that counts the times it is asked for a pool's numbers."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner
        self.asked = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def pool_members(self, pool: str) -> list[str]:
        self.asked += 1
        return await self._inner.pool_members(pool)


async def test_a_pool_made_at_run_time_is_asked_about_once(new_backend: BackendFactory) -> None:
    """A full pool made at run time: its first refused pick asks the backend whether it has
    numbers; later refused picks of the same throttle do not ask again (a dialer polling a
    full pool does not pay a second round trip per try)."""
    backend = _CountingMembers(new_backend())
    async with Throttle(backend, config=CONFIG, default_limit=1, close_backend=True) as throttle:
        await throttle.add_to_pool("late", NUMBERS)
        leases = [await throttle.acquire_from("late", timeout=0) for _ in NUMBERS]
        for _ in range(3):
            with pytest.raises(PoolExhausted):
                await throttle.acquire_from("late", timeout=0)
        assert backend.asked == 1
        for lease in leases:
            assert await throttle.release(lease)
