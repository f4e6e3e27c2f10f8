"""What the conformance suite cannot express: Redis specifics, against a real server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

import redis
from callthrottle import BackendUnavailable, Lease, Throttle, UnsupportedEventLoop
from callthrottle.backends import RedisBackend

from .._servers import fence_mark, free_port, lift_fence
from ._fence import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"


#: Commands our scripts run inside Redis; commandstats counts them too, but they cost no trip.
SCRIPT_INTERNAL = {
    "time", "zrangebyscore", "zremrangebyscore", "zrange", "zcard", "zcount", "zscore", "zadd",
    "zrem", "hget", "hmget", "hset", "hdel", "hgetall", "pexpire", "pttl", "del", "spublish",
    "incr", "zmscore", "srandmember", "sadd", "srem", "get", "set", "hexists", "hlen", "persist",
    "zrank", "smembers", "exists",
}  # fmt: skip


def round_trips_since(client: redis.Redis, before: dict[str, int]) -> dict[str, int]:
    """Commands sent by clients since ``before``, from the server's own counters."""
    after = command_counts(client)
    delta = {name: calls - before.get(name, 0) for name, calls in after.items()}
    return {
        name: calls
        for name, calls in delta.items()
        if calls and name != "info" and name not in SCRIPT_INTERNAL
    }


def command_counts(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_refuses_trio_with_a_clear_error(redis_url: str) -> None:
    throttle = Throttle.from_url(redis_url)
    with pytest.raises(UnsupportedEventLoop, match="the Redis backend needs asyncio"):
        async with throttle:
            pass  # pragma: no cover


async def test_one_round_trip_per_acquire_and_per_release(
    throttle: Throttle, sync_client: redis.Redis
) -> None:
    """Counted by the server itself (INFO commandstats); nothing else may run."""
    await throttle.release(await throttle.acquire(NUMBER, timeout=0))  # scripts loaded, pool warm
    before = command_counts(sync_client)
    lease = await throttle.acquire(NUMBER, timeout=0)
    assert round_trips_since(sync_client, before) == {"fcall": 1}
    before = command_counts(sync_client)
    assert await throttle.release(lease) is True
    assert round_trips_since(sync_client, before) == {"fcall": 1}


@pytest.fixture
async def flushes_functions(redis_url: str, sync_client: redis.Redis) -> AsyncIterator[None]:
    """For a test that flushes the server's functions: the library loaded again knows only the
    server's uptime, and fences new grants while it is under the lease TTL (1 s in these
    tests), so the test waits until the server is older than that; afterwards the fence the
    shared test server started without is lifted again, for the tests that come next (with
    30 s leases, a young server would fence them all)."""
    await eventually(lambda: int(sync_client.info("server")["uptime_in_seconds"]) > 1)
    yield
    lift_fence(redis_url)


@pytest.mark.usefixtures("flushes_functions")
async def test_functions_reload_after_function_flush(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    # Leases of 1 s: a library loaded again on a server up for less than the lease TTL fences
    # new grants (it cannot tell that from a restart), and the test server may be that young.
    async with Throttle.from_url(redis_url, key_prefix=prefix, lease_ttl=1) as throttle:
        await _reload_after_function_flush(throttle, sync_client)


async def _reload_after_function_flush(throttle: Throttle, sync_client: redis.Redis) -> None:
    lease = await throttle.acquire(NUMBER, timeout=0)
    sync_client.function_flush()
    assert await throttle.release(lease) is True
    sync_client.function_flush()
    second = await throttle.acquire(NUMBER, timeout=0)
    sync_client.function_flush()
    assert (await throttle.usage(NUMBER)).in_use == 1
    sync_client.function_flush()
    await throttle.backend.renew(throttle.owner_id, [(NUMBER, second.token)])
    assert await throttle.release(second) is True
    sync_client.script_flush()  # the script cache is not used at all
    assert await throttle.release(await throttle.acquire(NUMBER, timeout=0)) is True


@pytest.mark.usefixtures("flushes_functions")
async def test_many_callers_load_the_library_once_without_errors(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """100 first calls at once on a server without the library: all succeed (the loads that
    lose the race are harmless), and the library is there once."""
    sync_client.function_flush()
    # Leases of 1 s: see test_functions_reload_after_function_flush.
    async with Throttle.from_url(redis_url, key_prefix=prefix, lease_ttl=1) as throttle:
        numbers = [f"+86571888{i:05d}" for i in range(100)]

        async def take(number: str) -> None:
            await throttle.acquire(number, timeout=0)

        async with anyio.create_task_group() as tg:
            for number in numbers:
                tg.start_soon(take, number)
        assert sum([(await throttle.usage(n)).in_use for n in numbers]) == 100
    libraries = sync_client.function_list(library="callthrottle_*")
    assert len(libraries) == 1


async def test_keys_share_one_hash_tag_and_expire(
    throttle: Throttle, sync_client: redis.Redis, prefix: str
) -> None:
    lease = await throttle.acquire(NUMBER, timeout=0)
    keys = sorted(k.decode() for k in sync_client.scan_iter(match=f"{prefix}*"))
    keys.remove(fence_mark(prefix))  # the prefix's marker: its one key that never expires
    assert keys, "acquire wrote no key"
    assert all(f"{{{NUMBER}}}" in key for key in keys)
    for key in keys:
        # The lease's ttl, and four more: a release arriving after it lapsed can say so.
        assert 0 < sync_client.pttl(key) <= 30_000 + 4 * 30_000 + 1_000
    await throttle.release(lease)
    assert list(sync_client.scan_iter(match=f"{prefix}*")) == [fence_mark(prefix).encode()]


async def test_lease_expiry_is_judged_by_the_server_clock(
    throttle: Throttle, sync_client: redis.Redis, prefix: str
) -> None:
    lease = await throttle.acquire(NUMBER, timeout=0)
    seconds, micros = sync_client.time()
    server_ms = seconds * 1000 + micros // 1000
    assert isinstance(throttle.backend, RedisBackend)
    expires = sync_client.zscore(throttle.backend.keys_for(NUMBER)[0], lease.token)
    assert expires is not None
    assert abs(expires - (server_ms + 30_000)) < 1_000


async def test_unreachable_server_raises_backend_unavailable() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(BackendUnavailable, match="Redis failed during connect") as caught:
        async with Throttle.from_url(url, socket_connect_timeout=0.5):
            pass  # pragma: no cover
    assert isinstance(caught.value.__cause__, redis.ConnectionError)


async def test_killed_connections_are_reestablished(
    throttle: Throttle, sync_client: redis.Redis
) -> None:
    """CLIENT KILL drops every connection of the throttle; the next calls reconnect by themselves."""
    lease = await throttle.acquire(NUMBER, timeout=0)
    sync_client.client_kill_filter(_type="normal", skipme=True)
    sync_client.client_kill_filter(_type="pubsub", skipme=True)
    assert await throttle.release(lease) is True
    assert (await throttle.usage(NUMBER)).in_use == 0


async def test_release_owner_scans_only_its_prefix(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    async with (
        Throttle.from_url(redis_url, key_prefix=prefix, owner_id="dialer-1") as mine,
        Throttle.from_url(redis_url, key_prefix=prefix + "other:", owner_id="dialer-1") as theirs,
    ):
        await mine.acquire(NUMBER, timeout=0)
        await theirs.acquire(NUMBER, timeout=0)
        assert await mine.release_owner("dialer-1") == 1
        assert (await theirs.usage(NUMBER)).in_use == 1


async def test_one_decision_stays_on_its_tenants_slot(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    config = {
        "numbers": {NUMBER: {"tenant": "acme"}},
        "profiles": {"p": {"rates": "5/minute"}},
        "default_profile": "p",
        "callee": {"rates": "3/minute"},
    }
    async with Throttle.from_url(redis_url, key_prefix=prefix, config=config) as throttle:
        await throttle.acquire(NUMBER, callee="+8613800138000", timeout=0)
        keys = {k.decode() for k in sync_client.scan_iter(match=f"{prefix}*")}
        assert f"{prefix}{{t:acme}}:c:+8613800138000" in keys
        keys.discard(fence_mark(prefix))  # the prefix's marker, outside every slot
        assert all(key.startswith(f"{prefix}{{t:acme}}:") for key in keys), keys


async def test_one_round_trip_for_a_decision_with_every_limit(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """Number cap and windows, trunk and tenant caps and windows, callee windows: one FCALL."""
    config = {
        "timezone": "Asia/Shanghai",
        "default_profile": "p",
        "profiles": {"p": {"cap": 5, "rates": "10/second;500/day", "daily_reset": "midnight"}},
        "trunks": {"t400": {"cap": 20, "reserve": 2, "rates": "5/second"}},
        "tenants": {"acme": {"cap": 50, "rates": "1000/day"}},
        "numbers": {NUMBER: {"trunk": "t400", "tenant": "acme"}},
        "callee": {"rates": "3/5minutes"},
    }
    async with Throttle.from_url(redis_url, key_prefix=prefix, config=config) as throttle:
        await throttle.release(await throttle.acquire(NUMBER, callee="+8613800138000", timeout=0))
        before = command_counts(sync_client)
        lease = await throttle.acquire(NUMBER, callee="+8613900139000", timeout=0)
        assert round_trips_since(sync_client, before) == {"fcall": 1}
        before = command_counts(sync_client)
        await throttle.release(lease)
        assert round_trips_since(sync_client, before) == {"fcall": 1}
        keys = {k.decode() for k in sync_client.scan_iter(match=f"{prefix}*")}
        keys.discard(fence_mark(prefix))  # the prefix's marker, outside every slot
        assert all(key.startswith(f"{prefix}{{t:acme}}:") for key in keys), keys


async def test_a_burst_of_callers_waits_for_connections_instead_of_failing(
    redis_url: str, prefix: str
) -> None:
    """300 concurrent acquirers in one process: more than the pool holds (128), all served."""
    served = 0

    async def caller(throttle: Throttle) -> None:
        nonlocal served
        async with throttle.slot(NUMBER, limit=20, timeout=60):
            served += 1

    async with Throttle.from_url(redis_url, key_prefix=prefix) as throttle:
        async with anyio.create_task_group() as tg:
            for _ in range(300):
                tg.start_soon(caller, throttle)
        assert served == 300
        assert (await throttle.usage(NUMBER, limit=20)).in_use == 0


async def test_one_round_trip_for_a_pick_from_a_pool(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """A pick that looks at several numbers (the first ones full) is still one FCALL."""
    numbers = [f"+86571888{i:05d}" for i in range(6)]
    config = {
        "pools": {"p": {"numbers": numbers}},
        "trunks": {"t": {"cap": 100, "rates": "1000/minute"}},
        "numbers": {n: {"trunk": "t", "rates": "100/minute"} for n in numbers},
    }
    async with Throttle.from_url(
        redis_url, key_prefix=prefix, config=config, default_limit=1
    ) as throttle:
        leases = [await throttle.acquire_from("p", timeout=0) for _ in range(5)]
        for number in numbers[:5]:  # directly: the pool's loads do not know of these
            await throttle.release(Lease(number, leases[numbers.index(number)].token))
            await throttle.acquire(number, timeout=0)
        before = command_counts(sync_client)
        lease = await throttle.acquire_from("p", timeout=0)
        assert round_trips_since(sync_client, before) == {"fcall": 1}
        assert lease.number == numbers[5]
        before = command_counts(sync_client)
        assert await throttle.release(lease) is True
        assert round_trips_since(sync_client, before) == {"fcall": 1}
