"""Redis restarted under a running throttle, with and without persistence."""

from __future__ import annotations

import anyio
import pytest

from callthrottle import BackendUnavailable, Throttle

from .._servers import own_server

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"


async def test_a_restart_without_persistence_fails_calls_then_recovers_by_itself() -> None:
    """While the server is down, calls fail at once with BackendUnavailable; when it is back
    (empty), the same throttle works again without being reopened, and the lease the server
    forgot is reported lost, never silently treated as held."""
    with own_server() as (url, server):
        async with Throttle.from_url(url, lease_ttl=0.9) as throttle:
            held = await throttle.acquire(NUMBER, timeout=0)
            server.stop()
            started = anyio.current_time()
            with pytest.raises(BackendUnavailable):
                await throttle.acquire(NUMBER, token="while-down", timeout=0)
            assert anyio.current_time() - started < 2.0
            server.start()
            assert (await throttle.usage(NUMBER)).in_use == 0  # the server forgot the lease
            with anyio.fail_after(3):
                while not held.lost:
                    await anyio.sleep(0.05)
            assert held.lost_reason == "backend"
            again = await throttle.acquire(NUMBER, timeout=0)
            assert (await throttle.usage(NUMBER)).in_use == 1
            assert await throttle.release(again) is True


async def test_a_restart_with_persistence_keeps_the_leases() -> None:
    with own_server(persistent=True) as (url, server):
        async with Throttle.from_url(url, lease_ttl=5) as throttle:
            held = await throttle.acquire(NUMBER, timeout=0)
            server.stop()
            server.start()
            assert (await throttle.usage(NUMBER)).in_use == 1
            assert not held.lost
            assert await throttle.release(held) is True
            assert (await throttle.usage(NUMBER)).in_use == 0
