"""Hooks: every admission, refusal, release and lost lease is told, on every backend; a failing
hook is logged once and never breaks the call."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import (
    AcquireTimeout,
    Admitted,
    Cancelled,
    Event,
    InvalidArgument,
    LeaseLost,
    NumberUnavailable,
    PoolExhausted,
    Queued,
    RateLimited,
    Reclaimed,
    Refused,
    Released,
    Throttle,
)

from ._servers import own_server

if TYPE_CHECKING:
    from .conftest import ThrottleFactory

NUMBER, OTHER = "+8657188880001", "+8657188880002"
CALLEE = "+8613800138000"


class Recorder:
    """A hook that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


async def test_admission_and_release_are_told(new_throttle: ThrottleFactory) -> None:
    hook = Recorder()
    async with new_throttle(hooks=[hook]) as throttle:
        lease = await throttle.acquire(NUMBER, token="call-1", timeout=0)
        [admitted] = hook.of(Admitted)
        assert (admitted.number, admitted.token, admitted.owner) == (
            NUMBER,
            "call-1",
            throttle.owner_id,
        )
        assert admitted.waited >= 0
        assert (admitted.pool, admitted.degraded) == (None, False)
        assert await throttle.release(lease) is True
        assert await throttle.release(lease) is False  # nothing released: nothing told
        [released] = hook.of(Released)
        assert (released.number, released.token, released.elsewhere) == (NUMBER, "call-1", False)
        assert released.held_for is not None
        assert released.held_for >= 0
        assert hook.events == [admitted, released]


async def test_a_refusal_after_waiting_says_why_and_how_long(
    new_throttle: ThrottleFactory,
) -> None:
    hook = Recorder()
    async with new_throttle(hooks=[hook]) as throttle:
        held = await throttle.acquire(NUMBER, limit=1, timeout=0)
        with pytest.raises(AcquireTimeout) as caught:
            await throttle.acquire(NUMBER, limit=1, token="late", timeout=0.2)
        [queued] = hook.of(Queued)
        assert (queued.number, queued.token) == (NUMBER, "late")
        [refused] = hook.of(Refused)
        assert (refused.number, refused.reason, refused.limit) == (NUMBER, "cap", "cap")
        assert refused.error is caught.value
        assert refused.waited >= 0.19
        with pytest.raises(AcquireTimeout):
            await throttle.acquire(NUMBER, limit=1, timeout=0)
        assert hook.of(Refused)[-1].waited < 0.19
        await throttle.release(held)
        assert len(hook.of(Admitted)) == 1


async def test_a_waiter_admitted_after_a_release_is_told_its_wait(
    new_throttle: ThrottleFactory,
) -> None:
    hook = Recorder()
    async with new_throttle(hooks=[hook]) as throttle, anyio.create_task_group() as tg:
        held = await throttle.acquire(NUMBER, limit=1, timeout=0)
        tg.start_soon(lambda: throttle.acquire(NUMBER, limit=1, token="waiter", timeout=10))
        with anyio.fail_after(5):
            while not hook.of(Queued):
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)
        await throttle.release(held)
    admitted = hook.of(Admitted)
    assert [event.token for event in admitted] == [held.token, "waiter"]
    assert admitted[1].waited >= 0.05


@pytest.mark.parametrize(
    ("config", "ask", "reason", "limit"),
    [
        (
            {"trunks": {"t": {"cap": 1}}, "numbers": {NUMBER: {"trunk": "t"}}},
            {},
            "trunk",
            "trunk:t",
        ),
        ({"profiles": {"p": {"rates": "1/minute"}}, "default_profile": "p"}, {}, "window", None),
        ({"callee": {"rates": "1/minute"}}, {"callee": CALLEE}, "callee", "1 per 60 s"),
    ],
    ids=["trunk", "window", "callee"],
)
async def test_refusals_are_sorted_by_what_refused(
    new_throttle: ThrottleFactory,
    config: dict[str, Any],
    ask: dict[str, Any],
    reason: str,
    limit: str | None,
) -> None:
    hook = Recorder()
    async with new_throttle(config=config, hooks=[hook]) as throttle:
        await throttle.acquire(NUMBER, timeout=0, **ask)
        with pytest.raises(AcquireTimeout) as caught:
            await throttle.acquire(NUMBER, timeout=0, **ask)
    [refused] = hook.of(Refused)
    assert refused.reason == reason
    assert refused.limit == (limit or caught.value.refused_by.removeprefix("rate window "))
    assert CALLEE not in refused.limit  # a label never carries the callee's number
    assert isinstance(refused.error, RateLimited) == (reason != "trunk")


async def test_an_unavailable_number_and_an_exhausted_pool_are_refusals(
    new_throttle: ThrottleFactory,
) -> None:
    hook = Recorder()
    config = {"pools": {"p": {"numbers": [OTHER]}}}
    async with new_throttle(hooks=[hook], default_limit=1, config=config) as throttle:
        await throttle.set_state(NUMBER, "flagged", reason="test")
        with pytest.raises(NumberUnavailable):
            await throttle.acquire(NUMBER, timeout=0)
        lease = await throttle.acquire_from("p", timeout=0)
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("p", token="late", timeout=0.1)
    assert [(event.number, event.token) for event in hook.of(Queued)] == [("pool:p", "late")]
    state, pool = hook.of(Refused)
    assert (state.number, state.reason, state.limit) == (NUMBER, "state", "flagged")
    assert (pool.number, pool.reason, pool.limit) == ("pool:p", "pool", "pool")
    assert pool.waited >= 0.09
    [admitted] = hook.of(Admitted)
    assert (admitted.number, admitted.pool, admitted.token) == (OTHER, "p", lease.token)


async def test_a_cancelled_waiter_is_told(new_throttle: ThrottleFactory) -> None:
    hook = Recorder()
    config = {"pools": {"p": {"numbers": [NUMBER]}}}
    async with new_throttle(hooks=[hook], default_limit=1, config=config) as throttle:
        await throttle.acquire(NUMBER, timeout=0)
        with anyio.move_on_after(0.1):
            await throttle.acquire(NUMBER)
        with anyio.move_on_after(0.1):
            await throttle.acquire_from("p")
    assert [(event.number, event.waited >= 0.09) for event in hook.of(Cancelled)] == [
        (NUMBER, True),
        ("pool:p", True),
    ]
    assert not hook.of(Refused)


async def test_a_lost_lease_is_told_with_its_reason(new_throttle: ThrottleFactory) -> None:
    hook = Recorder()
    async with new_throttle(lease_ttl=0.3, max_hold=0.3, hooks=[hook]) as throttle:
        lease = await throttle.acquire(NUMBER, timeout=0)
        with anyio.fail_after(5):
            while not hook.of(LeaseLost):
                await anyio.sleep(0.02)
        assert lease.lost
    [lost] = hook.of(LeaseLost)
    assert (lost.number, lost.token, lost.reason) == (NUMBER, lease.token, "max_hold")
    assert not hook.of(Released)


async def test_reclaim_and_releases_elsewhere_are_told(new_throttle: ThrottleFactory) -> None:
    dialer_events, survivor_events = Recorder(), Recorder()
    async with (
        new_throttle(owner_id="dialer-7", lease_ttl=0.6, hooks=[dialer_events]) as dialer,
        new_throttle(hooks=[survivor_events]) as survivor,
    ):
        first = await dialer.acquire(NUMBER, timeout=0)
        await dialer.acquire(OTHER, timeout=0)
        assert await survivor.release(first) is True
        assert await survivor.release_owner("dialer-7") == 1
        with anyio.fail_after(5):
            while len(dialer_events.of(Released)) < 2:
                await anyio.sleep(0.02)
    [reclaimed] = survivor_events.of(Reclaimed)
    assert (reclaimed.owner, reclaimed.count) == ("dialer-7", 1)
    [by_survivor] = survivor_events.of(Released)
    assert (by_survivor.token, by_survivor.held_for, by_survivor.elsewhere) == (
        first.token,
        None,
        False,
    )
    assert {(e.number, e.elsewhere) for e in dialer_events.of(Released)} == {
        (NUMBER, True),
        (OTHER, True),
    }


async def test_reclaiming_its_own_leases_tells_each_release(throttle: Throttle) -> None:
    hook = Recorder()
    throttle.add_hook(hook)
    await throttle.acquire(NUMBER, timeout=0)
    await throttle.acquire(OTHER, timeout=0)
    assert await throttle.release_owner(throttle.owner_id) == 2
    assert sorted(event.number for event in hook.of(Released)) == [NUMBER, OTHER]
    assert hook.of(Reclaimed) == [Reclaimed(throttle.owner_id, 2)]


async def test_a_failing_hook_is_logged_once_per_kind_and_breaks_nothing(
    throttle: Throttle, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("metrics store is down")

    after = Recorder()
    throttle.add_hook(broken)
    throttle.add_hook(after)
    with caplog.at_level(logging.ERROR, logger="callthrottle"):
        for _ in range(3):
            await throttle.release(await throttle.acquire(NUMBER, timeout=0))
    assert len(after.events) == 6  # the next hook still runs
    failures = [r for r in caplog.records if "hook" in r.getMessage()]
    assert sorted(r.getMessage().split(" failed on ")[1].split()[0] for r in failures) == [
        "Admitted",
        "Released",
    ]
    assert all(r.exc_info is not None for r in failures)
    throttle.remove_hook(broken)
    throttle.remove_hook(after)
    await throttle.release(await throttle.acquire(NUMBER, timeout=0))
    assert len(after.events) == 6


async def test_hooks_are_checked_and_added_once() -> None:
    hook = Recorder()
    with pytest.raises(InvalidArgument, match="hooks must be a list"):
        Throttle.from_url("memory://", hooks=hook)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="hook must be a callable"):
        Throttle.from_url("memory://", hooks=["not callable"])  # type: ignore[list-item]
    async with Throttle.from_url("memory://", hooks=[hook, hook]) as throttle:
        throttle.add_hook(hook)
        await throttle.acquire(NUMBER, timeout=0)
    assert len(hook.of(Admitted)) == 1


def test_events_are_frozen_and_slotted() -> None:
    event = Admitted(NUMBER, "t", "owner", 0.5)
    with pytest.raises(AttributeError):
        event.waited = 1.0  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    assert isinstance(event, Event)


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the Redis backend needs asyncio
async def test_degraded_leases_are_told_as_such() -> None:
    hook = Recorder()
    with own_server() as (url, server):
        async with Throttle.from_url(
            url, degraded_share=1.0, lease_ttl=0.3, max_hold=0.3, hooks=[hook]
        ) as throttle:
            server.stop()
            lease = await throttle.acquire(NUMBER, timeout=0)
            assert lease.degraded
            with anyio.fail_after(5):
                while not hook.of(LeaseLost):
                    await anyio.sleep(0.02)
            second = await throttle.acquire(NUMBER, timeout=0)
            assert await throttle.release(second) is True
            server.start()
    first, again = hook.of(Admitted)
    assert (first.degraded, again.degraded) == (True, True)
    assert hook.of(LeaseLost) == [LeaseLost(NUMBER, lease.token, "max_hold")]
    [released] = hook.of(Released)
    assert released.token == second.token
    assert released.held_for is not None
