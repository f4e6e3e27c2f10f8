"""Session records on Redis: the record a lease names is the one its keep-alives extend."""

from __future__ import annotations

import anyio
import pytest

from callthrottle import InvalidArgument, Throttle

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"
TTL = 0.4


async def test_a_key_prefix_with_a_brace_keeps_session_leases_alive_or_is_refused(
    redis_url: str, prefix: str
) -> None:
    """A key prefix holding '{' (e.g. to keep one application's keys apart) is either refused
    by name, or works: the keep-alive reaches the record the session's leases name. Today the
    leases name the record under the prefix cut at its first '{' (record_of in _common.lua),
    the keep-alive another, and the leases lapse while the session is kept alive."""
    braced = f"{prefix}{{app}}:"
    try:
        throttle = Throttle.from_url(
            redis_url, key_prefix=braced, session="kamailio@sbc-1", lease_ttl=TTL
        )
    except InvalidArgument as refused:
        assert refused.argument == "key_prefix"  # noqa: PT017 (either outcome is right)
        return
    async with throttle, Throttle.from_url(redis_url, key_prefix=braced) as observer:
        await throttle.acquire(NUMBER, timeout=0)
        await anyio.sleep(3 * TTL)  # the session throttle's heartbeat keeps the session alive
        assert (await observer.usage(NUMBER)).in_use == 1
