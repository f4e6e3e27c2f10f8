"""A release is final: a holder that was cut off while another process released its lease (or an
operator reset the number, or released the holder's leases) cannot count it again when it comes
back, although it would count again a lease the backend merely lost."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from callthrottle import Lease, Throttle, Usage
from callthrottle.backends import AcquireRequest, RestoreOutcome

if TYPE_CHECKING:
    from callthrottle.backends import Backend

NUMBER = "+8657188880001"
CUT_OFF = "cut-off"  # an owner that hears nothing: its connection is cut


async def _hold(backend: Backend, token: str, ttl: float = 30.0) -> None:
    """A lease of the cut-off owner, taken straight from the backend (no throttle renews it
    or hears of its release)."""
    result = await backend.acquire(
        AcquireRequest(NUMBER, token, CUT_OFF, 1, ttl, None), enqueue=False
    )
    assert result.outcome == 1


async def _restore(backend: Backend, token: str, ttl: float = 30.0) -> RestoreOutcome:
    return await backend.restore(AcquireRequest(NUMBER, token, CUT_OFF, 1, ttl, None), age=5.0)


async def test_a_lease_released_by_another_process_is_not_counted_again(
    throttle: Throttle,
) -> None:
    backend = throttle.backend
    await _hold(backend, "call-1")
    assert await throttle.release(Lease(NUMBER, "call-1")) is True  # the hang-up, elsewhere
    assert await _restore(backend, "call-1") is RestoreOutcome.ENDED
    assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=0, limit=1, waiting=0)
    assert await throttle.holders(NUMBER) == []
    # Asked again (a retry), still refused; the number takes a new call.
    assert await _restore(backend, "call-1") is RestoreOutcome.ENDED
    lease = await throttle.acquire(NUMBER, limit=1, timeout=0)
    assert await throttle.release(lease) is True


async def test_a_reset_number_is_final(throttle: Throttle) -> None:
    backend = throttle.backend
    await _hold(backend, "call-1")
    assert await throttle.reset(NUMBER) == (1, 0)
    assert await _restore(backend, "call-1") is RestoreOutcome.ENDED
    assert (await throttle.usage(NUMBER, limit=1)).in_use == 0


async def test_release_owner_is_final(throttle: Throttle) -> None:
    backend = throttle.backend
    await _hold(backend, "call-1")
    assert await throttle.release_owner(CUT_OFF) == 1
    assert await _restore(backend, "call-1") is RestoreOutcome.ENDED
    assert (await throttle.usage(NUMBER, limit=1)).in_use == 0


async def test_a_lease_the_backend_lost_is_still_counted_again(throttle: Throttle) -> None:
    """Without a release the token was never ended: the backend lost it (here it never had
    it, as after a restart), so it is counted again; ended tokens of others do not matter."""
    backend = throttle.backend
    await _hold(backend, "call-1")
    assert await throttle.release(Lease(NUMBER, "call-1")) is True
    assert await _restore(backend, "call-2") is RestoreOutcome.RESTORED
    assert (await throttle.usage(NUMBER, limit=1)).in_use == 1
    assert await _restore(backend, "call-2") is RestoreOutcome.RESTORED  # still held: left alone
    assert (
        await backend.restore(AcquireRequest(NUMBER, "call-2", "another", 1, 30, None))
        is RestoreOutcome.TAKEN
    )
    assert await throttle.release(Lease(NUMBER, "call-2")) is True


async def test_the_record_of_a_release_lapses(throttle: Throttle) -> None:
    """The record lives a few lease TTLs (longer than a holder tries to count a lease again),
    then lapses: an idle number keeps nothing for ever."""
    backend = throttle.backend
    await _hold(backend, "call-1", ttl=0.1)
    assert await throttle.release(Lease(NUMBER, "call-1")) is True
    assert await _restore(backend, "call-1", ttl=0.1) is RestoreOutcome.ENDED
    await anyio.sleep(0.6)
    assert await _restore(backend, "call-1", ttl=0.1) is RestoreOutcome.RESTORED
    assert await throttle.release(Lease(NUMBER, "call-1")) is True


async def test_a_token_used_again_for_a_new_call_is_counted_again(throttle: Throttle) -> None:
    """A call ID can come back (a new call that reuses it): the end of its first lease does not
    keep its holder from counting the new one again when the backend loses it (here: it
    expires while the holder is cut off)."""
    backend = throttle.backend
    await _hold(backend, "call-1", ttl=0.2)
    assert await throttle.release(Lease(NUMBER, "call-1")) is True  # the first call ends
    await _hold(backend, "call-1", ttl=0.2)  # a new call with the same ID, same holder
    await anyio.sleep(0.3)  # the holder is cut off: its lease expires
    assert await _restore(backend, "call-1", ttl=0.2) is RestoreOutcome.RESTORED
    assert (await throttle.usage(NUMBER, limit=1)).in_use == 1
    assert await throttle.release(Lease(NUMBER, "call-1")) is True


async def test_a_token_ended_stays_ended_when_another_owner_reuses_it(throttle: Throttle) -> None:
    """The ended lease's holder, cut off, cannot count it again after another owner took and
    gave back a lease of the same token meanwhile."""
    backend = throttle.backend
    await _hold(backend, "call-1")
    assert await throttle.release(Lease(NUMBER, "call-1")) is True  # released elsewhere
    again = await throttle.acquire(NUMBER, token="call-1", limit=1, timeout=0)
    assert await throttle.release(again) is True  # the new call ends, by its own holder
    assert await _restore(backend, "call-1") is RestoreOutcome.ENDED
    assert (await throttle.usage(NUMBER, limit=1)).in_use == 0
