"""What the fence's tests share (test_fence*.py): servers, callers and waits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from callthrottle import AcquireTimeout, Throttle
from callthrottle.backends import RedisBackend

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import redis

    from .._servers import Server

NUMBER = "+8657188880001"
TTL = 2.0  # seconds: every test here waits for a fence of about this long
CAP = 2
NUMBERS = [f"+86571888{i:05d}" for i in range(30)]  # spread over a Cluster's masters


def redis_backend(throttle: Throttle) -> RedisBackend:
    backend = throttle.backend
    assert isinstance(backend, RedisBackend)
    return backend


def restart(server: Server) -> None:
    server.stop()
    server.start()


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 10.0) -> None:
    """Wait until ``check()`` (a coroutine's result, or a plain value) is true."""
    with anyio.fail_after(within):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            await anyio.sleep(0.02)


async def in_use_is(throttle: Throttle, count: int, number: str = NUMBER) -> bool:
    return (await throttle.usage(number, limit=CAP)).in_use == count


async def holders_are(throttle: Throttle, number: str, tokens: set[str]) -> bool:
    return {holder.token for holder in await throttle.holders(number)} == tokens


async def waiting_is(throttle: Throttle, count: int, number: str = NUMBER) -> bool:
    return (await throttle.usage(number, limit=1)).waiting == count


async def refused_at_once(throttle: Throttle, number: str = NUMBER, limit: int = CAP) -> bool:
    """Whether a try-once acquire is refused (a granted one is given back)."""
    try:
        lease = await throttle.acquire(number, limit=limit, timeout=0)
    except AcquireTimeout:
        return True
    assert await throttle.release(lease) is True
    return False


def delete_the_library(client: redis.Redis) -> None:
    """As a new release's library, loaded on a running server: the data stays, the library's
    state starts afresh (the next call loads the library again)."""
    names = [
        dict(zip(entry[::2], entry[1::2], strict=True))[b"library_name"]
        for entry in client.function_list()
    ]
    assert names
    for name in names:
        client.function_delete(name)
