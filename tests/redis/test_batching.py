"""Requests for one number that arrive together run as one batch call, each as if alone."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import anyio
import pytest

from callthrottle import AcquireTimeout, Throttle
from callthrottle.backends import AcquireRequest, Outcome

if TYPE_CHECKING:
    import redis

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"


def fcalls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0))


async def test_concurrent_acquires_share_calls_and_keep_the_cap(
    throttle: Throttle, sync_client: redis.Redis
) -> None:
    await throttle.release(await throttle.acquire(NUMBER, timeout=0))  # library loaded
    before = fcalls(sync_client)
    granted: list[str] = []
    refused: list[str] = []

    async def take(i: int) -> None:
        try:
            await throttle.acquire(NUMBER, token=f"t{i}", limit=20, timeout=0)
            granted.append(f"t{i}")
        except AcquireTimeout:
            refused.append(f"t{i}")

    async with anyio.create_task_group() as tg:
        for i in range(60):
            tg.start_soon(take, i)
    calls = fcalls(sync_client) - before
    assert len(granted) == 20
    assert len(refused) == 40
    assert calls < 60, f"{calls} calls for 60 acquires: none were batched"
    usage = await throttle.usage(NUMBER, limit=20)
    assert (usage.in_use, usage.waiting) == (20, 0)
    # First come, first served within the batch too: the first 20 asked were the ones granted.
    assert sorted(granted) == sorted(f"t{i}" for i in range(20))


async def test_a_request_cancelled_before_it_was_sent_is_left_out(throttle: Throttle) -> None:
    backend = throttle.backend
    owner = throttle.owner_id
    held = await throttle.acquire(NUMBER, limit=1, timeout=0)
    tasks = [
        asyncio.ensure_future(
            backend.acquire(AcquireRequest(NUMBER, f"w{i}", owner, 1, 30.0, None), enqueue=True)
        )
        for i in range(10)
    ]
    await asyncio.sleep(0)  # each asked: the first alone, the rest wait for the batch
    for task in tasks[5:]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [r.outcome for r in results[:5]] == [Outcome.QUEUED] * 5  # type: ignore[union-attr]
    assert all(isinstance(r, asyncio.CancelledError) for r in results[5:])
    usage = await throttle.usage(NUMBER, limit=1)
    assert (usage.in_use, usage.waiting) == (1, 5)  # the cancelled five never joined the line
    for i in range(5):
        await backend.abandon(NUMBER, f"w{i}", owner)
    await throttle.release(held)


async def test_releases_in_a_batch_hand_slots_to_waiters_in_order(throttle: Throttle) -> None:
    leases = [await throttle.acquire(NUMBER, token=f"h{i}", limit=5, timeout=0) for i in range(5)]
    order: list[str] = []

    async def wait(i: int) -> None:
        lease = await throttle.acquire(NUMBER, token=f"w{i}", limit=5, timeout=5)
        order.append(lease.token)

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(wait, i)
            while (await throttle.usage(NUMBER, limit=5)).waiting < i + 1:
                await anyio.sleep(0.005)
        async with anyio.create_task_group() as releasers:
            for lease in leases:
                releasers.start_soon(throttle.release, lease)
    assert sorted(order) == [f"w{i}" for i in range(5)]
    usage = await throttle.usage(NUMBER, limit=5)
    assert (usage.in_use, usage.waiting) == (5, 0)
