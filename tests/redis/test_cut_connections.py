"""Connections cut between a command and its reply: the outcome is resolved by the token."""

from __future__ import annotations

import anyio
import pytest

from callthrottle import Lease, Throttle
from callthrottle.backends.redis import _LIBRARY

from ._proxy import CuttingProxy

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"


async def test_an_acquire_whose_reply_was_cut_holds_exactly_one_slot(
    redis_url: str, prefix: str
) -> None:
    proxy = CuttingProxy.in_front_of(redis_url)
    async with proxy.running():
        url = proxy.url
        async with (
            Throttle.from_url(url, key_prefix=prefix) as throttle,
            Throttle.from_url(redis_url, key_prefix=prefix) as observer,
        ):
            await throttle.release(await throttle.acquire(NUMBER, timeout=0))  # connected
            proxy.cut_next_reply()
            lease = await throttle.acquire(NUMBER, token="call-1", limit=2, timeout=0)
            assert proxy.cuts == 1
            # The acquire ran, its reply was lost, it was sent again on a new connection and
            # the token found its slot: one slot, not two.
            usage = await observer.usage(NUMBER, limit=2)
            assert (usage.in_use, usage.waiting) == (1, 0)
            other = await throttle.acquire(NUMBER, token="call-2", limit=2, timeout=0)
            proxy.cut_next_reply()
            # A release whose reply was lost: sent again, it finds nothing (and says so), but
            # the slot is free and the count is never negative.
            assert await throttle.release(lease) is False
            assert proxy.cuts == 2
            assert (await observer.usage(NUMBER, limit=2)).in_use == 1
            assert await throttle.release(other) is True
            assert (await observer.usage(NUMBER, limit=2)).in_use == 0


POOL = [f"+86571888{i:05d}" for i in range(1, 5)]


async def test_a_pick_whose_reply_was_cut_holds_exactly_one_slot(
    redis_url: str, prefix: str
) -> None:
    """acquire_from whose reply was lost is sent again by the throttle's connection: the retried
    pick finds the slot its first run took and returns that number, instead of taking a second
    slot on another number of the pool (a lease nobody would hold, renew or release)."""
    proxy = CuttingProxy.in_front_of(redis_url)
    config = {"pools": {"a": {"numbers": POOL}}}
    pick = _LIBRARY.functions["pick"].encode() + b"\r\n"
    async with proxy.running():
        url = proxy.url
        async with (
            Throttle.from_url(url, key_prefix=prefix, config=config) as throttle,
            Throttle.from_url(redis_url, key_prefix=prefix, config=config) as observer,
        ):
            proxy.cut_reply_to(pick)
            lease = await throttle.acquire_from("a", token="call-1", timeout=0)
            assert proxy.cuts == 1
            assert proxy.sent[pick] == 2  # run, its reply cut, sent again on a new connection
            in_use = {number: (await observer.usage(number)).in_use for number in POOL}
            assert in_use == {number: int(number == lease.number) for number in POOL}
            assert [h.token for h in await observer.holders(lease.number)] == ["call-1"]
            # The next pick goes elsewhere (the pool knows the number is loaded), and the lease
            # is released once for good.
            other = await throttle.acquire_from("a", token="call-2", timeout=0)
            assert other.number != lease.number
            assert await throttle.release(lease) is True
            assert await throttle.release(other) is True
            assert sum([(await observer.usage(n)).in_use for n in POOL]) == 0


async def test_a_slot_handed_over_in_a_cut_reply_still_reaches_its_waiter(
    redis_url: str, prefix: str
) -> None:
    """A release hands the freed slot to the releasing throttle's own waiter in its reply (no
    event is published for it). When that reply is cut, the release sent again finds nothing to
    hand over; the new connection makes every waiter ask again, so the waiter learns of its
    slot at once, not at its next look (10 s away here)."""
    proxy = CuttingProxy.in_front_of(redis_url)
    release = _LIBRARY.functions["release"].encode() + b"\r\n"
    async with proxy.running():
        url = proxy.url
        async with Throttle.from_url(url, key_prefix=prefix) as throttle:
            lease = await throttle.acquire(NUMBER, limit=1, timeout=0)
            got: list[Lease] = []

            async def wait() -> None:
                got.append(await throttle.acquire(NUMBER, limit=1, token="waiter", timeout=20))

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                while (await throttle.usage(NUMBER, limit=1)).waiting == 0:
                    await anyio.sleep(0.01)
                proxy.cut_reply_to(release)
                assert await throttle.release(lease) is False  # it released, then was sent again
                assert proxy.cuts == 1
                with anyio.fail_after(2):
                    while not got:
                        await anyio.sleep(0.01)
            assert got[0].token == "waiter"
            assert (await throttle.usage(NUMBER, limit=1)).in_use == 1
            assert await throttle.release(got[0]) is True


async def test_a_batch_whose_reply_was_cut_gives_each_caller_one_slot(
    redis_url: str, prefix: str
) -> None:
    """Acquires asked for at the same moment travel as one batch call; when its reply is cut,
    the batch is sent again and each caller gets its own slot, once."""
    proxy = CuttingProxy.in_front_of(redis_url)
    batch = _LIBRARY.functions["batch"].encode() + b"\r\n"
    async with proxy.running():
        url = proxy.url
        async with (
            Throttle.from_url(url, key_prefix=prefix) as throttle,
            Throttle.from_url(redis_url, key_prefix=prefix) as observer,
        ):
            await throttle.release(await throttle.acquire(NUMBER, timeout=0))  # connected
            proxy.cut_reply_to(batch)
            leases: list[Lease] = []

            async def take(token: str) -> None:
                leases.append(await throttle.acquire(NUMBER, token=token, limit=5, timeout=0))

            async with anyio.create_task_group() as tg:
                for i in range(4):  # the first goes alone, the others as one batch behind it
                    tg.start_soon(take, f"call-{i}")
            assert proxy.cuts == 1
            assert proxy.sent[batch] == 2
            assert sorted(lease.token for lease in leases) == [f"call-{i}" for i in range(4)]
            usage = await observer.usage(NUMBER, limit=5)
            assert (usage.in_use, usage.waiting) == (4, 0)
            for lease in leases:
                assert await throttle.release(lease) is True
