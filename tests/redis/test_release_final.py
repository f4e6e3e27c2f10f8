"""A release made while the lease's holder was cut off from Redis is final: when the holder
comes back (its connection replaced, the lease gone), it does not count the lease again."""

from __future__ import annotations

import anyio
import pytest
from redis.asyncio import Redis

from callthrottle import Lease, Throttle

from .._servers import fence_mark
from ._proxy import CuttingProxy

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"


@pytest.mark.parametrize("cut", [0.6, 2.5], ids=["cut-shorter-than-ttl", "cut-longer-than-ttl"])
async def test_a_lease_released_during_a_cut_stays_released(
    redis_url: str, prefix: str, cut: float
) -> None:
    proxy = CuttingProxy.in_front_of(redis_url)
    async with proxy.running():
        url = proxy.url
        async with (
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=1.0) as holder,
            Throttle.from_url(redis_url, key_prefix=prefix, lease_ttl=1.0) as other,
        ):
            held = await holder.acquire(NUMBER, limit=1, timeout=0)
            proxy.sever()
            # The call ends; its hang-up is handled by another process.
            assert await other.release(Lease(NUMBER, held.token)) is True
            await anyio.sleep(cut)
            proxy.mend()
            with anyio.fail_after(5):
                while held in holder.held:
                    await anyio.sleep(0.05)
            assert held.released
            assert not held.lost
            for _ in range(10):  # the holder's heartbeats go on: the lease stays gone
                assert (await other.usage(NUMBER, limit=1)).in_use == 0
                await anyio.sleep(0.2)
            lease = await other.acquire(NUMBER, limit=1, timeout=0)
            assert await other.release(lease) is True


async def test_the_record_of_a_release_expires(redis_url: str, prefix: str) -> None:
    """The record kept of a release is a key of the number (its hash tag) that expires: an
    idle number leaves no key without an expiry."""
    async with Throttle.from_url(redis_url, key_prefix=prefix, lease_ttl=10.0) as throttle:
        lease = await throttle.acquire(NUMBER, timeout=0)
        other = Lease(NUMBER, lease.token)  # released as another process would
        backend = throttle.backend
        await backend.release(NUMBER, other.token, "someone-else")
        client = Redis.from_url(redis_url, decode_responses=True)
        try:
            keys = sorted(await client.keys(f"{prefix}*"))
            keys.remove(fence_mark(prefix))  # the prefix's marker never expires
            assert keys == [f"{prefix}{{{NUMBER}}}:n:{NUMBER}:e"]
            assert 39_000 < await client.pttl(keys[0]) <= 41_000  # four of the lease's TTLs
        finally:
            await client.aclose()
        assert await throttle.known_numbers() == []
