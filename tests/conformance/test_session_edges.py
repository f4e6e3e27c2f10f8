"""Session leases at their edges: lives that ended more than once, pools asked again, places
in line left behind."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from callthrottle import AcquireTimeout, LeaseConflict, NumberUnavailable, ReleaseOutcome
from callthrottle.backends import AcquireRequest, Outcome

from .test_fifo import NUMBER
from .test_pools import NUMBERS, pools

if TYPE_CHECKING:
    from ..conftest import BackendFactory, ThrottleFactory

SESSION = "kamailio@sbc-1"
TTL = 0.4


async def test_a_lease_whose_session_lapsed_twice_since_is_still_told_expired(
    new_throttle: ThrottleFactory,
) -> None:
    """The lease lapsed with its session's first life; the session lived and lapsed once more,
    and lives again. Released well within four TTLs of its lapse, it is EXPIRED, not UNKNOWN."""
    async with (
        new_throttle(session=SESSION, lease_ttl=TTL, keepalive=False) as taker,
        new_throttle(session=SESSION, lease_ttl=TTL, keepalive=False) as keeper,
    ):
        lease = await taker.acquire(NUMBER, timeout=0)
        lapsed_at = anyio.current_time() + TTL
        await anyio.sleep(TTL + 0.1)  # the first life ended: the lease lapsed
        await keeper.keepalive()  # a second life
        await anyio.sleep(TTL + 0.1)  # it ended too
        await keeper.keepalive()  # a third life
        assert anyio.current_time() - lapsed_at < 2 * TTL  # well within four TTLs
        assert await taker.end_call(lease) is ReleaseOutcome.EXPIRED


async def test_a_pool_slot_asked_again_after_a_ttl_is_the_slot_held(
    new_throttle: ThrottleFactory,
) -> None:
    """A token holds at most one slot of a pool: asked again while its session lease is live
    (past one TTL, the session kept alive), the pick returns that slot, not a second one."""
    async with new_throttle(config=pools(), session=SESSION, lease_ttl=TTL) as throttle:
        held = await throttle.acquire_from("a", token="call-1", timeout=0)
        await anyio.sleep(TTL * 2)  # the heartbeat keeps the session alive meanwhile
        assert [h.token for h in await throttle.holders(held.number)] == ["call-1"]
        try:
            again = await throttle.acquire_from("a", token="call-1", timeout=0)
        except LeaseConflict:
            again = None
        live = {n: (await throttle.usage(n)).in_use for n in NUMBERS}
        assert sum(live.values()) == 1, live
        assert again is None or again.number == held.number


async def test_a_pool_slot_asked_again_past_its_max_hold_is_not_returned_uncounted(
    new_throttle: ThrottleFactory,
) -> None:
    """The session lives on, but the lease reached its max_hold and stopped counting: a pick
    asked again for the token must not hand back that dead slot as granted (the call would run
    uncounted): whatever it returns is counted."""
    async with new_throttle(
        config=pools(), session=SESSION, lease_ttl=TTL, max_hold=0.1
    ) as throttle:
        held = await throttle.acquire_from("a", token="call-1", timeout=0)
        await anyio.sleep(0.2)  # past max_hold, within the pick's memory of the slot (a TTL)
        assert (await throttle.usage(held.number)).in_use == 0
        again = await throttle.acquire_from("a", token="call-1", timeout=0)
        assert [h.token for h in await throttle.holders(again.number)] == ["call-1"]


async def test_an_acquire_asked_again_on_a_disabled_number_is_refused_once_its_session_lapsed(
    new_throttle: ThrottleFactory,
) -> None:
    """A token whose session lease lapsed (nobody kept the session alive) holds nothing: asked
    again (a retransmitted INVITE) on a number disabled meanwhile, it is refused, not told it holds
    a slot that no longer counts."""
    async with (
        new_throttle(session=SESSION, lease_ttl=TTL, keepalive=False) as taker,
        new_throttle(session=SESSION, lease_ttl=TTL, keepalive=False) as other_process,
        new_throttle() as admin,
    ):
        await taker.acquire(NUMBER, token="call-1", timeout=0)
        await admin.set_state(NUMBER, "disabled")
        await anyio.sleep(TTL + 0.1)  # the session's life ended
        assert (await admin.usage(NUMBER)).in_use == 0
        with pytest.raises(NumberUnavailable):
            await other_process.acquire(NUMBER, token="call-1", timeout=0)


async def test_reset_counts_no_lease_of_a_lapsed_session(new_throttle: ThrottleFactory) -> None:
    """reset() returns the live leases it removed: a session lease whose session lapsed is not
    one (usage and holders already leave it out)."""
    async with (
        new_throttle(session=SESSION, lease_ttl=TTL, keepalive=False) as taker,
        new_throttle() as admin,
    ):
        await taker.acquire(NUMBER, token="call-1", timeout=0)
        await anyio.sleep(TTL + 0.1)
        assert (await admin.usage(NUMBER)).in_use == 0
        assert await admin.holders(NUMBER) == []
        assert await admin.reset(NUMBER) == (0, 0)


async def test_a_lapsed_lease_is_told_expired_once_when_an_earlier_one_of_its_token_lapsed_too(
    new_throttle: ThrottleFactory,
) -> None:
    """Two leases of one token (a Call-ID used again) each lapsed with their session's life:
    the first is cleared away by an acquire, the second is found by its release. That release
    says EXPIRED; the next finds nothing (a lapse is told once), as for any lease."""
    async with (
        new_throttle(session=SESSION, lease_ttl=TTL, keepalive=False) as first_process,
        new_throttle(session=SESSION, lease_ttl=TTL, keepalive=False) as second_process,
        new_throttle() as other,
    ):
        await first_process.acquire(NUMBER, token="call-1", limit=1, timeout=0)
        await anyio.sleep(TTL + 0.1)  # the session's first life ended
        cleared = await other.acquire(NUMBER, limit=1, timeout=0)  # clears the lapsed lease
        assert await other.end_call(cleared) is ReleaseOutcome.RELEASED
        lease = await second_process.acquire(NUMBER, token="call-1", limit=1, timeout=0)
        await anyio.sleep(TTL + 0.1)  # the second life ended too
        assert await second_process.end_call(lease) is ReleaseOutcome.EXPIRED
        assert await second_process.end_call(lease) is ReleaseOutcome.UNKNOWN


async def test_least_loaded_counts_no_lease_of_a_lapsed_session(
    new_throttle: ThrottleFactory,
) -> None:
    """A pool's least-loaded order counts live leases: a lease of a session that lapsed is no
    load. With every number holding one live call but one, whose only lease lapsed with its
    session, the next pick takes that one."""
    async with (
        new_throttle(config=pools(), session=SESSION, lease_ttl=TTL, keepalive=False) as taker,
        new_throttle(config=pools()) as other,
    ):
        lapsing = await taker.acquire_from("a", timeout=0)
        await anyio.sleep(TTL + 0.1)  # the session lapsed: its lease no longer counts
        leases = [await other.acquire_from("a", timeout=0) for _ in NUMBERS]
        assert {lease.number for lease in leases} == set(NUMBERS)
        on_lapsed = next(lease for lease in leases if lease.number == lapsing.number)
        assert await other.end_call(on_lapsed) is ReleaseOutcome.RELEASED
        loads = {n: (await other.usage(n)).in_use for n in NUMBERS}
        assert loads[lapsing.number] == 0
        assert sorted(loads.values()) == [0, 1, 1, 1, 1]
        picked = await other.acquire_from("a", timeout=0)
        assert picked.number == lapsing.number, loads


async def test_a_pick_asked_again_past_max_hold_keeps_the_cap(
    new_throttle: ThrottleFactory,
) -> None:
    """The cap, through a pool of one number with cap 2: the session's lease reached its
    max_hold (it no longer counts) and another caller took a slot; the session's pick asked
    again for its token is granted, and must be counted: a third call is then refused. Asked
    again while the pick still remembers the slot (within a TTL), the dead lease is handed back
    uncounted, and the third call is admitted: three calls up on a cap of 2."""
    config = {"pools": {"one": {"numbers": NUMBERS[:1]}}}
    async with (
        new_throttle(
            config=config, default_limit=2, session=SESSION, lease_ttl=TTL, max_hold=0.1
        ) as dialer,
        new_throttle(config=config, default_limit=2) as other,
    ):
        await dialer.acquire_from("one", token="call-1", timeout=0)
        await anyio.sleep(0.2)  # max_hold reached; the pick still remembers the slot (a TTL)
        first = await other.acquire(NUMBERS[0], timeout=0)
        again = await dialer.acquire_from("one", token="call-1", timeout=0)
        assert again.number == NUMBERS[0]
        with pytest.raises(AcquireTimeout):
            await other.acquire(NUMBERS[0], timeout=0)  # first and call-1 are up: the cap
        assert await other.end_call(first) is ReleaseOutcome.RELEASED


async def test_a_session_throttle_forgets_leases_that_ended_elsewhere(
    new_throttle: ThrottleFactory,
) -> None:
    """A long-lived session throttle that places calls whose hang-ups another process of the
    session handles (the webhook recipe) must not keep every lease it ever took: once they
    were released elsewhere or lapsed, ``held`` no longer lists them and their tokens may be
    used again from this throttle."""
    async with (
        new_throttle(session=SESSION, lease_ttl=TTL) as dialer,
        new_throttle(session=SESSION, lease_ttl=TTL, keepalive=False) as callbacks,
    ):
        leases = [await dialer.acquire(NUMBER, token=f"call-{i}", timeout=0) for i in range(3)]
        for lease in leases:
            assert await callbacks.end_call(lease) is ReleaseOutcome.RELEASED
        await anyio.sleep(TTL)  # a heartbeat or more
        assert dialer.held == ()
        again = await dialer.acquire(NUMBER, token="call-0", timeout=0)
        assert await dialer.end_call(again) is ReleaseOutcome.RELEASED


async def test_a_slot_granted_to_a_session_waiter_that_never_asks_again_lapses(
    new_backend: BackendFactory,
) -> None:
    """A process of the session queued for a slot and died (or gave up without withdrawing):
    its place lapses within a TTL, as anyone's. A slot that frees meanwhile and is handed to
    it is never claimed: it must not be counted for as long as the session is kept alive (up
    to max_hold, a day by default), but lapse as an unclaimed grant of any throttle does."""
    backend = new_backend()
    try:
        held = await backend.acquire(
            AcquireRequest(NUMBER, "call-1", "dialer-1", 1, TTL, None), enqueue=False
        )
        assert held.outcome is Outcome.GRANTED
        queued = await backend.acquire(
            AcquireRequest(NUMBER, "call-2", SESSION, 1, TTL, None, session=True), enqueue=True
        )
        assert queued.outcome is Outcome.QUEUED
        # The waiter's process dies here. The slot frees: it is handed to the dead waiter.
        await backend.release(NUMBER, "call-1", "dialer-1")
        for _ in range(9):  # three TTLs; the session's other processes keep it alive
            await backend.keepalive(SESSION, TTL)
            await anyio.sleep(TTL / 3)
        assert (await backend.usage(NUMBER, 1)).in_use == 0
    finally:
        await backend.aclose()
