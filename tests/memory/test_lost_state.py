"""A backend that lost its state under a running throttle (what a Redis restart without
persistence does), played deterministically on the memory backend: its state is dropped and
the throttle is told its connection was replaced (the ``resync`` the Redis backend sends)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from unittest.mock import ANY

import pytest
from prometheus_client import CollectorRegistry

from callthrottle import AcquireTimeout, Event, Lease, Released, Restored, Throttle, Usage
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


async def test_a_lease_released_elsewhere_while_cut_off_stays_released() -> None:
    """The holder misses the release (its connection is cut: no event reaches it), then its
    connection is replaced: the renewal finds the lease gone, and the backend refuses to count
    it again, since it was released. The holder tells it as released elsewhere."""
    backend = MemoryBackend()
    events: list[Event] = []
    async with (
        Throttle(backend, lease_ttl=30, hooks=[events.append]) as holder,
        Throttle(backend, lease_ttl=30) as other,
    ):
        held = await holder.acquire(NUMBER, limit=1, timeout=0)
        listener = backend._listeners.pop(holder.owner_id)  # cut off: hears nothing
        assert await other.release(Lease(NUMBER, held.token)) is True
        backend._listeners[holder.owner_id] = listener
        holder._on_event("resync", "", "")
        await holder._renew_all()
        assert held.released
        assert not held.lost
        assert held not in holder.held
        assert Released(NUMBER, held.token, ANY, elsewhere=True) in events
        assert not any(isinstance(event, Restored) for event in events)
        assert await other.usage(NUMBER, limit=1) == Usage(in_use=0, limit=1, waiting=0)


async def test_a_lease_not_renewed_for_three_ttls_is_not_counted_again() -> None:
    """Past three lease TTLs without a renewal, a release's record may have lapsed: the holder
    no longer counts the lease again (the server may have ended it), it reports it expired."""
    backend = MemoryBackend()
    async with Throttle(backend, lease_ttl=30) as holder:
        held = await holder.acquire(NUMBER, limit=1, timeout=0)
        lose_everything(backend, holder)
        holder._held[(NUMBER, held.token)].renewed_at -= 91  # its last renewal, 91 s ago
        await holder._renew_all()
        assert held.lost
        assert held.lost_reason == "expired"
        assert await holder.usage(NUMBER, limit=1) == Usage(in_use=0, limit=1, waiting=0)


async def test_a_lease_past_its_max_hold_is_not_counted_again() -> None:
    """A lease whose max_hold ran out while the backend had lost it is over: reported lost
    as such, not counted again."""
    backend = MemoryBackend()
    async with Throttle(backend, lease_ttl=30, max_hold=60) as holder:
        held = await holder.acquire(NUMBER, limit=1, timeout=0)
        lose_everything(backend, holder)
        holder._held[(NUMBER, held.token)].since -= 61  # granted 61 s ago
        await holder._renew_all()
        assert held.lost
        assert held.lost_reason == "max_hold"
        assert await holder.usage(NUMBER, limit=1) == Usage(in_use=0, limit=1, waiting=0)
