"""The fence reads INFO from inside the library: an ACL user that may not run INFO still gets
its calls through (a library new to the server then fences, as after a restart)."""

from __future__ import annotations

import anyio
import pytest

import redis
from callthrottle import AcquireTimeout, Throttle

from .._servers import own_server

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"


async def test_a_user_without_info_is_served_and_fenced_only_on_a_fresh_library() -> None:
    with own_server() as (url, _):
        admin = redis.Redis.from_url(url)
        admin.acl_setuser(
            "dialer", enabled=True, passwords=["+secret"], commands=["+@all", "-info"],
            keys=["*"], channels=["*"],
        )  # fmt: skip
        limited = url.replace("redis://", "redis://dialer:secret@")
        with pytest.raises(redis.ResponseError):
            redis.Redis.from_url(limited).info()
        async with Throttle.from_url(limited, lease_ttl=1) as throttle:
            # The test server's library was loaded and its fence lifted by an admin: served.
            await throttle.release(await throttle.acquire(NUMBER, timeout=0))
            await anyio.sleep(1.2)  # past the library's recheck of the server's identity
            await throttle.release(await throttle.acquire(NUMBER, timeout=0))
            admin.function_flush()  # a fresh library that cannot read the server's uptime
            with pytest.raises(AcquireTimeout) as fenced:
                await throttle.acquire(NUMBER, timeout=0)
            assert fenced.value.refused_by == "fence"
            await throttle.release(await throttle.acquire(NUMBER, timeout=3))
        admin.close()
