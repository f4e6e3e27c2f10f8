"""The fence: after a server may have lost its data (a restart, a flush, a promoted replica),
no new slot is granted until every live holder had the time of a lease TTL to count its leases
again; renewals, releases and restores go through meanwhile (see _common.lua, ``fenced``)."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import anyio
import pytest

import redis
from callthrottle import AcquireTimeout, Lease, PoolExhausted, Throttle, Usage
from callthrottle.backends import AcquireRequest, Outcome
from callthrottle.backends._lane import Library

from .._servers import free_port, own_server
from ._fence import (
    CAP,
    NUMBER,
    NUMBERS,
    TTL,
    delete_the_library,
    eventually,
    in_use_is,
    redis_backend,
    refused_at_once,
    restart,
    waiting_is,
)
from ._proxy import CuttingProxy
from .test_redis_backend import command_counts, round_trips_since

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def flushall(client: redis.Redis, prefix: str) -> None:
    client.flushall()


def flushdb(client: redis.Redis, prefix: str) -> None:
    client.flushdb()


def delete_the_prefix(client: redis.Redis, prefix: str) -> None:
    """Every key of the prefix, its marker ``<prefix>fence`` with them."""
    keys = client.keys(prefix + "*")
    assert prefix.encode() + b"fence" in keys
    client.delete(*keys)


async def test_after_a_restart_the_first_grant_waits_a_lease_ttl() -> None:
    """No holder at all: the server cannot know that, so the first grant after the restart
    comes a lease TTL after the first call reached it, not before; a try-once caller meanwhile
    is refused, and told it is the fence and when it ends."""
    with own_server() as (url, server):
        async with Throttle.from_url(url, lease_ttl=TTL) as throttle:
            assert not await refused_at_once(throttle)  # the test server starts unfenced
            restart(server)
            started = anyio.current_time()
            with pytest.raises(AcquireTimeout) as refused:
                await throttle.acquire(NUMBER, limit=CAP, timeout=0)
            assert str(refused.value) == (
                f"no free slot on number {NUMBER!r} (try-once acquire, timeout=0): the server "
                "may have lost the calls in progress (restart, failover or flush) and admits no "
                "new call until their holders have counted them again"
            )
            assert refused.value.refused_by == "fence"
            left = TTL - (anyio.current_time() - started)
            assert refused.value.retry_after is not None
            assert left - 0.1 <= refused.value.retry_after <= left + 0.05
            assert await throttle.usage(NUMBER, limit=CAP) == Usage(0, CAP, 0)
            # The backend's answer tells when to ask again: when the fence ends (no lease is
            # held that could expire sooner).
            told = await redis_backend(throttle).acquire(
                AcquireRequest(NUMBER, "asking", throttle.owner_id, CAP, TTL, None), enqueue=False
            )
            assert told.outcome is Outcome.REFUSED
            assert told.fenced
            assert told.retry_in is not None
            left = TTL - (anyio.current_time() - started)
            assert left - 0.1 <= told.retry_in <= left + 0.05
            lease = await throttle.acquire(NUMBER, limit=CAP, timeout=3 * TTL)
            waited = anyio.current_time() - started
            assert TTL - 0.05 <= waited <= TTL + 0.5
            # Once the fence is over, the number admits up to its cap at once.
            more = await throttle.acquire(NUMBER, limit=CAP, timeout=0)
            assert await refused_at_once(throttle)
            assert await throttle.release(lease) is True
            assert await throttle.release(more) is True


async def test_a_restart_keeps_new_calls_out_until_holders_counted_theirs() -> None:
    """A holder (another process) holds the number's whole cap when the server restarts empty.
    A newcomer that reaches the server before the holder's heartbeat is refused (try-once) or
    waits; the holder counts its leases again meanwhile, so once the fence is over the number
    is full and the newcomer still waits; it gets the slot the holder gives back. At no moment
    does the server count more leases than the cap, nor anyone's but the holder's, until then.

    The holder reaches the server through a proxy severed across the restart, so that the
    newcomer is first (else the holder's heartbeat, run at once on a reconnect, may be)."""
    with own_server() as (url, server):
        proxy = CuttingProxy.in_front_of(url)
        async with (
            proxy.running(),
            Throttle.from_url(proxy.url, lease_ttl=TTL) as holder,
            Throttle.from_url(url, lease_ttl=TTL) as newcomer,
        ):
            held = [await holder.acquire(NUMBER, limit=CAP, timeout=0) for _ in range(CAP)]
            proxy.sever()
            restart(server)
            started = anyio.current_time()
            assert await newcomer.usage(NUMBER, limit=CAP) == Usage(0, CAP, 0)  # forgotten
            assert await refused_at_once(newcomer)
            got: list[Lease] = []

            async def wait() -> None:
                got.append(await newcomer.acquire(NUMBER, limit=CAP, timeout=6 * TTL))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(wait)
                await anyio.sleep(TTL / 4)
                proxy.mend()
                mine = {lease.token for lease in held}
                # Counted again by the holder's heartbeat, within the fence.
                await eventually(lambda: in_use_is(newcomer, CAP), within=TTL * 0.75)
                assert anyio.current_time() - started < TTL
                # Past the fence's end: the number is full, the newcomer still waits.
                while anyio.current_time() - started < TTL * 1.5:
                    usage = await newcomer.usage(NUMBER, limit=CAP)
                    assert usage == Usage(CAP, CAP, 1)
                    assert {h.token for h in await newcomer.holders(NUMBER)} == mine
                    await anyio.sleep(0.05)
                assert not got
                assert await refused_at_once(newcomer)
                assert await holder.release(held[0]) is True
                await eventually(lambda: bool(got), within=TTL)
            assert {h.token for h in await newcomer.holders(NUMBER)} == {
                held[1].token,
                got[0].token,
            }
            assert not held[1].lost
            assert await holder.release(held[1]) is True
            assert await newcomer.release(got[0]) is True


async def test_a_restart_with_persistence_fences_too() -> None:
    """The server reloaded its data, but cannot tell how much of it it lost (writes since the
    last fsync, a stale file): the number has room and still grants nothing for a lease TTL;
    the lease kept on disk stays held."""
    with own_server(persistent=True) as (url, server):
        async with (
            Throttle.from_url(url, lease_ttl=TTL) as holder,
            Throttle.from_url(url, lease_ttl=TTL) as newcomer,
        ):
            kept = await holder.acquire(NUMBER, limit=CAP, timeout=0)
            restart(server)
            started = anyio.current_time()
            assert await newcomer.usage(NUMBER, limit=CAP) == Usage(1, CAP, 0)  # reloaded
            assert await refused_at_once(newcomer)
            lease = await newcomer.acquire(NUMBER, limit=CAP, timeout=3 * TTL)
            assert TTL - 0.05 <= anyio.current_time() - started <= TTL + 0.5
            assert not kept.lost
            assert await newcomer.usage(NUMBER, limit=CAP) == Usage(2, CAP, 0)
            assert await holder.release(kept) is True
            assert await newcomer.release(lease) is True


async def test_a_waiter_queued_before_a_restart_is_handed_nothing_during_the_fence() -> None:
    """The line survives a restart with persistence: a release during the fence frees the
    slot but hands it to nobody (the waiter is not promoted); the waiter gets it once the fence
    is over."""
    with own_server(persistent=True) as (url, server):
        async with (
            Throttle.from_url(url, lease_ttl=TTL) as holder,
            Throttle.from_url(url, lease_ttl=TTL) as waiter,
        ):
            held = await holder.acquire(NUMBER, limit=1, timeout=0)
            got: list[Lease] = []

            async def wait() -> None:
                got.append(await waiter.acquire(NUMBER, limit=1, timeout=6 * TTL))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(wait)
                await eventually(lambda: waiting_is(holder, 1))
                restart(server)
                started = anyio.current_time()
                assert await refused_at_once(holder, limit=1)  # the fence has begun
                assert await holder.release(held) is True
                while anyio.current_time() - started < TTL - 0.2:
                    assert await holder.usage(NUMBER, limit=1) == Usage(0, 1, 1)
                    assert not got
                    await anyio.sleep(0.05)
                await eventually(lambda: bool(got), within=TTL)
                assert anyio.current_time() - started >= TTL - 0.05
            assert await holder.usage(NUMBER, limit=1) == Usage(1, 1, 0)
            assert await waiter.release(got[0]) is True


async def test_renewals_releases_and_restores_go_through_during_the_fence() -> None:
    """A holder counts its lease again at once after a restart without persistence, renews it
    for longer than its TTL while the fence lasts (a newcomer with a longer TTL makes the
    fence that long: it lasts the longest TTL callers passed), and releases it, all during the
    fence; the lease is never reported lost."""
    with own_server() as (url, server):
        async with (
            Throttle.from_url(url, lease_ttl=TTL) as holder,
            Throttle.from_url(url, lease_ttl=3 * TTL) as newcomer,
        ):
            lease = await holder.acquire(NUMBER, limit=CAP, timeout=0)
            restart(server)
            started = anyio.current_time()
            assert await refused_at_once(holder)  # the fence begins, for TTL
            assert await refused_at_once(newcomer)  # and lasts 3 * TTL now
            await eventually(lambda: in_use_is(newcomer, 1), within=TTL / 2)  # restored
            await anyio.sleep(1.5 * TTL)  # the restored lease would have expired unrenewed
            assert [h.token for h in await newcomer.holders(NUMBER)] == [lease.token]
            assert not lease.lost
            assert await refused_at_once(newcomer)
            assert await holder.release(lease) is True
            assert await newcomer.usage(NUMBER, limit=CAP) == Usage(0, CAP, 0)
            assert await refused_at_once(newcomer)
            assert anyio.current_time() - started < 3 * TTL - 0.2  # all of it within the fence
            assert not lease.lost
            assert lease.released


@pytest.mark.parametrize("lose", [flushall, flushdb, delete_the_prefix])
async def test_the_data_lost_on_a_running_server_fences_the_prefix(
    lose: Callable[[redis.Redis, str], None], prefix: str
) -> None:
    """The server stays up (its library too) but the prefix's keys are gone: the marker key it
    saw is missing, so it fences as after a restart."""
    with own_server() as (url, _):
        client = redis.Redis.from_url(url)
        async with Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as throttle:
            assert not await refused_at_once(throttle)  # the marker is seen
            await anyio.sleep(0.1)
            assert not await refused_at_once(throttle)
            lose(client, prefix)
            started = anyio.current_time()
            assert await refused_at_once(throttle)
            lease = await throttle.acquire(NUMBER, limit=CAP, timeout=3 * TTL)
            assert TTL - 0.05 <= anyio.current_time() - started <= TTL + 0.5
            assert await throttle.release(lease) is True
        client.close()


async def test_a_new_key_prefix_on_a_running_server_does_not_fence(prefix: str) -> None:
    """A new deployment on a shared server: its prefix has no marker yet, which is no loss."""
    with own_server() as (url, _):
        async with Throttle.from_url(url, key_prefix=prefix + "a:", lease_ttl=TTL) as first:
            assert not await refused_at_once(first)
            async with Throttle.from_url(url, key_prefix=prefix + "b:", lease_ttl=TTL) as second:
                assert not await refused_at_once(second)
                lease = await second.acquire(NUMBER, limit=CAP, timeout=0)
                assert not await refused_at_once(first)
                assert await second.release(lease) is True


async def test_lift_fence_ends_the_fence_at_once() -> None:
    with own_server() as (url, server):
        async with Throttle.from_url(url, lease_ttl=TTL) as throttle:
            restart(server)
            started = anyio.current_time()
            assert await refused_at_once(throttle)
            await redis_backend(throttle).lift_fence()
            leases = [await throttle.acquire(NUMBER, limit=CAP, timeout=0) for _ in range(CAP)]
            assert anyio.current_time() - started < TTL / 2
            assert await refused_at_once(throttle)  # the cap still holds
            for lease in leases:
                assert await throttle.release(lease) is True


async def test_a_server_whose_identity_changed_fences_after_a_second_without_calls() -> None:
    """The server stays up (its library too) but was made a replica and then a master again
    (its replication ID changes: it may hold another master's data now). The library reads
    the server's identity again after a second without any call, and fences."""
    with own_server() as (url, _):
        client = redis.Redis.from_url(url)
        async with Throttle.from_url(url, lease_ttl=TTL) as throttle:
            assert not await refused_at_once(throttle)
            await anyio.sleep(1.2)
            assert not await refused_at_once(throttle)  # looked again: the same server
            replid = client.info("replication")["master_replid"]
            client.replicaof("127.0.0.1", free_port())
            client.replicaof("NO", "ONE")
            assert client.info("replication")["master_replid"] != replid
            await anyio.sleep(1.2)
            started = anyio.current_time()
            assert await refused_at_once(throttle)
            lease = await throttle.acquire(NUMBER, limit=CAP, timeout=3 * TTL)
            assert TTL - 0.05 <= anyio.current_time() - started <= TTL + 0.5
            assert await throttle.release(lease) is True
        client.close()


async def test_a_library_loaded_again_on_a_server_up_longer_than_the_grace_does_not_fence() -> None:
    with own_server() as (url, _):
        client = redis.Redis.from_url(url)
        async with Throttle.from_url(url, lease_ttl=TTL) as throttle:
            held = await throttle.acquire(NUMBER, limit=CAP, timeout=0)
            await eventually(lambda: client.info("server")["uptime_in_seconds"] > TTL)
            delete_the_library(client)
            lease = await throttle.acquire(NUMBER, limit=CAP, timeout=0)
            assert client.function_list()  # loaded again
            assert await throttle.usage(NUMBER, limit=CAP) == Usage(2, CAP, 0)
            assert await throttle.release(lease) is True
            assert await throttle.release(held) is True
        client.close()


async def test_a_library_loaded_again_on_a_server_up_less_than_the_grace_fences() -> None:
    """The library cannot tell a server that just started empty from one that just started
    with its library loaded again: it fences while the server is younger than the grace."""
    with own_server() as (url, _):
        client = redis.Redis.from_url(url)
        async with Throttle.from_url(url, lease_ttl=TTL) as throttle:
            assert client.info("server")["uptime_in_seconds"] < TTL
            delete_the_library(client)
            started = anyio.current_time()
            assert await refused_at_once(throttle)
            assert client.function_list()  # loaded again
            lease = await throttle.acquire(NUMBER, limit=CAP, timeout=3 * TTL)
            assert TTL - 0.05 <= anyio.current_time() - started <= TTL + 0.5
            assert await throttle.release(lease) is True
        client.close()


def calls_but_renewals(client: redis.Redis) -> list[str]:
    """The functions clients called (``FCALL``) since the last ``SLOWLOG RESET`` (every
    command is logged: see ``log_every_command``), leaving out the heartbeat's renewals: they
    run when they are due, and may fall inside a measurement. (The log also holds the commands
    the functions ran; the server's counters say which commands the clients sent.)"""
    calls = []
    for entry in reversed(client.slowlog_get(1000)):
        words = entry["command"].decode().split()
        if words[0].upper() == "FCALL" and not words[1].endswith("_renew"):
            calls.append(words[1].rpartition("_")[2])
    return calls


def log_every_command(client: redis.Redis) -> None:
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 1000)
    client.slowlog_reset()


async def test_the_fence_costs_no_round_trip() -> None:
    """One FCALL per acquire and per release, also when the call reads the server's INFO (the
    first call of a library, or after a second without calls), counted by the server itself;
    a caller waiting through a fence does not ask in a loop."""
    with own_server() as (url, server):
        client = redis.Redis.from_url(url)
        async with Throttle.from_url(url, lease_ttl=TTL) as throttle:
            assert not await refused_at_once(throttle)  # the library is loaded
            for idle in (0.0, 1.2):  # after 1.2 s, the acquire reads INFO again
                await anyio.sleep(idle)
                log_every_command(client)
                before = command_counts(client)
                lease = await throttle.acquire(NUMBER, limit=CAP, timeout=0)
                assert set(round_trips_since(client, before)) == {"fcall"}
                assert calls_but_renewals(client) == ["acquire"]
                client.slowlog_reset()
                before = command_counts(client)
                assert await throttle.release(lease) is True
                assert set(round_trips_since(client, before)) == {"fcall"}
                assert calls_but_renewals(client) == ["release"]
            restart(server)
            client = redis.Redis.from_url(url)
            assert await refused_at_once(throttle)  # the library is loaded again, fenced
            before = command_counts(client)
            started = anyio.current_time()
            lease = await throttle.acquire(NUMBER, limit=CAP, timeout=3 * TTL)
            # Two asks (queued, then granted at the fence's end), and the heartbeat's renewals
            # of its place in line (every TTL / 3).
            heartbeats = int((anyio.current_time() - started) / (TTL / 3)) + 1
            calls = round_trips_since(client, before)
            # While a caller waits, its throttle also looks for a newer published policy once
            # a heartbeat (one FCALL_RO; README, "One policy for every process").
            assert set(calls) <= {"fcall", "fcall_ro"}
            assert calls["fcall"] <= 2 + heartbeats
            assert calls.get("fcall_ro", 0) <= heartbeats
            log_every_command(client)
            before = command_counts(client)
            assert await throttle.release(lease) is True
            assert set(round_trips_since(client, before)) == {"fcall"}
            assert calls_but_renewals(client) == ["release"]
        client.close()


async def test_a_pick_from_a_pool_is_fenced_too() -> None:
    """A pool's pick decides as acquire does for each number it tries: nothing is granted
    during the fence (the pool's own keys survive the restart here: with persistence)."""
    numbers = NUMBERS[:3]
    config = {"pools": {"p": {"numbers": numbers}}}
    with own_server(persistent=True) as (url, server):
        async with Throttle.from_url(
            url, lease_ttl=TTL, config=config, default_limit=1
        ) as throttle:
            assert await throttle.release(await throttle.acquire_from("p", timeout=0)) is True
            restart(server)
            started = anyio.current_time()
            with pytest.raises(PoolExhausted):
                await throttle.acquire_from("p", timeout=0)
            lease = await throttle.acquire_from("p", timeout=3 * TTL)
            assert TTL - 0.05 <= anyio.current_time() - started <= TTL + 0.5
            others = [await throttle.acquire_from("p", timeout=0) for _ in numbers[1:]]
            assert sorted(held.number for held in [lease, *others]) == sorted(numbers)
            for held in [lease, *others]:
                assert await throttle.release(held) is True


async def test_a_pool_the_server_forgot_gets_its_numbers_again() -> None:
    """A restart without persistence forgets a pool's numbers with everything else: the
    throttle publishes its configured ones again (once it sees its connection replaced, or
    when a pick finds nothing at all), and the pool serves calls once the fence is over."""
    numbers = NUMBERS[:3]
    config = {"pools": {"p": {"numbers": numbers}}}
    with own_server() as (url, server):
        async with Throttle.from_url(
            url, lease_ttl=TTL, config=config, default_limit=1
        ) as throttle:
            assert await throttle.release(await throttle.acquire_from("p", timeout=0)) is True
            restart(server)
            lease = await throttle.acquire_from("p", timeout=3 * TTL)
            assert sorted(await throttle.backend.pool_members("p")) == sorted(numbers)
            assert await throttle.release(lease) is True


def another_release() -> Library:
    """The function library as another release of this one ships it (another source: other
    names), for a server that two releases use at once (a rolling upgrade)."""
    from callthrottle.backends.redis import _SCRIPT_NAMES

    lua = resources.files("callthrottle.backends").joinpath("lua")
    shared = lua.joinpath("_common.lua").read_text(encoding="utf-8")
    bodies = {
        name: lua.joinpath(f"{name}.lua").read_text(encoding="utf-8") for name in _SCRIPT_NAMES
    }
    return Library("callthrottle", shared + "\n-- another release\n", bodies)


async def test_a_holder_counts_its_leases_again_after_a_flush(prefix: str) -> None:
    """A flush on a running server drops the leases of calls still up, without any connection
    being replaced: the holder must count them again during the fence all the same, so that
    once it is over the number is full and a newcomer waits."""
    with own_server() as (url, _):
        client = redis.Redis.from_url(url)
        async with (
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as holder,
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as newcomer,
        ):
            held = [await holder.acquire(NUMBER, limit=CAP, timeout=0) for _ in range(CAP)]
            client.flushall()
            started = anyio.current_time()
            assert await refused_at_once(newcomer)
            with pytest.raises(AcquireTimeout):
                await newcomer.acquire(NUMBER, limit=CAP, timeout=1.5 * TTL)
            assert anyio.current_time() - started > TTL  # past the fence
            assert {h.token for h in await newcomer.holders(NUMBER)} == {
                lease.token for lease in held
            }
            assert not any(lease.lost or lease.released for lease in held)
            for lease in held:
                assert await holder.release(lease) is True
        client.close()


async def test_lift_fence_covers_a_change_made_just_before_it() -> None:
    with own_server() as (url, _):  # the library looked at the server when it started
        client = redis.Redis.from_url(url)
        client.replicaof("127.0.0.1", free_port())
        client.replicaof("NO", "ONE")
        async with Throttle.from_url(url, lease_ttl=TTL) as throttle:
            await redis_backend(throttle).lift_fence()
            assert not await refused_at_once(throttle)
            await anyio.sleep(1.2)
            assert not await refused_at_once(throttle)
        client.close()


async def test_a_flush_fences_every_release_of_the_library(prefix: str) -> None:
    """Two releases on one server (a rolling upgrade), each has seen the prefix's marker. After
    a flush, the newer one looks first (and fences); the older one must fence as well."""
    with own_server() as (url, _):
        client = redis.Redis.from_url(url)
        await eventually(lambda: client.info("server")["uptime_in_seconds"] > TTL)
        newer = another_release()
        client.function_load(newer.source)
        async with Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as older:
            backend = redis_backend(older)
            keys = backend.keys_for(NUMBER)

            def newer_acquire(token: str) -> int:
                args = backend.acquire_args(
                    AcquireRequest(NUMBER, token, "newer", CAP, TTL, None), False
                )
                reply = client.fcall(newer.functions["acquire"], len(keys), *keys, *args)
                return int(reply[0])

            assert newer_acquire("seen") == Outcome.GRANTED  # the newer release saw the marker
            assert not await refused_at_once(older)  # and so did the older one
            client.flushall()
            assert newer_acquire("after") == Outcome.REFUSED  # fenced
            assert await refused_at_once(older)
        client.close()


async def test_session_leases_are_counted_again_after_a_restart() -> None:
    """A session (as a PBX's) holds the number's cap when the server restarts empty: once the
    fence is over, the number must be full."""
    with own_server() as (url, server):
        async with (
            Throttle.from_url(url, session="pbx-1", lease_ttl=TTL) as holder,
            Throttle.from_url(url, lease_ttl=TTL) as newcomer,
        ):
            held = [await holder.acquire(NUMBER, limit=CAP, timeout=0) for _ in range(CAP)]
            restart(server)
            with pytest.raises(AcquireTimeout):
                await newcomer.acquire(NUMBER, limit=CAP, timeout=1.5 * TTL)
            assert {h.token for h in await newcomer.holders(NUMBER)} == {
                lease.token for lease in held
            }
            for lease in held:
                assert await holder.release(lease) is True


async def test_a_replica_attaching_to_a_running_master_does_not_fence() -> None:
    from .test_sentinel import replica_of

    with own_server() as (url, server):
        async with Throttle.from_url(url, lease_ttl=TTL) as throttle:
            assert not await refused_at_once(throttle)
            with replica_of(server.port) as replica_port:
                replica = redis.Redis(port=replica_port)
                await eventually(lambda: replica.info("replication")["master_link_status"] == "up")
                replica.close()
                await anyio.sleep(1.2)  # the library looks at the server again
                assert not await refused_at_once(throttle)


async def test_a_sessions_leases_are_counted_again_after_a_flush(prefix: str) -> None:
    """A session's leases are not renewed one by one: its keep-alive, told that the server is
    fenced, makes its throttle look for them, and count again those the flush dropped."""
    with own_server() as (url, _):
        client = redis.Redis.from_url(url)
        async with (
            Throttle.from_url(url, key_prefix=prefix, session="sbc-1", lease_ttl=TTL) as holder,
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as newcomer,
        ):
            held = await holder.acquire(NUMBER, limit=1, timeout=0)
            client.flushall()
            assert await refused_at_once(newcomer, limit=1)
            with pytest.raises(AcquireTimeout):
                await newcomer.acquire(NUMBER, limit=1, timeout=1.5 * TTL)  # past the fence
            assert [h.owner for h in await newcomer.holders(NUMBER)] == ["sbc-1"]
            assert not held.lost
            assert await holder.release(held) is True
            await newcomer.release(await newcomer.acquire(NUMBER, limit=1, timeout=0))
        client.close()


async def test_two_databases_with_one_prefix_do_not_fence_each_other_again() -> None:
    """The prefix's marker is per database, the library's memory of it per server: once each
    database's marker is known, using both in turn fences neither (the first use of the second
    database fences once: tests/redis/test_fence_gaps.py)."""
    with own_server() as (url, _):
        other = url.removesuffix("/0") + "/1"
        async with (
            Throttle.from_url(url, lease_ttl=TTL) as first,
            Throttle.from_url(other, lease_ttl=TTL) as second,
        ):
            assert not await refused_at_once(first)
            await second.release(await second.acquire(NUMBER, timeout=2 * TTL))
            for _ in range(5):
                assert not await refused_at_once(first)
                assert not await refused_at_once(second)


async def test_a_wait_that_ends_in_the_fence_says_so() -> None:
    with own_server() as (url, server):
        async with Throttle.from_url(url, lease_ttl=TTL) as throttle:
            restart(server)
            with pytest.raises(AcquireTimeout) as timed_out:
                await throttle.acquire(NUMBER, timeout=TTL / 4)
            assert timed_out.value.refused_by == "fence"
            assert "the server may have lost the calls in progress" in str(timed_out.value)
