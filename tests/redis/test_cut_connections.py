"""Connections cut between a command and its reply: the outcome is resolved by the token."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from callthrottle import Throttle

from ._proxy import CuttingProxy

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"


async def test_an_acquire_whose_reply_was_cut_holds_exactly_one_slot(
    redis_url: str, prefix: str
) -> None:
    target = urlsplit(redis_url)
    proxy = CuttingProxy(target.hostname or "127.0.0.1", target.port or 6379)
    async with proxy.running():
        url = f"redis://127.0.0.1:{proxy.port}{target.path}"
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
