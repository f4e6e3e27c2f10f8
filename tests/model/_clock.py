"""One test clock read by a MemoryBackend and by a RedisBackend on a real server.

The memory backend takes its clocks as callables. On Redis, every function reads the time
through ``now_ms()`` in the library's shared part (``redis.call('TIME')``); the tests load the
same library with that one read replaced by a hash the test sets (``seconds``, ``micros``, as
TIME replies), under a name of its own (the library's name carries a digest of its source).
Production code is unchanged: the patched library is swapped in for the test's duration only.

Keys' expiries on the server still run on real time, so when the test clock advances, the
test makes the server's keys age as much (:func:`age_keys`): a key whose time is up is deleted,
the others keep their expiry less the time that passed.
"""

from __future__ import annotations

from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING

import callthrottle.backends.redis as redis_backend
from callthrottle.backends._lane import Library

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis.asyncio as aioredis

_TIME_READ = "redis.call('TIME')"

# 2026-01-05 09:30:00 UTC: a Monday morning, so runs cross local midnights in either direction.
START = 1_767_605_400.0


class TestClock:
    """Seconds (kept to whole milliseconds so both backends see the same instants); the same
    reading serves as the monotonic clock and as the wall clock."""

    __test__ = False  # not a test class

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now = round(self.now + seconds, 3)

    @property
    def ms(self) -> int:
        return round(self.now * 1000)


def clocked_library(clock_key: str) -> Library:
    """The backend's library, with its clock read from the hash ``clock_key``."""
    folder = resources.files(redis_backend.__package__).joinpath("lua")
    shared = folder.joinpath("_common.lua").read_text(encoding="utf-8")
    assert shared.count(_TIME_READ) == 1, "the library reads the clock in one place"
    patched = shared.replace(_TIME_READ, f"redis.call('HMGET', '{clock_key}', 's', 'us')")
    bodies = {
        name: folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        for name in redis_backend._SCRIPT_NAMES
    }
    return Library("callthrottle", patched, bodies)


@contextmanager
def use_library(library: Library) -> Iterator[None]:
    """Every RedisBackend runs ``library`` meanwhile."""
    original = redis_backend._LIBRARY
    redis_backend._LIBRARY = library
    try:
        yield
    finally:
        redis_backend._LIBRARY = original


async def set_server_clock(client: aioredis.Redis, clock_key: str, clock: TestClock) -> None:
    ms = clock.ms
    await client.hset(clock_key, mapping={"s": ms // 1000, "us": (ms % 1000) * 1000})


async def age_keys(client: aioredis.Redis, pattern: str, ms: int) -> None:
    """Make every key matching ``pattern`` older by ``ms``: deleted when its time is up."""
    keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
    if not keys:
        return
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.pttl(key)
    left = await pipe.execute()
    pipe = client.pipeline(transaction=False)
    for key, ttl in zip(keys, left, strict=True):
        if ttl < 0:
            continue  # no expiry (-1), or gone meanwhile (-2)
        if ttl <= ms:
            pipe.delete(key)
        else:
            pipe.pexpire(key, ttl - ms)
    await pipe.execute()
