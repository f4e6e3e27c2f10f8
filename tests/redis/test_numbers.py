"""The Lua side writes every integer digit by digit: a value Lua would write in exponent form
(10**14 and up: '1e+15') is stored and read back. The throttle refuses such values (see
tests/conformance/test_ranges.py); this drives the backend below that check, as defence in
depth."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from callthrottle.backends import AcquireRequest, Outcome, ReleaseState, RenewState

if TYPE_CHECKING:
    from callthrottle import Throttle

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"
HUGE = 10**15


async def test_a_lease_taken_with_a_huge_limit_reads_back(throttle: Throttle) -> None:
    backend = throttle.backend
    taken = await backend.acquire(
        AcquireRequest(NUMBER, "big", "owner-a", HUGE, 30, None), enqueue=False
    )
    assert taken.outcome is Outcome.GRANTED
    # Read back at the next heartbeat: held, not gone.
    assert await backend.renew("owner-a", [(NUMBER, "big")]) == [RenewState.HELD]
    assert [(h.token, h.owner) for h in await backend.holders(NUMBER)] == [("big", "owner-a")]
    assert await backend.release(NUMBER, "big", "owner-a") == ReleaseState.RELEASED


async def test_a_waiter_queued_with_a_huge_limit_breaks_nothing(throttle: Throttle) -> None:
    backend = throttle.backend
    first = await backend.acquire(
        AcquireRequest(NUMBER, "first", "owner-a", 1, 30, None), enqueue=True
    )
    second = await backend.acquire(
        AcquireRequest(NUMBER, "second", "owner-a", 1, 30, None), enqueue=True
    )
    # Someone waits ahead: it queues, whatever its limit.
    third = await backend.acquire(
        AcquireRequest(NUMBER, "third", "owner-b", HUGE, 30, None), enqueue=True
    )
    assert [first.outcome, second.outcome, third.outcome] == [
        Outcome.GRANTED,
        Outcome.QUEUED,
        Outcome.QUEUED,
    ]
    assert (await backend.usage(NUMBER, 1)).waiting == 2
    assert await backend.renew("owner-b", [(NUMBER, "third")]) == [RenewState.QUEUED]
    assert (
        await backend.release(NUMBER, "first", "owner-a") == ReleaseState.RELEASED
    )  # "second" is handed it
    assert (
        await backend.release(NUMBER, "second", "owner-a") == ReleaseState.RELEASED
    )  # and now "third"
    assert await backend.renew("owner-b", [(NUMBER, "third")]) == [RenewState.HELD]
    assert await backend.release(NUMBER, "third", "owner-b") == ReleaseState.RELEASED
    assert (await backend.usage(NUMBER, 1)).in_use == 0
