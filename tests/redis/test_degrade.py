"""The degrade policy: while Redis is unreachable, a local share of each cap, logged loudly."""

from __future__ import annotations

import logging

import pytest

from callthrottle import AcquireTimeout, BackendUnavailable, InvalidArgument, Throttle

from .._servers import own_server

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"


async def test_without_the_policy_calls_raise(caplog: pytest.LogCaptureFixture) -> None:
    with own_server() as (url, server):
        async with Throttle.from_url(url) as throttle:
            await throttle.release(await throttle.acquire(NUMBER, timeout=0))
            server.stop()
            with pytest.raises(BackendUnavailable):
                await throttle.acquire(NUMBER, timeout=0)
            server.start()


async def test_a_degraded_throttle_takes_its_share_locally_and_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """(With ``restore_leases=False``: whether the restarted server counts ``shared`` again
    by the time of the check below depends on when the heartbeat runs; tests/redis/
    test_restart.py covers that.)"""
    with own_server() as (url, server):
        async with Throttle.from_url(
            url, default_limit=4, degraded_share=0.5, restore_leases=False, lease_ttl=1
        ) as throttle:
            shared = await throttle.acquire(NUMBER, timeout=0)
            assert not shared.degraded
            server.stop()
            with caplog.at_level(logging.ERROR, logger="callthrottle"):
                local = [await throttle.acquire(NUMBER, timeout=0) for _ in range(2)]
                with pytest.raises(AcquireTimeout):  # the local share of 4 is 2
                    await throttle.acquire(NUMBER, timeout=0)
            assert all(lease.degraded for lease in local)
            assert [r.message for r in caplog.records if "DEGRADED" in r.message]
            assert len([r for r in caplog.records if "DEGRADED" in r.message]) == 1  # once
            assert set(throttle.held) >= set(local)
            assert await throttle.release(local[0]) is True
            server.start()
            # Back from the server, once its fence (a lease TTL) is over.
            back = await throttle.acquire(NUMBER, timeout=3)
            assert not back.degraded
            assert (await throttle.usage(NUMBER)).in_use == 1  # the server forgot `shared`
            assert await throttle.release(local[1]) is True  # still given back in-process
            assert await throttle.release(back) is True


@pytest.mark.parametrize("share", [0, 1.5, -1, "half", True])
def test_a_bad_share_is_refused(share: object) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Throttle.from_url("memory://", degraded_share=share)  # type: ignore[arg-type]
    assert caught.value.argument == "degraded_share"
