"""A connection that the network closes as soon as it is made (a proxy or load balancer with no
server behind it): calls fail with BackendUnavailable instead of hanging, and work again once
connections hold."""

from __future__ import annotations

import anyio
import pytest

from callthrottle import BackendUnavailable, Throttle

from ._proxy import CuttingProxy

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"


async def test_calls_fail_while_connections_are_closed_at_once_then_recover(
    redis_url: str, prefix: str
) -> None:
    proxy = CuttingProxy.in_front_of(redis_url)
    async with proxy.running():
        url = proxy.url
        async with Throttle.from_url(url, key_prefix=prefix) as throttle:
            await throttle.release(await throttle.acquire(NUMBER, timeout=0))  # connected
            proxy.sever()
            for _ in range(3):
                with anyio.fail_after(2), pytest.raises(BackendUnavailable):
                    await throttle.usage(NUMBER)
            proxy.mend()
            with anyio.fail_after(2):
                assert (await throttle.usage(NUMBER)).in_use == 0
