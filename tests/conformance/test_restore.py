"""Counting again a lease the backend lost while its call is up (``Backend.restore``): what a
throttle does at its heartbeat after a Redis restart without persistence or a failover (see
tests/redis/test_restart.py for the whole story on a real restart)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from callthrottle import AcquireTimeout, Config, InvalidArgument, Throttle, Usage
from callthrottle.backends import AcquireRequest, ReleaseState, RenewState, RestoreOutcome

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

NUMBER = "+8657188880001"
NEIGHBOUR = "+8657188880002"


async def test_a_restored_lease_is_counted_even_past_the_cap(throttle: Throttle) -> None:
    backend = throttle.backend
    held = await throttle.acquire(NUMBER, limit=1, timeout=0)
    outcome = await backend.restore(
        AcquireRequest(NUMBER, "lost-call", "elsewhere", 1, 30, None), age=12.0
    )
    assert outcome is RestoreOutcome.RESTORED
    assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=2, limit=1, waiting=0)
    restored = {h.token: h for h in await throttle.holders(NUMBER)}["lost-call"]
    assert restored.age == pytest.approx(12.0, abs=1.0)  # as its holder reported it
    with pytest.raises(AcquireTimeout):
        await throttle.acquire(NUMBER, limit=1, timeout=0)
    # It is a lease like any other: its owner renews it and anyone may release it.
    assert await backend.renew("elsewhere", [(NUMBER, "lost-call")]) == [RenewState.HELD]
    assert await backend.release(NUMBER, "lost-call", "elsewhere") == ReleaseState.RELEASED
    assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=1, limit=1, waiting=0)
    assert await throttle.release(held) is True
    again = await throttle.acquire(NUMBER, limit=1, timeout=0)
    assert await throttle.release(again) is True
    assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=0, limit=1, waiting=0)


async def test_a_token_still_held_is_left_alone_and_anothers_is_refused(
    throttle: Throttle,
) -> None:
    backend = throttle.backend
    held = await throttle.acquire(NUMBER, timeout=0)
    restored = await backend.restore(
        AcquireRequest(NUMBER, held.token, throttle.owner_id, 20, 30, None)
    )
    assert restored is RestoreOutcome.RESTORED
    assert (await throttle.usage(NUMBER)).in_use == 1
    taken = await backend.restore(AcquireRequest(NUMBER, held.token, "someone-else", 20, 30, None))
    assert taken is RestoreOutcome.TAKEN
    assert (await throttle.usage(NUMBER)).in_use == 1
    assert await throttle.release(held) is True
    assert (await throttle.usage(NUMBER)).in_use == 0


async def test_a_restored_lease_counts_in_its_trunk(new_throttle: ThrottleFactory) -> None:
    settings = {
        "trunks": {"main": {"cap": 1}},
        "numbers": {NUMBER: {"trunk": "main"}, NEIGHBOUR: {"trunk": "main"}},
    }
    plan = Config.from_dict(settings).rate_plan_for(NUMBER)
    async with new_throttle(config=settings) as throttle:
        backend = throttle.backend
        restored = await backend.restore(
            AcquireRequest(NUMBER, "lost-call", "elsewhere", 20, 30, None, plan)
        )
        assert restored is RestoreOutcome.RESTORED
        assert (await throttle.group_usage("trunk", "main")).in_use == 1
        with pytest.raises(AcquireTimeout):
            await throttle.acquire(NEIGHBOUR, timeout=0)  # the trunk is full
        assert await backend.release(NUMBER, "lost-call", "elsewhere") == ReleaseState.RELEASED
        assert (await throttle.group_usage("trunk", "main")).in_use == 0
        lease = await throttle.acquire(NEIGHBOUR, timeout=0)
        assert await throttle.release(lease) is True


def test_restore_leases_must_be_a_flag() -> None:
    with pytest.raises(InvalidArgument, match="restore_leases must be True or False"):
        Throttle.from_url("memory://", restore_leases="yes")  # type: ignore[arg-type]


async def test_a_lease_that_expired_meanwhile_is_counted_again(throttle: Throttle) -> None:
    """Its holder was cut off longer than its TTL: the lease expired, though the number's
    records still list it (another lease keeps them). Counting it again renews it: it is live
    and counted afterwards, not merely said to be."""
    backend = throttle.backend
    other = await throttle.acquire(NUMBER, timeout=0)  # keeps the number's records alive
    result = await backend.acquire(
        AcquireRequest(NUMBER, "cut-call", "cut-off", 20, 0.2, None), enqueue=False
    )
    assert result.outcome == 1
    await anyio.sleep(0.3)
    outcome = await backend.restore(
        AcquireRequest(NUMBER, "cut-call", "cut-off", 20, 0.2, None), age=0.3
    )
    assert outcome is RestoreOutcome.RESTORED
    assert (await throttle.usage(NUMBER)).in_use == 2
    assert {h.token for h in await throttle.holders(NUMBER)} == {other.token, "cut-call"}
    assert await backend.release(NUMBER, "cut-call", "cut-off") == ReleaseState.RELEASED
    assert await throttle.release(other) is True


async def test_a_lease_that_expired_is_counted_again(throttle: Throttle) -> None:
    backend = throttle.backend
    restored = RestoreOutcome.RESTORED
    assert (
        await backend.restore(AcquireRequest(NUMBER, "lost-call", "elsewhere", 2, 0.2, None))
        is restored
    )
    await anyio.sleep(0.4)  # it expired, unnoticed: nothing has looked at the number since
    # Its owner's heartbeat counts it again, as it would a lease the backend never had.
    assert (
        await backend.restore(AcquireRequest(NUMBER, "lost-call", "elsewhere", 2, 30, None))
        is restored
    )
    assert await throttle.usage(NUMBER, limit=2) == Usage(in_use=1, limit=2, waiting=0)
    assert [h.token for h in await throttle.holders(NUMBER)] == ["lost-call"]
    assert await backend.release(NUMBER, "lost-call", "elsewhere") == ReleaseState.RELEASED


async def test_a_restored_session_lease_lives_with_its_session(
    new_throttle: ThrottleFactory,
) -> None:
    # A lease of a session that the server lost (its record went too) is counted again as the
    # session's: it lives while the session is kept alive, and lapses with it.
    async with new_throttle(session="sbc-1", keepalive=False, lease_ttl=1) as throttle:
        backend = throttle.backend
        outcome = await backend.restore(
            AcquireRequest(NUMBER, "lost-call", "sbc-1", 1, 1, None, session=True)
        )
        assert outcome is RestoreOutcome.RESTORED
        assert (await throttle.usage(NUMBER, limit=1)).in_use == 1
        [holder] = await throttle.holders(NUMBER)
        assert (holder.token, holder.owner) == ("lost-call", "sbc-1")
        for _ in range(4):  # kept alive past its TTL: still counted
            await anyio.sleep(0.4)
            await throttle.keepalive()
        assert (await throttle.usage(NUMBER, limit=1)).in_use == 1
        with pytest.raises(AcquireTimeout):
            await throttle.acquire(NUMBER, limit=1, timeout=0)
        await anyio.sleep(1.3)  # nobody keeps the session alive: it lapses, the lease with it
        assert (await throttle.usage(NUMBER, limit=1)).in_use == 0
        assert await backend.release(NUMBER, "lost-call", "sbc-1") == ReleaseState.EXPIRED
