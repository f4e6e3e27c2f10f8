"""Release: idempotent, harmless on unknown leases, and the count never goes negative."""

from __future__ import annotations

import pytest

from callthrottle import Lease, Throttle, Usage

from .test_fifo import NUMBER


async def test_release_is_idempotent(throttle: Throttle) -> None:
    lease = await throttle.acquire(NUMBER, timeout=0)
    assert await throttle.release(lease) is True
    assert lease.released
    assert await throttle.release(lease) is False
    assert await throttle.usage(NUMBER) == Usage(in_use=0, limit=20, waiting=0)


async def test_releasing_an_unknown_lease_is_harmless(throttle: Throttle) -> None:
    held = await throttle.acquire(NUMBER, timeout=0)
    assert await throttle.release(Lease(NUMBER, "never-taken")) is False
    assert await throttle.release(Lease("+8657188880009", held.token)) is False
    assert (await throttle.usage(NUMBER)).in_use == 1


async def test_double_release_from_two_sides_counts_once(throttle: Throttle) -> None:
    """Both parties hang up at once: the slot is freed once, never twice."""
    first = await throttle.acquire(NUMBER, token="call-1", timeout=0)
    await throttle.acquire(NUMBER, token="call-2", timeout=0)
    results = [await throttle.release(first), await throttle.release(Lease(NUMBER, "call-1"))]
    assert sorted(results) == [False, True]
    assert (await throttle.usage(NUMBER)).in_use == 1


async def test_slot_releases_on_exception(throttle: Throttle) -> None:
    with pytest.raises(RuntimeError, match="call failed"):
        async with throttle.slot(NUMBER, limit=1, timeout=0) as lease:
            assert (await throttle.usage(NUMBER, limit=1)).in_use == 1
            raise RuntimeError("call failed")
    assert lease.released
    assert (await throttle.usage(NUMBER, limit=1)).in_use == 0


async def test_token_is_reusable_after_release(throttle: Throttle) -> None:
    lease = await throttle.acquire(NUMBER, token="call-9", timeout=0)
    await throttle.release(lease)
    again = await throttle.acquire(NUMBER, token="call-9", timeout=0)
    assert again == lease
    assert again is not lease
