"""Redis restarted under a running throttle, with and without persistence."""

from __future__ import annotations

import anyio
import pytest

from callthrottle import AcquireTimeout, BackendUnavailable, Throttle, Usage

from .._servers import own_server
from ._proxy import CuttingProxy

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"
OTHER = "+8657188880002"


async def test_a_restart_without_persistence_fails_calls_then_recovers_by_itself() -> None:
    """While the server is down, calls fail at once with BackendUnavailable; when it is back
    (empty), the same throttle works again without being reopened, and the lease the server
    forgot is reported lost, never silently treated as held (with ``restore_leases=False``;
    the next test shows the default)."""
    with own_server() as (url, server):
        async with Throttle.from_url(url, lease_ttl=0.9, restore_leases=False) as throttle:
            held = await throttle.acquire(NUMBER, timeout=0)
            server.stop()
            started = anyio.current_time()
            with pytest.raises(BackendUnavailable):
                await throttle.acquire(NUMBER, token="while-down", timeout=0)
            assert anyio.current_time() - started < 2.0
            server.start()
            assert (await throttle.usage(NUMBER)).in_use == 0  # the server forgot the lease
            with anyio.fail_after(3):
                while not held.lost:
                    await anyio.sleep(0.05)
            assert held.lost_reason == "backend"
            again = await throttle.acquire(NUMBER, timeout=3)  # after the fence (0.9 s)
            assert (await throttle.usage(NUMBER)).in_use == 1
            assert await throttle.release(again) is True


async def test_leases_the_server_forgot_are_counted_again_by_their_holders() -> None:
    """A restart without persistence forgets the leases of calls still up. Each holder counts
    its own again at its next heartbeat (even past the cap); until they had the time to, the
    server admits no new call (the fence), so nobody takes the slot of a call still up. The
    lease stays held and releases normally.

    The holder reaches the server through a proxy that is severed across the restart, so that
    a newcomer asks before the holder can count its lease again (otherwise the holder's
    heartbeat, which runs at once on a reconnect, may come first: the order is the network's,
    not the test's)."""
    with own_server() as (url, server):
        proxy = CuttingProxy.in_front_of(url)
        config = {"trunks": {"main": {"cap": 5}}, "numbers": {OTHER: {"trunk": "main"}}}
        async with proxy.running():
            via_proxy = proxy.url
            async with (
                Throttle.from_url(via_proxy, lease_ttl=2, max_hold=60, config=config) as holder,
                Throttle.from_url(url, lease_ttl=0.9, config=config) as other,
            ):
                first = await holder.acquire(NUMBER, limit=1, timeout=0)
                on_trunk = await holder.acquire(OTHER, timeout=0)
                proxy.sever()
                server.stop()
                server.start()
                # Before the holder's heartbeat: the server has forgotten, and fences.
                assert (await other.usage(NUMBER, limit=1)).in_use == 0
                with pytest.raises(AcquireTimeout) as fenced:
                    await other.acquire(NUMBER, limit=1, timeout=0)
                assert fenced.value.refused_by == "fence"
                proxy.mend()
                with anyio.fail_after(5):
                    while (await other.usage(NUMBER, limit=1)).in_use < 1:
                        await anyio.sleep(0.05)
                with anyio.fail_after(5):
                    while (await other.group_usage("trunk", "main")).in_use < 1:
                        await anyio.sleep(0.05)
                assert not first.lost
                assert not on_trunk.lost
                assert first in holder.held
                # Counted again, they live on past the fence: renewed by the heartbeat,
                # released normally; the number stays full until then.
                await anyio.sleep(2.5)
                assert await other.usage(NUMBER, limit=1) == Usage(in_use=1, limit=1, waiting=0)
                with pytest.raises(AcquireTimeout) as full:
                    await other.acquire(NUMBER, limit=1, timeout=0)
                assert full.value.refused_by == "cap"
                assert await holder.release(first) is True
                assert await holder.release(on_trunk) is True
                assert (await other.usage(NUMBER, limit=1)).in_use == 0
                assert (await other.group_usage("trunk", "main")).in_use == 0
                newcomer = await other.acquire(NUMBER, limit=1, timeout=0)
                assert await other.release(newcomer) is True


async def test_a_restart_with_persistence_keeps_the_leases() -> None:
    with own_server(persistent=True) as (url, server):
        async with Throttle.from_url(url, lease_ttl=5) as throttle:
            held = await throttle.acquire(NUMBER, timeout=0)
            server.stop()
            server.start()
            assert (await throttle.usage(NUMBER)).in_use == 1
            assert not held.lost
            assert await throttle.release(held) is True
            assert (await throttle.usage(NUMBER)).in_use == 0


async def test_session_leases_the_server_forgot_are_counted_again_by_their_session() -> None:
    """A session's leases are not renewed one by one, so a restart without persistence that
    forgot them is noticed by the connection's replacement: the session's throttle looks for
    its leases at once and counts the missing ones again, as its session's. New calls wait
    meanwhile (the fence), and after it the number is still full."""
    with own_server() as (url, server):
        async with (
            Throttle.from_url(url, session="sbc-1", lease_ttl=1, max_hold=60) as holder,
            Throttle.from_url(url, lease_ttl=1) as other,
        ):
            lease = await holder.acquire(NUMBER, limit=1, timeout=0)
            server.stop()
            server.start()
            with anyio.fail_after(5):
                while (await other.usage(NUMBER, limit=1)).in_use < 1:
                    await anyio.sleep(0.05)
            await anyio.sleep(1.5)  # past the fence and the session's TTL: kept alive
            assert (await other.usage(NUMBER, limit=1)).in_use == 1
            with pytest.raises(AcquireTimeout):
                await other.acquire(NUMBER, limit=1, timeout=0)
            assert [h.owner for h in await other.holders(NUMBER)] == ["sbc-1"]
            assert await holder.release(lease) is True
            again = await other.acquire(NUMBER, limit=1, timeout=0)
            assert await other.release(again) is True
