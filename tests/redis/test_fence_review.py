"""Holes a review found in the fence: each test says what must hold (each failed before the
fix it led to)."""

from __future__ import annotations

import anyio
import pytest

import redis
from callthrottle import AcquireTimeout, Throttle

from .._servers import own_server
from ._fence import (
    NUMBER,
    TTL,
    delete_the_library,
    eventually,
    redis_backend,
    refused_at_once,
    restart,
)
from ._proxy import CuttingProxy

pytestmark = [pytest.mark.redis, pytest.mark.slow]


async def test_a_session_worker_without_keepalive_counts_its_leases_again_after_a_flush(
    prefix: str,
) -> None:
    """The documented pattern for a proxy: workers take the session's leases with
    ``keepalive=False``, a timer (here another throttle of the session) keeps the session alive.
    A flush drops the worker's lease, no connection is replaced: once the fence is over the
    number must still be full (the worker's call is up)."""
    with own_server() as (url, _):
        client = redis.Redis.from_url(url)
        async with (
            Throttle.from_url(
                url, key_prefix=prefix, session="sbc-1", keepalive=False, lease_ttl=TTL
            ) as worker,
            Throttle.from_url(url, key_prefix=prefix, session="sbc-1", lease_ttl=TTL) as keeper,
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as newcomer,
        ):
            held = await worker.acquire(NUMBER, limit=1, timeout=0)
            await keeper.keepalive()
            client.flushall()
            with pytest.raises(AcquireTimeout):
                await newcomer.acquire(NUMBER, limit=1, timeout=1.5 * TTL)  # past the fence
            assert [h.owner for h in await newcomer.holders(NUMBER)] == ["sbc-1"]
            assert not held.lost
        client.close()


async def test_a_flush_seen_first_by_a_renewal_of_a_library_that_knows_no_ttl_yet(
    prefix: str,
) -> None:
    """The library is loaded again on a server up longer than a lease TTL (it knows no TTL: no
    acquire, restore or keep-alive came since); a holder's renewals load it and look at the
    marker. A flush then: the renewal that sees it must answer LOST, so that the holder counts
    its lease again before the fence (begun by the next acquire) ends."""
    with own_server() as (url, _):
        client = redis.Redis.from_url(url)
        await eventually(lambda: client.info("server")["uptime_in_seconds"] > TTL)
        async with (
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as holder,
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as newcomer,
        ):
            held = await holder.acquire(NUMBER, limit=1, timeout=0)
            delete_the_library(client)
            await anyio.sleep(TTL / 2)  # a renewal loaded it again, and saw the marker
            assert client.function_list()
            client.flushall()
            await anyio.sleep(TTL / 2)  # a renewal saw the flush
            with pytest.raises(AcquireTimeout):
                await newcomer.acquire(NUMBER, limit=1, timeout=1.5 * TTL)  # past the fence
            assert [h.token for h in await newcomer.holders(NUMBER)] == [held.token]
            assert not held.lost
        client.close()


async def test_a_flush_just_after_a_lift_is_seen_on_another_prefix(prefix: str) -> None:
    """Lifting the fence (nothing was fenced: a deployment of another key prefix, say) speaks of
    the past: a flush after it drops the leases of calls still up on the first prefix, whose
    holder must count them again before a newcomer gets in."""
    with own_server() as (url, _):
        client = redis.Redis.from_url(url)
        async with (
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as holder,
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as newcomer,
            Throttle.from_url(url, key_prefix=prefix + "b:", lease_ttl=TTL) as deployer,
        ):
            held = await holder.acquire(NUMBER, limit=1, timeout=0)
            await redis_backend(deployer).lift_fence()
            client.flushall()
            with pytest.raises(AcquireTimeout):
                await newcomer.acquire(NUMBER, limit=1, timeout=1.5 * TTL)
            assert [h.token for h in await newcomer.holders(NUMBER)] == [held.token]
            assert not held.lost
        client.close()


async def test_a_user_kept_to_its_own_keys_leaves_the_flush_of_another_prefix_seen(
    prefix: str,
) -> None:
    """An ACL user whose keys are its own numbers' (its prefix's hash-tagged keys) cannot read
    its prefix's marker: its calls go through, but the flush of another user's prefix on the
    same server must still fence that prefix."""
    tenant_prefix = prefix + "b:"
    with own_server() as (url, _):
        admin = redis.Redis.from_url(url)
        admin.acl_setuser(
            "tenant", enabled=True, passwords=["+secret"], commands=["+@all"],
            keys=[tenant_prefix + "{*"], channels=["*"],
        )  # fmt: skip
        limited = url.replace("redis://", "redis://tenant:secret@")
        async with (
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as holder,
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as newcomer,
            Throttle.from_url(limited, key_prefix=tenant_prefix, lease_ttl=TTL) as tenant,
        ):
            held = await holder.acquire(NUMBER, limit=1, timeout=0)
            await tenant.release(await tenant.acquire(NUMBER, limit=1, timeout=0))
            admin.flushall()
            with pytest.raises(AcquireTimeout):
                await newcomer.acquire(NUMBER, limit=1, timeout=1.5 * TTL)
            assert [h.token for h in await newcomer.holders(NUMBER)] == [held.token]
            assert not held.lost
        admin.close()


async def test_a_flush_soon_after_a_restart_that_lost_nothing(prefix: str) -> None:
    """A restart with persistence loses nothing: the holder's renewals find its lease (no
    acquire came since, so the library knows no TTL). A flush then: the renewal that sees it
    must answer LOST, so that the holder counts its lease again before a newcomer gets in."""
    with own_server(persistent=True) as (url, server):
        async with (
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as holder,
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as newcomer,
        ):
            held = await holder.acquire(NUMBER, limit=1, timeout=0)
            restart(server)
            client = redis.Redis.from_url(url)
            await anyio.sleep(TTL / 2)  # the holder reconnected, renewed: its lease was kept
            assert client.exists(prefix + "fence")
            client.flushall()
            await anyio.sleep(TTL / 2)  # a renewal saw the flush
            with pytest.raises(AcquireTimeout):
                await newcomer.acquire(NUMBER, limit=1, timeout=1.5 * TTL)  # past the fence
            assert [h.token for h in await newcomer.holders(NUMBER)] == [held.token]
            assert not held.lost
        client.close()


async def test_a_release_owner_first_after_a_restart_keeps_the_fence(prefix: str) -> None:
    """An operator cleans up after a crashed dialer (``release_owner``) just after a restart
    without persistence; the holder of a call still up is cut off meanwhile. The restart's
    fence must still keep a newcomer out until the holder could count its lease again."""
    with own_server() as (url, server):
        proxy = CuttingProxy.in_front_of(url)
        async with (
            proxy.running(),
            Throttle.from_url(proxy.url, key_prefix=prefix, lease_ttl=TTL) as holder,
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as newcomer,
            Throttle.from_url(url, key_prefix=prefix, lease_ttl=TTL) as operator,
        ):
            await holder.acquire(NUMBER, limit=1, timeout=0)
            proxy.sever()
            restart(server)
            assert await operator.release_owner("dialer-7:4242:9f3a01bc") == 0
            await anyio.sleep(0.01)  # a newcomer a few milliseconds later (else by chance the same)
            assert await refused_at_once(newcomer, limit=1)
            proxy.mend()
