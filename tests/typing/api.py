"""Checks the public API's type annotations with mypy. It is NOT meant to be executed."""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_type

from callthrottle import (
    AcquireTimeout,
    Admitted,
    Config,
    Event,
    Lease,
    NumberState,
    NumberStatus,
    NumberUnavailable,
    Reaction,
    Refused,
    ReleaseOutcome,
    Throttle,
    Usage,
)
from callthrottle.prometheus import PrometheusHook
from callthrottle.sync import SyncThrottle

if TYPE_CHECKING:
    from callthrottle.backends import Backend, MemoryBackend, RedisBackend


async def uses_the_api(url: str) -> None:
    throttle = Throttle.from_url(url, default_limit=20, lease_ttl=30.0)
    async with throttle as opened:
        assert_type(opened, Throttle)
        async with opened.slot("+8657188880001", timeout=5.0, limit=3) as lease:
            assert_type(lease, Lease)
        lease = await opened.acquire("+8657188880001", token="call-42", timeout=0)
        assert_type(await opened.release(lease), bool)
        assert_type(await opened.usage("+8657188880001"), Usage)
        assert_type(await opened.release_owner(opened.owner_id), int)
        assert_type(lease.lost, bool)
        assert_type(lease.lost_reason, str | None)
        async with opened.slot("057188880001", callee="+8613800138000", priority=1):
            pass
        await opened.set_cap("+8657188880001", 15)
        await opened.set_rates("+8657188880001", "1/second;500/day")
        await opened.set_state("+8657188880001", NumberState.COOLING, reason="477", duration=60)
        assert_type(await opened.status("+8657188880001"), NumberStatus)
        assert_type(await opened.report("+8657188880001", 607), Reaction | None)
        assert_type(await opened.group_usage("trunk", "trunk-400"), Usage)
        await opened.set_group_cap("trunk", "trunk-400", 18)
    async with Throttle.from_url(url, session="kamailio@sbc-1", keepalive=False) as session:
        assert_type(session.session, str | None)
        lease = await session.acquire("+8657188880001", timeout=0)
        await session.keepalive()
        assert_type(await session.end_call(lease), ReleaseOutcome)


def configures(path: str) -> Throttle:
    config = Config.from_toml(path)
    assert_type(config.cap_for("+8657188880001", default=20), int)
    return Throttle.from_url("memory://", config=config, default_region="CN")


def backends_fulfil_the_protocol(memory: MemoryBackend, redis_backend: RedisBackend) -> None:
    first: Backend = memory
    second: Backend = redis_backend
    Throttle(first)
    Throttle(second)


def observes(throttle: Throttle) -> None:
    def count(event: Event) -> None:
        if isinstance(event, Admitted):
            assert_type(event.waited, float)
            assert_type(event.pool, str | None)
        elif isinstance(event, Refused):
            assert_type(event.reason, str)
            assert_type(event.error, AcquireTimeout | NumberUnavailable)

    throttle.add_hook(count)
    throttle.add_hook(PrometheusHook(per_number=False))
    throttle.remove_hook(count)
    Throttle.from_url("memory://", hooks=[count, print])


def blocks(url: str) -> None:
    with SyncThrottle.from_url(url, default_limit=3) as throttle:
        with throttle.slot("+8657188880001", timeout=5.0, limit=2) as lease:
            assert_type(lease, Lease)
        assert_type(throttle.acquire_from("pool", strategy="local"), Lease)
        assert_type(throttle.group_usage("trunk", "t"), Usage)
        assert_type(throttle.owner_id, str)
    with SyncThrottle.from_url(url, session="kamailio@sbc-1") as in_session:
        held = in_session.acquire("+8657188880001", timeout=0)
        in_session.keepalive()
        assert_type(in_session.end_call(held), ReleaseOutcome)
