"""Checks the public API's type annotations with mypy. It is NOT meant to be executed."""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_type

from callthrottle import Lease, Throttle, Usage

if TYPE_CHECKING:
    from callthrottle.backends import Backend, MemoryBackend, RedisBackend


async def uses_the_api(url: str) -> None:
    throttle = Throttle.from_url(url, default_limit=20, lease_ttl=30.0)
    async with throttle as opened:
        assert_type(opened, Throttle)
        async with opened.slot("+8657188880001", timeout=5.0, limit=3) as lease:
            assert_type(lease, Lease)
        lease = await opened.acquire("+8657188880001", token="call-42", timeout=0)
        assert_type(await opened.release(lease), bool)
        assert_type(await opened.usage("+8657188880001"), Usage)
        assert_type(await opened.release_owner(opened.owner_id), int)
        assert_type(lease.lost, bool)
        assert_type(lease.lost_reason, str | None)


def backends_fulfil_the_protocol(memory: MemoryBackend, redis_backend: RedisBackend) -> None:
    first: Backend = memory
    second: Backend = redis_backend
    Throttle(first)
    Throttle(second)
