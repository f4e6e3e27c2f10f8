"""The script lane: many coroutines' scripts over one pipelined connection, against a real server."""

from __future__ import annotations

import random
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.lowlevel
import pytest
import redis.asyncio as aioredis

import redis
from callthrottle import BackendUnavailable, Throttle
from callthrottle.backends._lane import Library, ScriptLane

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"
ECHO = Library(
    "lanetest",
    "local ARGV\nlocal function bind(keys, args) ARGV = args end",
    {"echo": "return ARGV[1]"},
)


def with_credentials(url: str, user: str, password: str, db: int) -> str:
    parts = urlsplit(url)
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, f"/{db}", "", ""))


async def test_replies_reach_their_callers_when_many_share_the_connection(
    lane: ScriptLane,
) -> None:
    """500 concurrent calls, a fifth of them cancelled in flight: every other caller gets its
    own reply, and the connection stays usable."""
    replies: dict[int, bytes] = {}

    async def call(i: int) -> None:
        replies[i] = await lane.run(ECHO, "echo", ["k"], [f"reply-{i}"])

    cancelled: set[int] = set()
    async with anyio.create_task_group() as tg:
        scopes = []
        for i in range(500):
            scope = anyio.CancelScope()
            scopes.append(scope)

            async def run(i: int = i, scope: anyio.CancelScope = scope) -> None:
                with scope:
                    await call(i)

            tg.start_soon(run)
        await anyio.lowlevel.checkpoint()  # every request written, none answered yet
        for i in random.Random(7).sample(range(500), 100):
            scopes[i].cancel()
            cancelled.add(i)
    answered = {i: reply for i, reply in replies.items() if i not in cancelled}
    assert answered == {i: f"reply-{i}".encode() for i in range(500) if i not in cancelled}
    assert await lane.run(ECHO, "echo", ["k"], ["after"]) == b"after"


async def test_concurrent_callers_share_one_connection(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """300 concurrent acquirers open no connection beyond the lane and the event listener."""
    before = int(sync_client.info("clients")["connected_clients"])
    async with Throttle.from_url(redis_url, key_prefix=prefix) as throttle:
        numbers = [f"+86571888{i:05d}" for i in range(300)]
        leases = []

        async def take(number: str) -> None:
            leases.append(await throttle.acquire(number, timeout=0))

        async with anyio.create_task_group() as tg:
            for number in numbers:
                tg.start_soon(take, number)
        during = int(sync_client.info("clients")["connected_clients"])
        assert len(leases) == 300
        # The lane, the listener's subscription, and the pool's connection used to connect.
        assert during - before <= 3
        for lease in leases:
            await throttle.release(lease)


async def test_a_stalled_server_fails_calls_within_the_socket_timeout(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """DEBUG SLEEP stalls the server: calls raise BackendUnavailable after the socket timeout,
    not when the server wakes; afterwards the throttle reconnects by itself."""
    async with Throttle.from_url(f"{redis_url}?socket_timeout=0.3", key_prefix=prefix) as throttle:
        await throttle.release(await throttle.acquire(NUMBER, timeout=0))
        staller = threading.Thread(target=sync_client.execute_command, args=("DEBUG", "SLEEP", 1.5))
        staller.start()
        try:
            time.sleep(0.05)  # the server is asleep now
            started = anyio.current_time()
            with pytest.raises(BackendUnavailable, match=r"did not answer within 0\.3 s"):
                await throttle.acquire(NUMBER, timeout=0)
            assert anyio.current_time() - started < 1.0
        finally:
            staller.join()
        lease = await throttle.acquire(NUMBER, token="after-the-stall", timeout=0)
        usage = await throttle.usage(NUMBER)
        # The stalled acquire may have run when the server woke: its lease expires by itself.
        assert 1 <= usage.in_use <= 2
        assert await throttle.release(lease) is True


async def test_a_killed_connection_is_replaced_and_the_call_retried(
    lane: ScriptLane, sync_client: redis.Redis
) -> None:
    assert await lane.run(ECHO, "echo", ["k"], ["one"]) == b"one"
    killed = sync_client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    assert await lane.run(ECHO, "echo", ["k"], ["two"]) == b"two"


async def test_credentials_and_database_come_from_the_url(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    user = f"lane-{prefix.strip(':')}"
    sync_client.acl_setuser(
        user, enabled=True, passwords=["+s3cret"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    try:
        url = with_credentials(redis_url, user, "s3cret", 5)
        async with Throttle.from_url(url, key_prefix=prefix) as throttle:
            lease = await throttle.acquire(NUMBER, timeout=0)
            in_db5 = redis.Redis.from_url(with_credentials(redis_url, user, "s3cret", 5))
            try:
                assert in_db5.keys(f"{prefix}*")
                assert not sync_client.keys(f"{prefix}*")  # nothing in database 0
            finally:
                in_db5.close()
            await throttle.release(lease)
        wrong = with_credentials(redis_url, user, "wrong", 0)
        with pytest.raises(BackendUnavailable):
            async with Throttle.from_url(wrong, key_prefix=prefix) as throttle:
                await throttle.acquire(NUMBER, timeout=0)  # pragma: no cover
    finally:
        sync_client.acl_deluser(user)


async def test_calls_after_close_fail_clearly(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    lane = ScriptLane.for_client(client)
    assert await lane.run(ECHO, "echo", ["k"], ["x"]) == b"x"
    await lane.aclose()
    with pytest.raises(redis.ConnectionError, match="closed"):
        await lane.run(ECHO, "echo", ["k"], ["y"])
    await client.aclose()


async def test_a_waiter_is_served_when_its_event_was_lost_with_the_subscription(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """The grant event is published while the waiter's subscription is down: once subscribed
    again, the waiter asks again and finds its slot (instead of sleeping until a lease
    expiry, 30 s away)."""
    async with (
        Throttle.from_url(redis_url, key_prefix=prefix) as holder,
        Throttle.from_url(redis_url, key_prefix=prefix) as waiter,
    ):
        lease = await holder.acquire(NUMBER, limit=1, timeout=0)
        got = []

        async def wait() -> None:
            got.append(await waiter.acquire(NUMBER, limit=1, token="waiting", timeout=5))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            while (await waiter.usage(NUMBER, limit=1)).waiting == 0:
                await anyio.sleep(0.01)
            assert sync_client.client_kill_filter(_type="pubsub") >= 1
            await holder.release(lease)  # granted to the waiter while nobody listens
            with anyio.fail_after(2):
                while not got:
                    await anyio.sleep(0.01)
        assert got[0].token == "waiting"
        assert (await waiter.usage(NUMBER, limit=1)).in_use == 1
        await waiter.release(got[0])
