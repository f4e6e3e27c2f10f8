"""A process that dies gives its slots back.

A dialer in another OS process takes slots (or waits in line for one) and is SIGKILLed: it
releases nothing and closes nothing. Its leases and its place in line must lapse within its
``lease_ttl``, or go at once when an operator calls ``release_owner``.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from callthrottle import AcquireTimeout, Lease, Throttle, Usage

from ._dialer import spawn

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.redis, pytest.mark.slow]

NUMBER = "+8657188880001"
SIGKILLED = -9


async def wait_for_usage(
    throttle: Throttle,
    *,
    limit: int,
    within: float,
    in_use: int | None = None,
    waiting: int | None = None,
) -> Usage:
    """Poll until the number's usage matches; fail after ``within`` seconds."""
    with anyio.fail_after(within):
        while True:
            usage = await throttle.usage(NUMBER, limit=limit)
            if (in_use is None or usage.in_use == in_use) and (
                waiting is None or usage.waiting == waiting
            ):
                return usage
            await anyio.sleep(0.01)


async def test_a_killed_holders_slots_come_back_within_its_lease_ttl(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    ttl = 1.0
    # This throttle's own heartbeat runs every 10 s: only the timer set to the dead leases'
    # expiry can wake its waiter in time.
    async with (
        Throttle.from_url(redis_url, key_prefix=prefix, lease_ttl=30) as throttle,
        spawn(
            "hold",
            redis_url,
            prefix,
            NUMBER,
            "--slots=3",
            "--limit=3",
            f"--ttl={ttl}",
            stderr_path=tmp_path / "holder.err",
        ) as child,
    ):
        await child.handshake()
        assert await throttle.usage(NUMBER, limit=3) == Usage(in_use=3, limit=3, waiting=0)
        with pytest.raises(AcquireTimeout):
            await throttle.acquire(NUMBER, limit=3, timeout=0)

        killed_at = time.monotonic()
        child.kill()
        lease = await throttle.acquire(NUMBER, limit=3, timeout=5)
        elapsed = time.monotonic() - killed_at

        assert await child.wait() == SIGKILLED
        assert elapsed <= ttl + 1.0
        # Renewed every ttl / 3 until the kill, the dead leases outlived it by about 2/3 ttl
        # or more: the slot was not handed out before they expired (loose bound, for CI).
        assert elapsed >= ttl / 3
        # All three dead leases were renewed together, so they expired together.
        await wait_for_usage(throttle, limit=3, within=ttl + 1.0, in_use=1, waiting=0)
        assert await throttle.release(lease) is True


async def test_release_owner_frees_a_killed_processes_slots_at_once(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    ttl = 30.0
    async with (
        Throttle.from_url(redis_url, key_prefix=prefix) as throttle,
        spawn(
            "hold",
            redis_url,
            prefix,
            NUMBER,
            "--slots=3",
            "--limit=3",
            f"--ttl={ttl}",
            stderr_path=tmp_path / "holder.err",
        ) as child,
    ):
        owner = await child.handshake()
        assert await throttle.usage(NUMBER, limit=3) == Usage(in_use=3, limit=3, waiting=0)
        child.kill()
        assert await child.wait() == SIGKILLED
        assert await throttle.usage(NUMBER, limit=3) == Usage(in_use=3, limit=3, waiting=0)

        started = time.monotonic()
        assert await throttle.release_owner(owner) == 3
        assert await throttle.usage(NUMBER, limit=3) == Usage(in_use=0, limit=3, waiting=0)
        assert time.monotonic() - started < 2.0  # well before the 30 s TTL
        # The slots can be taken again at once, and nothing else was removed.
        leases = [await throttle.acquire(NUMBER, limit=3, timeout=0) for _ in range(3)]
        assert await throttle.release_owner(owner) == 0
        for lease in leases:
            assert await throttle.release(lease) is True


async def test_a_killed_waiters_place_in_line_lapses(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    ttl = 1.0
    async with Throttle.from_url(redis_url, key_prefix=prefix) as throttle:
        held = await throttle.acquire(NUMBER, limit=1, timeout=0)
        async with spawn(
            "wait",
            redis_url,
            prefix,
            NUMBER,
            "--limit=1",
            f"--ttl={ttl}",
            stderr_path=tmp_path / "waiter.err",
        ) as child:
            await child.handshake()
            await wait_for_usage(throttle, limit=1, within=10, in_use=1, waiting=1)
            killed_at = time.monotonic()
            child.kill()
            assert await child.wait() == SIGKILLED
            await wait_for_usage(throttle, limit=1, within=ttl + 1.0, in_use=1, waiting=0)
            assert time.monotonic() - killed_at <= ttl + 1.0

        # A new waiter gets the slot as soon as it is released: nobody dead is ahead of it.
        granted: list[tuple[Lease, float]] = []

        async def waiter() -> None:
            lease = await throttle.acquire(NUMBER, limit=1, timeout=5)
            granted.append((lease, time.monotonic()))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(waiter)
            await wait_for_usage(throttle, limit=1, within=5, in_use=1, waiting=1)
            released_at = time.monotonic()
            assert await throttle.release(held) is True
        [(lease, granted_at)] = granted
        assert granted_at - released_at < 1.0
        assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=1, limit=1, waiting=0)
        assert await throttle.release(lease) is True


@pytest.mark.parametrize(
    "waiter_ttl", [pytest.param(1.0, id="waiter-ttl-1s"), pytest.param(30.0, id="waiter-ttl-30s")]
)
async def test_a_slot_handed_to_a_killed_waiter_comes_back(
    redis_url: str, prefix: str, tmp_path: Path, waiter_ttl: float
) -> None:
    """The dead waiter is still first in line when the slot frees: it gets the slot, as a
    lease nobody renews, which expires within its TTL; then the next waiter gets it."""
    ttl = 1.0  # the dead waiter's
    async with Throttle.from_url(redis_url, key_prefix=prefix, lease_ttl=waiter_ttl) as throttle:
        held = await throttle.acquire(NUMBER, limit=1, timeout=0)
        granted: list[tuple[Lease, float]] = []

        async def waiter() -> None:
            with contextlib.suppress(AcquireTimeout):
                lease = await throttle.acquire(NUMBER, limit=1, timeout=ttl + 2.0)
                granted.append((lease, time.monotonic()))

        async with spawn(
            "wait",
            redis_url,
            prefix,
            NUMBER,
            "--limit=1",
            f"--ttl={ttl}",
            stderr_path=tmp_path / "waiter.err",
        ) as child:
            await child.handshake()
            await wait_for_usage(throttle, limit=1, within=10, in_use=1, waiting=1)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(waiter)  # second in line, behind the child
                await wait_for_usage(throttle, limit=1, within=5, in_use=1, waiting=2)
                child.kill()
                assert await child.wait() == SIGKILLED
                released_at = time.monotonic()
                assert await throttle.release(held) is True
                # The dead waiter's place had not lapsed yet: the slot went to it.
                usage = await throttle.usage(NUMBER, limit=1)
                assert usage == Usage(in_use=1, limit=1, waiting=1)
                assert not granted
        assert granted, (
            f"no slot within {ttl + 2.0} s; usage: {await throttle.usage(NUMBER, limit=1)}"
        )
        [(lease, granted_at)] = granted
        assert granted_at - released_at <= ttl + 1.0
        assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=1, limit=1, waiting=0)
        assert await throttle.release(lease) is True
