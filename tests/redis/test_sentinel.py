"""Redis Sentinel: the throttle finds the master through the sentinels, and follows a failover."""

from __future__ import annotations

import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

import redis
from callthrottle import AcquireTimeout, Lease, Throttle, Usage

from .._servers import (
    Server,
    _wait_until_up,
    find_server_binary,
    free_port,
    own_server,
)
from ._proxy import CuttingProxy

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.redis, pytest.mark.slow]
NUMBER = "+8657188880001"


@contextmanager
def replica_of(master_port: int) -> Iterator[int]:
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="callthrottle-replica-")
    command = [
        find_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", workdir, "--replicaof", "127.0.0.1", str(master_port),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_up(f"redis://127.0.0.1:{port}/0", proc, time.monotonic() + 20)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def sentinel_for(master_port: int) -> Iterator[int]:
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="callthrottle-sentinel-"))
    config = workdir / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor svc 127.0.0.1 {master_port} 1\n"
        "sentinel down-after-milliseconds svc 1000\n"
        "sentinel failover-timeout svc 5000\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [find_server_binary(), str(config), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, socket_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.sentinel_get_master_addr_by_name("svc"):
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinel did not come up")
            time.sleep(0.05)
        client.close()
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def wait_for(check: object, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


async def test_the_master_is_found_through_the_sentinels_and_followed_after_a_failover(
    prefix: str,
) -> None:
    with own_server() as (master_url, master), replica_of(master.port) as replica_port:
        # The replica is in sync before the sentinel first looks at it: a sentinel that saw
        # it still syncing may find no replica good enough to promote, and retry only after
        # twice its failover timeout.
        replica = redis.Redis(port=replica_port)
        wait_for(lambda: replica.info("replication")["master_link_status"] == "up")
        with sentinel_for(master.port) as sentinel_port:
            await _fail_over_while_holding(prefix, master_url, replica, sentinel_port)
        replica.close()


def replica_in_sync(sentinel: redis.Redis) -> bool:
    """Whether the sentinel knows a replica whose link to the master it last saw up."""
    replicas = sentinel.execute_command("SENTINEL", "REPLICAS", "svc")  # type: ignore[no-untyped-call]
    return any(entry.get(b"master-link-status") == b"ok" for entry in replicas)


async def _fail_over_while_holding(
    prefix: str, master_url: str, replica: redis.Redis, sentinel_port: int
) -> None:
    url = f"redis+sentinel://127.0.0.1:{sentinel_port}/svc"
    sentinel = redis.Redis(port=sentinel_port)
    primary = redis.Redis.from_url(master_url)
    try:
        async with Throttle.from_url(url, key_prefix=prefix) as throttle:
            lease = await throttle.acquire(NUMBER, timeout=0)
            assert primary.keys(f"{prefix}*"), "the lease is on the master"
            wait_for(lambda: replica.keys(f"{prefix}*"))  # replicated
            wait_for(lambda: replica_in_sync(sentinel))
            sentinel.execute_command("SENTINEL", "FAILOVER", "svc")  # type: ignore[no-untyped-call]
            wait_for(lambda: replica.info("replication")["role"] == "master")
            # The sentinel turns the old master into a replica a few seconds after it
            # promoted the other (it waits to see the old one still reporting itself master).
            wait_for(lambda: primary.info("replication")["role"] == "slave", within=40)
            # The next call reaches the old master (now a replica), is refused, and goes again
            # to the new one, which had the lease replicated.
            usage = await throttle.usage(NUMBER)
            assert usage.in_use == 1
            assert await throttle.release(lease) is True
            # A promoted replica admits no new call for a lease TTL from its first call (it
            # may lack the newest leases: the fence), which the wait above may have outlasted.
            second = await throttle.acquire(NUMBER, timeout=35)
            assert replica.zcard(throttle.backend.keys_for(NUMBER)[0]) == 1  # type: ignore[attr-defined]
            await throttle.release(second)
    finally:
        sentinel.close()
        primary.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1:26379",  # no service
        "redis+sentinel://127.0.0.1/svc",  # no port
        "redis+sentinel://127.0.0.1:26379/svc/zero",  # db not a number
        "redis+sentinel://127.0.0.1:26379/svc/0/extra",
    ],
)
def test_a_bad_sentinel_url_is_refused_by_name(url: str) -> None:
    from callthrottle import InvalidArgument

    with pytest.raises(InvalidArgument) as caught:
        Throttle.from_url(url)
    assert caught.value.argument == "url"


def test_the_blocking_session_client_finds_the_master_through_the_sentinels(prefix: str) -> None:
    from callthrottle import ReleaseOutcome
    from callthrottle.blocking import SessionClient

    with own_server() as (master_url, master), sentinel_for(master.port) as sentinel_port:
        url = f"redis+sentinel://127.0.0.1:{sentinel_port}/svc"
        with SessionClient.from_url(url, session="pbx-1", key_prefix=prefix) as client:
            lease = client.acquire(NUMBER, token="call-1")
            primary = redis.Redis.from_url(master_url)
            assert primary.keys(f"{prefix}*"), "the lease is on the master"
            assert client.end_call(lease) is ReleaseOutcome.RELEASED
            primary.close()


def master_found(sentinel: redis.Redis) -> int | None:
    """The port of the master that clients find through the sentinel (None: none yet)."""
    from redis.sentinel import MasterNotFoundError, Sentinel

    port = sentinel.connection_pool.connection_kwargs["port"]
    try:
        return int(Sentinel([("127.0.0.1", port)]).discover_master("svc")[1])
    except MasterNotFoundError:
        return None


async def until(check: object, within: float = 20.0) -> None:
    """``wait_for`` without blocking the event loop (a proxy of the test's runs on it)."""
    with anyio.fail_after(within):
        while not check():  # type: ignore[operator]
            await anyio.sleep(0.05)


async def test_a_promoted_replica_that_lacked_a_lease_fences_until_its_holder_counted_it(
    prefix: str,
) -> None:
    """The replica reaches the master through a proxy, severed after the holder's first lease
    was replicated: its second is on the master only. The master is killed (SIGKILL) and the
    sentinel promotes the replica, which lacks that lease. A new caller gets nothing there
    while the fence lasts (without it, the number would carry three calls on a cap of two);
    the holder counts its lost lease again meanwhile, so the number is full once it is over,
    and the new caller gets the slot the holder gives back."""
    ttl = 3.0  # a failover takes a few seconds: the holder's leases must outlive it
    with own_server() as (master_url, master):
        proxy = CuttingProxy.in_front_of(master_url)
        async with proxy.running():
            with replica_of(proxy.port) as replica_port:
                replica = redis.Redis(port=replica_port)
                await until(lambda: replica.info("replication")["master_link_status"] == "up")
                with sentinel_for(master.port) as sentinel_port:
                    sentinel = redis.Redis(port=sentinel_port)
                    await until(lambda: replica_in_sync(sentinel))
                    url = f"redis+sentinel://127.0.0.1:{sentinel_port}/svc"
                    async with (
                        Throttle.from_url(url, key_prefix=prefix, lease_ttl=ttl) as holder,
                        Throttle.from_url(url, key_prefix=prefix, lease_ttl=ttl) as newcomer,
                    ):
                        await _promote_a_replica_that_lacks_a_lease(
                            holder, newcomer, master, replica, sentinel, proxy, ttl
                        )
                    sentinel.close()
                replica.close()


async def _promote_a_replica_that_lacks_a_lease(
    holder: Throttle,
    newcomer: Throttle,
    master: Server,
    replica: redis.Redis,
    sentinel: redis.Redis,
    proxy: CuttingProxy,
    ttl: float,
) -> None:
    replicated = await holder.acquire(NUMBER, limit=2, timeout=0)
    h_key = holder.backend.keys_for(NUMBER)[0]  # type: ignore[attr-defined]
    await until(lambda: replica.zcard(h_key) == 1)
    proxy.sever()
    await until(lambda: replica.info("replication")["master_link_status"] == "down")
    unreplicated = await holder.acquire(NUMBER, limit=2, timeout=0)
    assert replica.zcard(h_key) == 1
    assert master.proc is not None
    master.proc.kill()
    await until(lambda: replica.info("replication")["role"] == "master", within=30)
    promoted = anyio.current_time()
    replica_port = replica.connection_pool.connection_kwargs["port"]
    await until(lambda: master_found(sentinel) == replica_port)
    assert replica.info("replication")["second_repl_offset"] != -1
    # The promoted replica lacks a lease of a call still up: it must grant nothing yet.
    with pytest.raises(AcquireTimeout) as refused:
        await newcomer.acquire(NUMBER, limit=2, timeout=0)
    assert refused.value.refused_by == "fence"
    # The holder counts the lost lease again (its connection went to another server).
    await until(lambda: replica.zcard(h_key) == 2, within=ttl)
    assert anyio.current_time() - promoted < ttl
    got: list[Lease] = []

    async def wait() -> None:
        got.append(await newcomer.acquire(NUMBER, limit=2, timeout=4 * ttl))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(wait)
        with anyio.fail_after(ttl):
            while (await newcomer.usage(NUMBER, limit=2)).waiting == 0:
                await anyio.sleep(0.02)
        while anyio.current_time() - promoted < 1.5 * ttl:  # past the fence's end
            assert await newcomer.usage(NUMBER, limit=2) == Usage(2, 2, 1)
            await anyio.sleep(0.05)
        assert not got
        assert {h.token for h in await newcomer.holders(NUMBER)} == {
            replicated.token,
            unreplicated.token,
        }
        assert await holder.release(unreplicated) is True
        await until(lambda: bool(got), within=ttl)
    assert not replicated.lost
    assert await holder.release(replicated) is True
    assert await newcomer.release(got[0]) is True
