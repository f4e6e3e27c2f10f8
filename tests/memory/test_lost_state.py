"""A backend that lost its state under a running throttle (what a Redis restart without
persistence does), played deterministically on the memory backend: its state is dropped and
the throttle is told its connection was replaced (the ``resync`` the Redis backend sends)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry

from callthrottle import AcquireTimeout, Event, Restored, Throttle, Usage
from callthrottle.backends import MemoryBackend
from callthrottle.prometheus import PrometheusHook

if TYPE_CHECKING:
    from collections.abc import Callable

NUMBER = "+8657188880001"


def lose_everything(backend: MemoryBackend, throttle: Throttle) -> None:
    backend._numbers.clear()
    throttle._on_event("resync", "", "")


async def test_new_calls_wait_until_the_lost_leases_are_counted_again() -> None:
    """Without the wait, the acquire would take the slot of the call still up (and the
    heartbeat would then count that call again on top: two calls on a cap of one)."""
    backend = MemoryBackend()
    events: list[Event] = []
    registry = CollectorRegistry()
    hooks: list[Callable[[Event], object]] = [events.append, PrometheusHook(registry)]
    async with Throttle(backend, lease_ttl=30, hooks=hooks) as throttle:
        held = await throttle.acquire(NUMBER, limit=1, timeout=0)
        lose_everything(backend, throttle)
        with pytest.raises(AcquireTimeout):
            await throttle.acquire(NUMBER, limit=1, timeout=0.5)
        assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=1, limit=1, waiting=0)
        assert not held.lost
        assert Restored(NUMBER, held.token) in events
        assert registry.get_sample_value("callthrottle_leases_restored_total") == 1
        assert await throttle.release(held) is True
        assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=0, limit=1, waiting=0)


async def test_without_restore_the_lost_lease_is_reported_lost() -> None:
    backend = MemoryBackend()
    async with Throttle(backend, lease_ttl=30, restore_leases=False) as throttle:
        held = await throttle.acquire(NUMBER, limit=1, timeout=0)
        lose_everything(backend, throttle)
        lease = await throttle.acquire(NUMBER, limit=1, timeout=0.5)  # nothing to wait for
        await throttle._renew_all()
        assert held.lost
        assert held.lost_reason == "backend"
        assert await throttle.usage(NUMBER, limit=1) == Usage(in_use=1, limit=1, waiting=0)
        assert await throttle.release(lease) is True
