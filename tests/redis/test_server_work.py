"""The server's work per decision: the commands each function runs inside Redis, counted by the
server itself (INFO commandstats). A bound here is the count today: a change that makes a
decision run more commands shows up (benchmarks/server_work.py gives the time they take)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import pytest

from callthrottle import Throttle

from .test_redis_backend import command_counts

if TYPE_CHECKING:
    import redis

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"
CALLEE = "+8613800138000"
#: A number under every kind of limit (cap, two rate windows, a trunk and a tenant with caps
#: and windows, a callee window), generous enough never to refuse here.
EVERY_LIMIT: dict[str, Any] = {
    "numbers": {
        NUMBER: {"cap": 1000, "rates": "1000/minute;10000/day", "trunk": "t", "tenant": "a"}
    },
    "trunks": {"t": {"cap": 1000, "rates": "1000/minute"}},
    "tenants": {"a": {"cap": 1000, "rates": "1000/minute"}},
    "callee": {"rates": "1000/minute"},
}


def inner_commands(client: redis.Redis, before: dict[str, int]) -> dict[str, int]:
    """The commands run since ``before`` but the function calls themselves (and INFO)."""
    after = command_counts(client)
    delta = {name: calls - before.get(name, 0) for name, calls in after.items()}
    assert delta.get("fcall") == 1, delta
    return {name: calls for name, calls in delta.items() if calls and name not in ("fcall", "info")}


async def test_a_plain_acquire_and_release(throttle: Throttle, sync_client: redis.Redis) -> None:
    await throttle.release(await throttle.acquire(NUMBER, timeout=0))  # loaded, warm
    held = await throttle.acquire(NUMBER, timeout=0)  # the number holds a lease already
    before = command_counts(sync_client)
    lease = await throttle.acquire(NUMBER, timeout=0)
    assert sum(inner_commands(sync_client, before).values()) <= 11
    before = command_counts(sync_client)
    await throttle.release(lease)
    assert sum(inner_commands(sync_client, before).values()) <= 7
    await throttle.release(held)


async def test_every_limit(
    redis_url: str, prefix: str, sync_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="callthrottle")  # (no published policy: warned)
    async with Throttle.from_url(redis_url, key_prefix=prefix, config=EVERY_LIMIT) as throttle:
        await throttle.release(await throttle.acquire(NUMBER, timeout=0, callee=CALLEE))
        held = await throttle.acquire(NUMBER, timeout=0, callee=CALLEE)
        before = command_counts(sync_client)
        lease = await throttle.acquire(NUMBER, timeout=0, callee=CALLEE)
        ran = inner_commands(sync_client, before)
        # Nobody waits in a group's line: it is read once, and left alone.
        assert ran.get("zrem", 0) <= 1, ran
        assert sum(ran.values()) <= 45, ran  # (a group key extended by each lease: 2 of them)
        before = command_counts(sync_client)
        await throttle.release(lease)
        ran = inner_commands(sync_client, before)
        assert ran.get("zrange", 0) == 0, ran
        assert sum(ran.values()) <= 11, ran
        await throttle.release(held)


async def test_a_hand_off(redis_url: str, prefix: str, sync_client: redis.Redis) -> None:
    """A release that hands its slot to the one waiter (of another throttle)."""
    async with (
        Throttle.from_url(redis_url, key_prefix=prefix) as holder,
        Throttle.from_url(redis_url, key_prefix=prefix) as waiter,
    ):
        await holder.release(await holder.acquire(NUMBER, limit=1, timeout=0))
        held = await holder.acquire(NUMBER, limit=1, timeout=0)
        waiting = asyncio.ensure_future(waiter.acquire(NUMBER, limit=1, timeout=10))
        for _ in range(1000):  # until it waits in line
            if (await holder.usage(NUMBER, limit=1)).waiting:
                break
            await asyncio.sleep(0.005)
        before = command_counts(sync_client)
        await holder.release(held)
        lease = await waiting
        ran = inner_commands(sync_client, before)
        # The waiter's meta is read once; the line, gone with it, is not extended.
        assert ran.get("hget", 0) == 2, ran
        assert ran.get("pexpire", 0) == 2, ran
        assert sum(ran.values()) <= 22, ran
        await waiter.release(lease)
