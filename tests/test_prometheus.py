"""The Prometheus exporter, read back from a real registry, on every backend."""

from __future__ import annotations

import datetime as dt
import importlib
import sys
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import anyio
import pytest
from prometheus_client import CollectorRegistry

from callthrottle import AcquireTimeout, Config, Lease
from callthrottle._inspector import Inspector
from callthrottle.prometheus import PrometheusHook, SharedStateCollector, ThrottleCollector

if TYPE_CHECKING:
    from .conftest import ThrottleFactory

NUMBER, OTHER, THIRD = "+8657188880001", "+8657188880002", "+8657188880003"


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(f"callthrottle_{name}", labels)
    return 0.0 if found is None else found


async def test_slots_in_use_admissions_and_waits(new_throttle: ThrottleFactory) -> None:
    registry = CollectorRegistry()
    hook = PrometheusHook(registry)
    config = {"pools": {"p": {"numbers": [OTHER]}}}
    async with new_throttle(hooks=[hook], config=config) as throttle:
        first = await throttle.acquire(NUMBER, timeout=0)
        await throttle.acquire(NUMBER, timeout=1)
        await throttle.acquire(OTHER, timeout=0)
        assert value(registry, "slots_in_use", number=NUMBER) == 2
        assert value(registry, "slots_in_use", number=OTHER) == 1
        assert value(registry, "admissions_total", number=NUMBER, pool="") == 2
        assert value(registry, "wait_seconds_count", outcome="admitted") == 3
        assert value(registry, "wait_seconds_bucket", outcome="admitted", le="60.0") == 3
        await throttle.release(first)
        await throttle.release(first)  # released once: counted once
        assert value(registry, "slots_in_use", number=NUMBER) == 1
        async with throttle.slot_from("p", timeout=0):
            assert value(registry, "admissions_total", number=OTHER, pool="p") == 1
            assert value(registry, "slots_in_use", number=OTHER) == 2
    # Leaving the throttle gave back what it held.
    assert value(registry, "slots_in_use", number=NUMBER) == 0
    assert value(registry, "slots_in_use", number=OTHER) == 0


async def test_refusals_by_reason_and_their_waits(new_throttle: ThrottleFactory) -> None:
    registry = CollectorRegistry()
    config = {
        "trunks": {"t": {"cap": 1}},
        "numbers": {OTHER: {"trunk": "t"}},
        "pools": {"p": {"numbers": [NUMBER]}},  # its configured cap is 20: one more fits
    }
    async with new_throttle(hooks=[PrometheusHook(registry)], config=config) as throttle:
        await throttle.acquire(NUMBER, limit=1, timeout=0)
        with pytest.raises(AcquireTimeout):
            await throttle.acquire(NUMBER, limit=1, timeout=0.2)
        await throttle.acquire(OTHER, timeout=0)
        with pytest.raises(AcquireTimeout):
            await throttle.acquire(OTHER, timeout=0)
        await throttle.set_state(NUMBER, "cooling", duration=60)
        with pytest.raises(AcquireTimeout):
            await throttle.acquire_from("p", timeout=0)
    cap = {"number": NUMBER, "reason": "cap", "limit": "cap"}
    assert value(registry, "refusals_total", **cap) == 1
    trunk = {"number": OTHER, "reason": "trunk", "limit": "trunk:t"}
    assert value(registry, "refusals_total", **trunk) == 1
    pool = {"number": "pool:p", "reason": "pool", "limit": "pool"}
    assert value(registry, "refusals_total", **pool) == 1
    assert value(registry, "wait_seconds_count", outcome="refused") == 3
    # The refusal after a 0.2 s wait is the only one above 0.1 s.
    assert value(registry, "wait_seconds_bucket", outcome="refused", le="0.1") == 2
    assert value(registry, "wait_seconds_bucket", outcome="refused", le="0.25") == 3


async def test_a_lost_lease_is_counted_and_leaves_the_gauge(
    new_throttle: ThrottleFactory,
) -> None:
    registry = CollectorRegistry()
    async with new_throttle(lease_ttl=0.3, max_hold=0.3, hooks=[PrometheusHook(registry)]) as t:
        lease = await t.acquire(NUMBER, timeout=0)
        assert value(registry, "slots_in_use", number=NUMBER) == 1
        with anyio.fail_after(5):
            while not lease.lost:
                await anyio.sleep(0.02)
        assert value(registry, "leases_lost_total", reason="max_hold") == 1
        assert value(registry, "slots_in_use", number=NUMBER) == 0
        assert await t.release(lease) is False
    assert value(registry, "slots_in_use", number=NUMBER) == 0


async def test_reclaimed_slots_and_releases_elsewhere(new_throttle: ThrottleFactory) -> None:
    dialer_metrics, survivor_metrics = CollectorRegistry(), CollectorRegistry()
    async with (
        new_throttle(
            owner_id="dialer-7", lease_ttl=0.6, hooks=[PrometheusHook(dialer_metrics)]
        ) as dialer,
        new_throttle(hooks=[PrometheusHook(survivor_metrics)]) as survivor,
    ):
        held = await dialer.acquire(NUMBER, token="call-1", timeout=0)
        await dialer.acquire(OTHER, timeout=0)
        await survivor.acquire(NUMBER, timeout=0)
        assert await dialer.release(Lease(NUMBER, "call-1")) is True
        assert await survivor.release_owner(dialer.owner_id) == 1
        assert value(survivor_metrics, "reclaimed_total") == 1
        assert value(survivor_metrics, "slots_in_use", number=NUMBER) == 1
        # The dialer sees its last lease go (by notification or at its next renewal).
        with anyio.fail_after(5):
            while value(dialer_metrics, "slots_in_use", number=OTHER) != 0:
                await anyio.sleep(0.02)
        assert value(dialer_metrics, "slots_in_use", number=NUMBER) == 0
        assert held.released


async def test_without_the_number_label(new_throttle: ThrottleFactory) -> None:
    registry = CollectorRegistry()
    hook = PrometheusHook(registry, namespace="callthrottle", per_number=False)
    async with new_throttle(hooks=[hook]) as throttle:
        await throttle.acquire(NUMBER, limit=1, timeout=0)
        await throttle.acquire(OTHER, timeout=0)
        with pytest.raises(AcquireTimeout):
            await throttle.acquire(NUMBER, limit=1, timeout=0)
        assert value(registry, "slots_in_use") == 2
        assert value(registry, "admissions_total", pool="") == 2
        assert value(registry, "refusals_total", reason="cap", limit="cap") == 1
    assert value(registry, "slots_in_use") == 0
    names = {metric.name for metric in registry.collect()}
    assert "callthrottle_slots_in_use" in names


def test_a_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "callthrottle.prometheus")
    with pytest.raises(ImportError, match=r"callthrottle\[prometheus\]"):
        importlib.import_module("callthrottle.prometheus")


async def test_the_throttles_collector_shows_the_days_left_on_its_calendar(
    new_throttle: ThrottleFactory,
) -> None:
    """Per number its policy gives a paid period, the days left on the throttle's calendar,
    at each scrape; none for a number without one. It and the shared-state collector export
    the same series: a registry takes one of the two."""
    zone = ZoneInfo("Europe/Berlin")
    paid_until = dt.datetime.now(zone).date() + dt.timedelta(days=30)
    config = {
        "timezone": "Europe/Berlin",
        "profiles": {"rented": {"paid_until": paid_until.isoformat(), "grace_days": 2}},
        "numbers": {
            NUMBER: {"profile": "rented"},
            OTHER: {"paid_until": (paid_until + dt.timedelta(days=10)).isoformat()},
            THIRD: {"cap": 3},
        },
    }
    noon = dt.datetime.combine(paid_until, dt.time(12), tzinfo=zone).timestamp()
    clock = [noon]
    registry = CollectorRegistry()
    async with new_throttle(config=config, calendar=lambda: clock[0]) as throttle:
        ThrottleCollector(throttle, registry=registry)
        assert registry.get_sample_value("callthrottle_number_days_left", {"number": NUMBER}) == 1
        assert registry.get_sample_value("callthrottle_number_days_left", {"number": OTHER}) == 11
        assert registry.get_sample_value("callthrottle_number_days_left", {"number": THIRD}) is None
        clock[0] = noon + 5 * 86400  # released by now: the days go on counting
        assert registry.get_sample_value("callthrottle_number_days_left", {"number": NUMBER}) == -4
        assert registry.get_sample_value("callthrottle_number_days_left", {"number": OTHER}) == 6
        inspector = Inspector.from_url("memory://", config=Config.from_dict(config))
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            SharedStateCollector(inspector, registry=registry)
