"""Leases: renewed while held, expire when their holder is gone, bounded by max_hold."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
import pytest

from callthrottle import Lease, Throttle, Usage
from callthrottle.backends import AcquireRequest

from .test_fifo import NUMBER

if TYPE_CHECKING:
    from ..conftest import BackendFactory, ThrottleFactory


async def wait_for_usage(
    throttle: Throttle, in_use: int, limit: int = 20, within: float = 5
) -> None:
    with anyio.fail_after(within):
        while (await throttle.usage(NUMBER, limit=limit)).in_use != in_use:
            await anyio.sleep(0.01)


async def test_held_lease_outlives_its_ttl_while_renewed(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(lease_ttl=0.3) as throttle:
        bare = await throttle.acquire(NUMBER, timeout=0)
        async with throttle.slot(NUMBER) as in_block:
            await anyio.sleep(1.2)  # four TTLs
            assert (await throttle.usage(NUMBER)).in_use == 2
        assert not in_block.lost
        assert not bare.lost
        assert throttle.held == (bare,)
        assert await throttle.release(bare) is True


async def test_dead_holders_slot_comes_back_after_its_ttl(
    new_throttle: ThrottleFactory, new_backend: BackendFactory
) -> None:
    """A lease nobody renews (its process died) expires, and a waiter gets the slot.

    The waiter is woken by a timer at the lease's expiry: no release ever happens.
    """
    backend = new_backend()
    await backend.open()
    await backend.acquire(
        AcquireRequest(NUMBER, "dead-call", "dead-owner", 1, 0.4, None), enqueue=False
    )
    async with new_throttle() as throttle:
        assert (await throttle.usage(NUMBER, limit=1)).in_use == 1
        start = anyio.current_time()
        lease = await throttle.acquire(NUMBER, limit=1, timeout=5)
        assert anyio.current_time() - start < 1.5
        assert lease.owner == throttle.owner_id
    await backend.aclose()


async def test_max_hold_bounds_a_lease(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(lease_ttl=0.3, max_hold=0.8) as throttle:
        lease = await throttle.acquire(NUMBER, timeout=0)
        await wait_for_usage(throttle, 0, within=3)
        with anyio.fail_after(2):
            while not lease.lost:
                await anyio.sleep(0.02)
        assert lease.lost_reason == "max_hold"
        assert throttle.held == ()
        assert await throttle.release(lease) is False


@pytest.mark.direct_only("stalls the test's event loop; a facade's throttle runs on its own")
async def test_stalled_process_sees_its_lease_lost(
    new_throttle: ThrottleFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Reported on the lease and in the log, never raised into the dialer."""
    async with new_throttle(lease_ttl=0.4, renew_interval=0.1) as throttle:
        lease = await throttle.acquire(NUMBER, timeout=0)
        time.sleep(0.7)  # the event loop stalls past the TTL: no renewal can run
        with anyio.fail_after(2):
            while not lease.lost:
                await anyio.sleep(0.02)
        assert lease.lost_reason == "expired"
        assert not lease.released
        assert (await throttle.usage(NUMBER)).in_use == 0
    [record] = [r for r in caplog.records if "expired before it could be renewed" in r.message]
    assert record.levelname == "WARNING"
    fields = tuple(getattr(record, name) for name in ("number", "token", "owner"))
    assert fields == (NUMBER, lease.token, lease.owner)


async def test_release_from_another_throttle(new_throttle: ThrottleFactory) -> None:
    """A hang-up handler elsewhere releases by number and token; the holder stops renewing."""
    async with new_throttle(lease_ttl=0.5) as dialer, new_throttle() as hangup_handler:
        lease = await dialer.acquire(NUMBER, token="call-42", timeout=0)
        assert await hangup_handler.release(Lease(number=NUMBER, token="call-42")) is True
        with anyio.fail_after(3):
            while not lease.released:
                await anyio.sleep(0.02)
        assert not lease.lost
        assert dialer.held == ()
        assert (await dialer.usage(NUMBER)).in_use == 0


async def test_release_owner_frees_a_dead_instance(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(owner_id="dialer-7") as doomed, new_throttle() as survivor:
        await doomed.acquire(NUMBER, limit=2, timeout=0)
        await doomed.acquire("+8657188880002", limit=2, timeout=0)
        await survivor.acquire(NUMBER, limit=2, timeout=0)
        assert await survivor.release_owner("dialer-7") == 2
        assert await survivor.usage(NUMBER, limit=2) == Usage(in_use=1, limit=2, waiting=0)
        assert (await survivor.usage("+8657188880002")).in_use == 0


async def test_closing_gives_back_held_leases(new_throttle: ThrottleFactory) -> None:
    async with new_throttle() as observer:
        async with new_throttle() as closing:
            await closing.acquire(NUMBER, timeout=0)
            assert (await observer.usage(NUMBER)).in_use == 1
        assert (await observer.usage(NUMBER)).in_use == 0


async def test_max_hold_shorter_than_the_first_renewal(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(lease_ttl=3.0, max_hold=0.3) as throttle:
        lease = await throttle.acquire(NUMBER, timeout=0)
        await wait_for_usage(throttle, 0, within=3)
        with anyio.fail_after(3):
            while not lease.lost:
                await anyio.sleep(0.02)
        assert lease.lost_reason == "max_hold"
