"""Waiting: one first-come-first-served line per number, woken by notification."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import AcquireTimeout, Lease, Reaction, Throttle, ThrottleError, Usage
from callthrottle.backends import AcquireRequest, Outcome, ReleaseState

if TYPE_CHECKING:
    from callthrottle.backends import Backend

    from ..conftest import BackendFactory, ThrottleFactory

NUMBER = "+8657188880001"


async def wait_for_waiting(throttle: Throttle, count: int, limit: int = 1) -> None:
    """Wait until the backend shows ``count`` callers in line (state, not sleeps)."""
    with anyio.fail_after(5):
        while (await throttle.usage(NUMBER, limit=limit)).waiting != count:
            await anyio.sleep(0.005)


async def test_waiters_are_served_in_arrival_order(new_throttle: ThrottleFactory) -> None:
    order: list[str] = []
    async with new_throttle() as first, new_throttle() as second:
        held = await first.acquire(NUMBER, limit=1, timeout=0)

        async def waiter(throttle: Throttle, name: str) -> None:
            async with throttle.slot(NUMBER, limit=1, timeout=10):
                order.append(name)

        async with anyio.create_task_group() as tg:
            for index, name in enumerate(["a", "b", "c", "d", "e"]):
                tg.start_soon(waiter, second if index % 2 else first, name)
                await wait_for_waiting(first, index + 1)
            await first.release(held)
    assert order == ["a", "b", "c", "d", "e"]


async def test_try_once_does_not_jump_the_line(throttle: Throttle) -> None:
    """A free slot already promised to a queued caller is not taken by a non-blocking one."""
    held = await throttle.acquire(NUMBER, limit=1, timeout=0)
    granted: list[Lease] = []

    async def waiter() -> None:
        granted.append(await throttle.acquire(NUMBER, limit=1, timeout=10))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await wait_for_waiting(throttle, 1)
        with pytest.raises(AcquireTimeout):
            await throttle.acquire(NUMBER, limit=1, timeout=0)
        await throttle.release(held)
        with pytest.raises(AcquireTimeout):  # the slot went to the waiter, not to us
            await throttle.acquire(NUMBER, limit=1, timeout=0)
    assert len(granted) == 1
    assert (await throttle.usage(NUMBER, limit=1)).in_use == 1


async def test_release_wakes_a_waiter_in_another_throttle_promptly(
    new_throttle: ThrottleFactory,
) -> None:
    """Hand-off is by notification: with 60 s leases, only a notification can be this fast."""
    async with (
        new_throttle(lease_ttl=60) as holder_side,
        new_throttle(lease_ttl=60) as waiter_side,
    ):
        held = await holder_side.acquire(NUMBER, limit=1, timeout=0)
        got: list[float] = []

        async def waiter() -> None:
            await waiter_side.acquire(NUMBER, limit=1, timeout=30)
            got.append(anyio.current_time())

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await wait_for_waiting(holder_side, 1)
            released_at = anyio.current_time()
            await holder_side.release(held)
        assert got[0] - released_at < 2.0


async def test_waiter_times_out_and_leaves_the_line(throttle: Throttle) -> None:
    await throttle.acquire(NUMBER, limit=1, timeout=0)
    start = anyio.current_time()
    with pytest.raises(AcquireTimeout, match=r"within 0\.2 s") as caught:
        await throttle.acquire(NUMBER, limit=1, timeout=0.2)
    assert anyio.current_time() - start >= 0.19
    assert caught.value.number == NUMBER
    assert caught.value.timeout == 0.2
    assert isinstance(caught.value, TimeoutError)
    assert (await throttle.usage(NUMBER, limit=1)).waiting == 0


async def test_many_waiters_all_get_served(new_throttle: ThrottleFactory) -> None:
    served = 0

    async def caller(throttle: Throttle) -> None:
        nonlocal served
        async with throttle.slot(NUMBER, limit=2, timeout=30):
            await anyio.sleep(0.001)
            served += 1

    async with new_throttle() as first, new_throttle() as second, anyio.create_task_group() as tg:
        for index in range(60):
            tg.start_soon(caller, first if index % 3 else second)
    assert served == 60


class _DeafBackend:
    """Wraps a backend so that no notification ever reaches the throttle (lost pub/sub)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def listen(self, owner: str, listener: Any, *, task_status: Any) -> None:
        await self._inner.listen(owner, lambda *event: None, task_status=task_status)


async def test_lost_notification_delays_but_never_strands_a_waiter(
    new_backend: BackendFactory, new_throttle: ThrottleFactory
) -> None:
    deaf = _DeafBackend(new_backend())
    async with (
        new_throttle(lease_ttl=0.6) as holder_side,
        Throttle(deaf, lease_ttl=0.6, close_backend=True) as waiter_side,
    ):
        held = await holder_side.acquire(NUMBER, limit=1, timeout=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(waiter_side.acquire, NUMBER, limit=1, timeout=5))
            await wait_for_waiting(holder_side, 1)
            await holder_side.release(held)
        assert len(waiter_side.held) == 1


async def test_closing_the_throttle_stops_its_waiters(new_throttle: ThrottleFactory) -> None:
    errors: list[BaseException] = []
    async with new_throttle() as observer:
        await observer.acquire(NUMBER, limit=1, timeout=0)
        closing = new_throttle()

        async def waiter() -> None:
            try:
                await closing.acquire(NUMBER, limit=1, timeout=30)
            except ThrottleError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            await closing.__aenter__()
            tg.start_soon(waiter)
            await wait_for_waiting(observer, 1)
            await closing.__aexit__(None, None, None)
        assert len(errors) == 1
        assert "not open" in str(errors[0])
        assert (await observer.usage(NUMBER, limit=1)).waiting == 0


async def test_slot_handed_to_a_dead_waiter_comes_back_at_its_expiry(
    new_throttle: ThrottleFactory, new_backend: BackendFactory
) -> None:
    """The head of the line died: it is granted the slot as a lease nobody renews. The next
    waiter is nudged to time its wait from that lease, and gets the slot when it expires, long
    before its own throttle's heartbeat (20 s here) would notice."""
    dead = new_backend()
    await dead.open()
    async with new_throttle(lease_ttl=60) as holder_side, new_throttle(lease_ttl=60) as live:
        held = await holder_side.acquire(NUMBER, limit=1, timeout=0)
        await dead.acquire(
            AcquireRequest(NUMBER, "dead-call", "dead-owner", 1, 0.5, None), enqueue=True
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(live.acquire, NUMBER, limit=1, timeout=10))
            await wait_for_waiting(holder_side, 2)
            released_at = anyio.current_time()
            await holder_side.release(held)
        assert len(live.held) == 1
        assert 0.4 < anyio.current_time() - released_at < 2.5
    await dead.aclose()


async def test_a_removed_cap_no_longer_governs_the_line(new_throttle: ThrottleFactory) -> None:
    """A waiter is judged by the cap in force when a slot frees, not by the one in force when
    it queued: once a raised cap is removed, nobody is admitted until usage falls under the
    caller's own cap again."""
    async with new_throttle() as holder, new_throttle() as waiter_side:
        await holder.set_cap(NUMBER, 4)
        held = [await holder.acquire(NUMBER, limit=2, timeout=0) for _ in range(4)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(waiter_side.acquire, NUMBER, limit=2, timeout=10))
            await wait_for_waiting(holder, 1, limit=2)
            await holder.set_cap(NUMBER, None)
            await holder.release(held[0])
            assert await holder.usage(NUMBER, limit=2) == Usage(in_use=3, limit=2, waiting=1)
            await holder.release(held[1])
            assert await holder.usage(NUMBER, limit=2) == Usage(in_use=2, limit=2, waiting=1)
            await holder.release(held[2])  # now under the cap: the waiter is admitted
        assert await holder.usage(NUMBER, limit=2) == Usage(in_use=2, limit=2, waiting=0)


async def test_a_waiter_is_admitted_when_a_lowered_cap_lapses(
    new_throttle: ThrottleFactory,
) -> None:
    """A caller that queued under a cap lowered by a carrier's answer gets its slot when the
    lowered cap lapses, not a lease's lifetime later (60 s here)."""
    feedback = {477: Reaction("lower_cap", seconds=0.4, cap=1)}
    async with (
        new_throttle(feedback=feedback, lease_ttl=60) as holder,
        new_throttle(lease_ttl=60) as waiter_side,
    ):
        await holder.acquire(NUMBER, limit=2, timeout=0)
        await holder.report(NUMBER, 477)
        started = anyio.current_time()
        await waiter_side.acquire(NUMBER, limit=2, timeout=5)
        assert 0.3 < anyio.current_time() - started < 2.5
        assert (await holder.usage(NUMBER, limit=2)).in_use == 2


class _ReleasesDuringTheAsk:
    """A backend on which, while one acquire of ``token`` is on its way back, another process
    releases ``held``: the event the release sends (a nudge to ask again) reaches the waiter
    before the acquire's reply, which still says "queued" (it was decided before the release)."""

    def __init__(self, inner: Backend, token: str) -> None:
        self._inner = inner
        self._token = token
        self.held: tuple[str, str, str] | None = None  # number, token, owner of the lease

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def acquire(self, request: AcquireRequest, *, enqueue: bool) -> Any:
        reply = await self._inner.acquire(request, enqueue=enqueue)
        if (
            request.token == self._token
            and self.held is not None
            and reply.outcome is Outcome.QUEUED
        ):
            held, self.held = self.held, None
            assert await self._inner.release(*held) == ReleaseState.RELEASED
            await anyio.sleep(0.3)  # the release's event arrives (on Redis, by pub/sub)
        return reply


async def test_a_nudge_that_arrives_while_the_waiter_asks_is_not_lost(
    new_backend: BackendFactory,
) -> None:
    """A caller with rate windows is never handed a slot: when one frees, it is told to take it
    itself. If that word comes while its previous ask is still on its way back (saying
    "queued", with the holder's lease 60 s from expiring), it must still ask again at once,
    not sleep until the lease would have expired."""
    config = {"profiles": {"p": {"rates": "100/minute"}}, "default_profile": "p"}
    backend = _ReleasesDuringTheAsk(new_backend(), "waiter")
    async with (
        Throttle(new_backend(), config=config, lease_ttl=60, close_backend=True) as holder,
        Throttle(backend, config=config, lease_ttl=60, close_backend=True) as waiter_side,
    ):
        held = await holder.acquire(NUMBER, limit=1, timeout=0)
        backend.held = (NUMBER, held.token, holder.owner_id)
        with anyio.fail_after(5):
            lease = await waiter_side.acquire(NUMBER, token="waiter", limit=1, timeout=10)
        assert lease.token == "waiter"
        assert await waiter_side.release(lease) is True
