"""The fence on a Redis Cluster: per master (a replica that took over fences its own numbers,
the other masters do not), and lifted on every master (see test_fence.py)."""

from __future__ import annotations

import anyio
import pytest

import redis
from callthrottle import BackendUnavailable, Lease, Throttle, Usage

from .._servers import Server, cluster
from ._fence import (
    CAP,
    NUMBERS,
    eventually,
    holders_are,
    redis_backend,
    refused_at_once,
    waiting_is,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def master_port_of(nodes: redis.RedisCluster, key: str) -> int:
    nodes.nodes_manager.initialize()
    return int(nodes.get_node_from_key(key).port)  # type: ignore[no-untyped-call]


async def refused_after_failover(throttle: Throttle, number: str) -> bool:
    """As refused_at_once; the first calls may still go to the dead master (BackendUnavailable)
    until the client has learnt the Cluster's new layout."""
    for _ in range(20):
        try:
            return await refused_at_once(throttle, number)
        except BackendUnavailable as exc:
            print(f"after the failover: {exc}")
            await anyio.sleep(0.1)
    raise AssertionError("the number's new master was never reached")


def cluster_ok(servers: list[Server]) -> bool:
    """Whether every one of these nodes sees the whole Cluster up (every slot served)."""
    for server in servers:
        client = redis.Redis.from_url(server.url)
        try:
            if client.cluster("INFO").get("cluster_state") != "ok":
                return False
        finally:
            client.close()
    return True


def cluster_client(url: str) -> redis.RedisCluster:
    host, _, port = url.removeprefix("redis+cluster://").split(",")[0].rpartition(":")
    return redis.RedisCluster(host=host, port=int(port))


async def stall(server: redis.Redis, seconds: float) -> None:
    """Stall the server (``DEBUG SLEEP``) for ``seconds``, from a connection of its own."""
    port = server.connection_pool.connection_kwargs["port"]
    client = redis.Redis(port=port)
    try:
        await anyio.to_thread.run_sync(
            lambda: client.execute_command("DEBUG", "SLEEP", str(seconds))  # type: ignore[no-untyped-call]
        )
    finally:
        client.close()


def replica_of(master: Server, servers: list[Server]) -> redis.Redis:
    """A client to the replica of ``master``, allowed to read (READONLY)."""
    for server in servers:
        client = redis.Redis.from_url(server.url)
        if client.info("replication").get("master_port") == master.port:
            client.execute_command("READONLY")  # type: ignore[no-untyped-call]
            return client
        client.close()
    raise AssertionError(f"no replica of {master.port}")


@pytest.mark.cluster
async def test_a_cluster_master_failed_over_fences_its_numbers_only(prefix: str) -> None:
    """SIGKILL a master of a Cluster with replicas, its replica lacking the holder's second
    lease (the master drops its replica's link at every write: an output buffer limit of one
    byte). Once the replica took over, new grants on numbers of that master wait for the
    fence, numbers on the other masters are granted at once; the holder counts the missing
    lease again meanwhile, so that once the fence is over the number is full."""
    ttl = 3.0  # a failover takes a few seconds: the holder's leases must outlive it
    with cluster(3, 1) as (url, servers):
        nodes = cluster_client(url)
        async with (
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=ttl) as holder,
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=ttl) as newcomer,
        ):
            backend = redis_backend(holder)
            killed = servers[0]
            on_killed = next(
                n for n in NUMBERS if master_port_of(nodes, backend.keys_for(n)[0]) == killed.port
            )
            elsewhere = next(
                n for n in NUMBERS if master_port_of(nodes, backend.keys_for(n)[0]) != killed.port
            )
            h_key = backend.keys_for(on_killed)[0]
            replica = replica_of(killed, servers[3:])
            replicated = await holder.acquire(on_killed, limit=CAP, timeout=0)
            await eventually(lambda: replica.zcard(h_key) == 1)
            async with anyio.create_task_group() as tasks:
                # The replica is stalled (it reconnects to its master only in its periodic
                # work), the master drops its link: the next lease is on the master only.
                tasks.start_soon(stall, replica, 0.5)
                await anyio.sleep(0.1)
                master = redis.Redis.from_url(killed.url)
                assert master.client_kill_filter(_type="replica") == 1
                master.close()
                unreplicated = await holder.acquire(on_killed, limit=CAP, timeout=0)
                assert killed.proc is not None
                killed.proc.kill()
            assert replica.zcard(h_key) == 1
            await eventually(
                lambda: master_port_of(nodes, h_key) != killed.port,
                within=30,
            )
            await eventually(lambda: cluster_ok(servers[1:]), within=30)
            promoted = anyio.current_time()
            assert not await refused_at_once(newcomer, elsewhere)  # another master: no fence
            assert await refused_after_failover(newcomer, on_killed)
            # The holder counts the missing lease again on the new master, within the fence.
            mine = {replicated.token, unreplicated.token}
            await eventually(lambda: holders_are(newcomer, on_killed, mine), within=ttl)
            assert anyio.current_time() - promoted < ttl
            got: list[Lease] = []

            async def wait() -> None:
                got.append(await newcomer.acquire(on_killed, limit=CAP, timeout=4 * ttl))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(wait)
                await eventually(lambda: waiting_is(newcomer, 1, on_killed), within=ttl)
                while anyio.current_time() - promoted < 1.5 * ttl:  # past the fence's end
                    assert await newcomer.usage(on_killed, limit=CAP) == Usage(CAP, CAP, 1)
                    await anyio.sleep(0.05)
                assert not got
                assert await holder.release(unreplicated) is True
                await eventually(lambda: bool(got), within=ttl)
            assert await holders_are(newcomer, on_killed, {replicated.token, got[0].token})
            assert not replicated.lost
            assert await holder.release(replicated) is True
            assert await newcomer.release(got[0]) is True
        replica.close()
        nodes.close()


@pytest.mark.cluster
async def test_lift_fence_ends_the_fence_on_every_cluster_master(prefix: str) -> None:
    """Every master's library loaded afresh on servers younger than the grace (a lease TTL of
    a minute): each fences its numbers; lift_fence ends it on all of them at once."""
    with cluster(3, 0) as (url, servers):
        nodes = cluster_client(url)
        async with Throttle.from_url(url, key_prefix=prefix, lease_ttl=60) as throttle:
            backend = redis_backend(throttle)
            by_master: dict[int, str] = {}
            for number in NUMBERS:
                by_master.setdefault(master_port_of(nodes, backend.keys_for(number)[0]), number)
            assert sorted(by_master) == sorted(server.port for server in servers)
            for server in servers:
                client = redis.Redis.from_url(server.url)
                client.function_flush()
                client.close()
            for number in by_master.values():
                assert await refused_at_once(throttle, number)
            await backend.lift_fence()
            leases = [await throttle.acquire(n, limit=1, timeout=0) for n in by_master.values()]
            for lease in leases:
                assert await throttle.release(lease) is True
        nodes.close()
