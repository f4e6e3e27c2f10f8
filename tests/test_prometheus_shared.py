"""The shared-state collector, scraped from a real registry: what every process holds, read from
the backend (every backend), its age and ``backend_up`` while the server is down, and that a
read writes nothing."""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from functools import partial
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import anyio
import anyio.to_thread
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import redis
from callthrottle import Config, InvalidArgument, Throttle
from callthrottle._inspector import Inspector
from callthrottle.prometheus import PrometheusHook, SharedStateCollector
from tests._servers import lift_fence, own_server
from tests.cli.test_read_only import _assert_same, _clients, _keyspace

if TYPE_CHECKING:
    from .conftest import BackendFactory, ThrottleFactory

NUMBER, OTHER = "+8657188880001", "+8657188880002"
CONFIG = {
    "trunks": {"t": {"cap": 10}},
    "numbers": {NUMBER: {"cap": 3, "trunk": "t"}},
    "pools": {"p": {"numbers": [NUMBER]}},
}
STATES = ("active", "warming", "cooling", "flagged", "disabled", "expired", "released")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """What a scrape of the registry shows: each sample by name and labels."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample's value, None when the scrape has no such series."""
    return samples.get((f"callthrottle_{name}", tuple(sorted(labels.items()))))


def inspector_on(new_backend: BackendFactory, backend_kind: str) -> Inspector:
    """An inspector on the test's shared state, with the dialers' configuration (on memory the
    backend is the dialers' own object: it is not closed)."""
    return Inspector(
        new_backend(), config=Config.from_dict(CONFIG), close_backend=backend_kind != "memory"
    )


async def test_one_scrape_shows_every_dialers_calls(
    new_throttle: ThrottleFactory, new_backend: BackendFactory, backend_kind: str
) -> None:
    registry = CollectorRegistry()
    async with (
        new_throttle(owner_id="dialer-1", config=CONFIG) as one,
        new_throttle(owner_id="dialer-2", config=CONFIG) as two,
        inspector_on(new_backend, backend_kind) as inspector,
    ):
        collector = SharedStateCollector(inspector, registry=registry)
        held = [(one, await one.acquire(NUMBER, timeout=0)) for _ in range(2)]
        held += [(two, await two.acquire(n, timeout=0)) for n in (NUMBER, OTHER)]
        async with anyio.create_task_group() as waiters:
            waiters.start_soon(partial(two.acquire, NUMBER, timeout=30))  # the number is full
            with anyio.fail_after(5):
                while (await inspector.usage(NUMBER)).waiting != 1:
                    await anyio.sleep(0.01)
            assert await collector.refresh() is True
            samples = scrape(registry)
            waiters.cancel_scope.cancel()
        assert value(samples, "shared_backend_up") == 1
        assert 0 <= (value(samples, "shared_scrape_age_seconds") or math.inf) < 5
        assert value(samples, "number_in_use", number=NUMBER) == 3  # two from one, one from two
        assert value(samples, "number_cap", number=NUMBER) == 3
        assert value(samples, "number_waiting", number=NUMBER) == 1
        assert value(samples, "number_in_use", number=OTHER) == 1
        assert value(samples, "number_cap", number=OTHER) == 20  # the default
        for state in STATES:
            expected = 1 if state == "active" else 0
            assert value(samples, "number_state", number=NUMBER, state=state) == expected
        assert value(samples, "group_in_use", kind="trunk", group="t") == 3
        assert value(samples, "group_cap", kind="trunk", group="t") == 10
        assert value(samples, "pool_in_use", pool="p") == 3
        assert value(samples, "pool_members", pool="p") == 1
        assert value(samples, "pool_cap", pool="p") == 3

        await two.set_state(NUMBER, "cooling", duration=60, reason="carrier feedback")
        for dialer, lease in held:
            await dialer.release(lease)
        assert await collector.refresh() is True
        samples = scrape(registry)
        assert value(samples, "number_in_use", number=NUMBER) == 0
        assert value(samples, "number_waiting", number=NUMBER) == 0
        assert value(samples, "number_state", number=NUMBER, state="cooling") == 1
        assert value(samples, "number_state", number=NUMBER, state="active") == 0
        assert value(samples, "group_in_use", kind="trunk", group="t") == 0
        # OTHER is neither configured nor held any more: it leaves the scrape.
        assert value(samples, "number_in_use", number=OTHER) is None
        assert value(samples, "number_state", number=OTHER, state="active") is None


async def test_running_refreshes_until_the_block_ends(
    new_throttle: ThrottleFactory, new_backend: BackendFactory, backend_kind: str
) -> None:
    registry = CollectorRegistry()
    async with (
        new_throttle(config=CONFIG) as dialer,
        inspector_on(new_backend, backend_kind) as inspector,
    ):
        collector = SharedStateCollector(inspector, registry=registry)
        async with collector.running(interval=0.05):
            # The first read is done when the block starts.
            assert value(scrape(registry), "number_in_use", number=NUMBER) == 0
            await dialer.acquire(NUMBER, timeout=0)
            with anyio.fail_after(5):
                while value(scrape(registry), "number_in_use", number=NUMBER) != 1:
                    await anyio.sleep(0.02)
        await dialer.acquire(NUMBER, timeout=0)
        await anyio.sleep(0.2)  # four intervals: no read any more
        samples = scrape(registry)
        assert value(samples, "number_in_use", number=NUMBER) == 1
        assert (value(samples, "shared_scrape_age_seconds") or 0) >= 0.2


async def test_beside_the_hook_on_one_registry(
    new_throttle: ThrottleFactory, new_backend: BackendFactory, backend_kind: str
) -> None:
    """A process may export its own figures and the shared ones: no name is registered twice,
    and one scrape shows both."""
    registry = CollectorRegistry()
    hook = PrometheusHook(registry)
    async with (
        new_throttle(config=CONFIG, hooks=[hook]) as dialer,
        inspector_on(new_backend, backend_kind) as inspector,
    ):
        collector = SharedStateCollector(inspector, registry=registry)
        await dialer.acquire(NUMBER, timeout=0)
        await collector.refresh()
        samples = scrape(registry)
        assert value(samples, "slots_in_use", number=NUMBER) == 1
        assert value(samples, "number_in_use", number=NUMBER) == 1
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            SharedStateCollector(inspector, registry=registry)  # the same names again


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_bad_interval_and_timeout_are_refused() -> None:
    registry = CollectorRegistry()
    async with Inspector.from_url("memory://") as inspector:
        with pytest.raises(InvalidArgument, match="timeout"):
            SharedStateCollector(inspector, registry=registry, timeout=0)
        assert list(registry.collect()) == []  # nothing registered
        collector = SharedStateCollector(inspector, registry=registry)
        with pytest.raises(InvalidArgument, match="interval"):
            async with collector.running(interval=-1):
                pass


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_backend_down_shows_as_backend_up_0_and_ageing_values(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    with own_server() as (url, server):
        async with (
            Throttle.from_url(url, key_prefix=prefix) as dialer,
            Inspector.from_url(url, key_prefix=prefix) as inspector,
        ):
            collector = SharedStateCollector(inspector, registry=registry, timeout=2)
            await dialer.acquire(NUMBER, timeout=0)
            assert await collector.refresh() is True
            server.stop()
            with caplog.at_level(logging.WARNING, "callthrottle.prometheus"):
                assert await collector.refresh() is False
                first = scrape(registry)
                await anyio.sleep(0.3)
                assert await collector.refresh() is False
                second = scrape(registry)
            warnings = [r for r in caplog.records if r.name == "callthrottle.prometheus"]
            assert len(warnings) == 1  # once, when reads start failing
            for samples in (first, second):
                assert value(samples, "shared_backend_up") == 0
                assert value(samples, "number_in_use", number=NUMBER) == 1  # the last values
            age_first = value(first, "shared_scrape_age_seconds") or 0
            age_second = value(second, "shared_scrape_age_seconds") or 0
            assert age_second >= age_first + 0.3
            server.start()
            assert await collector.refresh() is True
            samples = scrape(registry)
            assert value(samples, "shared_backend_up") == 1
            assert (value(samples, "shared_scrape_age_seconds") or math.inf) < 0.3


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("where", ["redis", "cluster"])
async def test_a_read_writes_nothing(
    where: str, prefix: str, request: pytest.FixtureRequest
) -> None:
    """Every key of the dialers (its DUMP and expiry) and the function libraries are the same
    after reads and scrapes, with the dialers' configuration or another one (whose pool lists
    another number)."""
    url = str(request.getfixturevalue("redis_url" if where == "redis" else "cluster_url"))
    other = Config.from_dict({"pools": {"p": {"numbers": [OTHER]}}, "trunks": {"u": {"cap": 2}}})
    async with Throttle.from_url(url, key_prefix=prefix, owner_id="dialer-1", config=CONFIG) as d:
        await d.acquire(NUMBER, token="call-1", timeout=0)
        await d.acquire_from("p", token="call-2", timeout=0)
        await d.set_state(OTHER, "flagged", reason="spam label")
        clients = _clients(url)
        before = _keyspace(clients, prefix)
        for config in (Config.from_dict(CONFIG), other):
            async with Inspector.from_url(url, key_prefix=prefix, config=config) as inspector:
                registry = CollectorRegistry()
                collector = SharedStateCollector(inspector, registry=registry)
                async with collector.running(interval=0.01):
                    await anyio.sleep(0.1)
                samples = scrape(registry)
                assert value(samples, "number_in_use", number=NUMBER) == 2
                assert value(samples, "number_in_use", number=OTHER) == 0
        assert value(samples, "pool_members", pool="p") == 1
        _assert_same(before, _keyspace(clients, prefix))
        assert await d.pool_members("p") == [NUMBER]


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_runs_as_a_redis_user_that_may_not_write(redis_url: str, prefix: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    user = "metrics-" + prefix.rstrip(":")
    admin.acl_setuser(
        user, enabled=True, passwords=["+secret"], keys=["*"], channels=[],
        commands=["-@all", "+@read", "+ping", "+time", "+fcall_ro", "+eval_ro", "+evalsha_ro"],
    )  # fmt: skip
    try:
        async with Throttle.from_url(redis_url, key_prefix=prefix, config=CONFIG) as dialer:
            await dialer.acquire(NUMBER, timeout=0)
            viewer = redis_url.replace("redis://", f"redis://{user}:secret@")
            config = Config.from_dict(CONFIG)
            async with Inspector.from_url(viewer, key_prefix=prefix, config=config) as inspector:
                registry = CollectorRegistry()
                assert await SharedStateCollector(inspector, registry=registry).refresh() is True
                samples = scrape(registry)
                assert value(samples, "number_in_use", number=NUMBER) == 1
                assert value(samples, "group_in_use", kind="trunk", group="t") == 1
                assert value(samples, "pool_members", pool="p") == 1
    finally:
        admin.acl_deluser(user)
        admin.close()


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_from_url_starts_with_the_backend_down_and_closes_what_it_opened(
    prefix: str,
) -> None:
    """A collector of its own inspector may start while the server is down (backend_up 0, no
    values yet), reads once it is up, and leaves no connection open when its block ends."""
    registry = CollectorRegistry()
    with own_server() as (url, server):
        admin = redis.Redis.from_url(url)
        try:
            server.stop()
            collector = SharedStateCollector.from_url(
                url, key_prefix=prefix, config=Config.from_dict(CONFIG), registry=registry
            )
            async with collector.running(interval=0.05):
                samples = scrape(registry)
                assert value(samples, "shared_backend_up") == 0
                assert value(samples, "shared_scrape_age_seconds") is None  # nothing read yet
                assert value(samples, "number_in_use", number=NUMBER) is None
                server.start()
                lift_fence(url)  # a restarted server fences new calls (see the README)
                clients = len(admin.client_list())
                async with Throttle.from_url(url, key_prefix=prefix, config=CONFIG) as dialer:
                    await dialer.acquire(NUMBER, timeout=0)
                    with anyio.fail_after(5):
                        while value(scrape(registry), "number_in_use", number=NUMBER) != 1:
                            await anyio.sleep(0.02)
                assert len(admin.client_list()) > clients  # the collector's connection
            assert len(admin.client_list()) == clients
            assert value(scrape(registry), "shared_backend_up") == 1  # the last read's
        finally:
            admin.close()


async def test_an_error_in_the_running_block_comes_out_as_it_is() -> None:
    """The application's own error leaves ``running`` unwrapped (not in an ExceptionGroup),
    and the refreshing stops."""
    collector = SharedStateCollector.from_url("memory://", registry=CollectorRegistry())
    with pytest.raises(LookupError, match="the application's"):
        async with collector.running(interval=0.05):
            raise LookupError("the application's")
    assert collector.up


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_stalled_server_fails_the_read_after_the_timeout(prefix: str) -> None:
    """A read slower than ``timeout`` counts as failed (the scrape keeps being served from the
    last reading meanwhile, and does not wait)."""
    registry = CollectorRegistry()
    with own_server() as (url, _):
        stall = redis.Redis.from_url(url)
        collector = SharedStateCollector.from_url(
            url, key_prefix=prefix, registry=registry, timeout=0.3
        )
        try:
            assert await collector.refresh() is True
            async with anyio.create_task_group() as group:
                group.start_soon(
                    anyio.to_thread.run_sync, stall.execute_command, "DEBUG", "SLEEP", 2
                )
                await anyio.sleep(0.1)  # the server is asleep
                began = time.monotonic()
                assert await collector.refresh() is False
                assert time.monotonic() - began < 1.5
                assert value(scrape(registry), "shared_backend_up") == 0
        finally:
            await collector.aclose()
            stall.close()


ZONE = "Asia/Shanghai"
HELD, PLAIN, NEVER = "+8657188880003", "+8657188880004", "+8657188880005"


def _paid_until() -> dt.date:
    return dt.datetime.now(ZoneInfo(ZONE)).date() + dt.timedelta(days=30)


def _noon(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time(12), tzinfo=ZoneInfo(ZONE)).timestamp()


async def test_days_left_and_the_calendars_state_across_a_paid_period(
    new_throttle: ThrottleFactory, new_backend: BackendFactory, backend_kind: str
) -> None:
    """Per number with a paid period (dialled or not), the days left on the inspector's
    calendar, and its state: active the last day paid for, expired from midnight and through
    the grace period, then released, whatever its run-time state says but an operator's
    ``released``. A number without a paid period has no days-left series."""
    paid_until = _paid_until()
    terms = {
        "timezone": ZONE,
        "numbers": {
            n: {"paid_until": paid_until.isoformat(), "grace_days": 7}
            for n in (NUMBER, HELD, NEVER)
        }
        | {PLAIN: {"cap": 3}},
    }
    clock = [_noon(paid_until)]
    registry = CollectorRegistry()
    async with (
        new_throttle(config=terms) as dialer,
        Inspector(
            new_backend(),
            config=Config.from_dict(terms),
            close_backend=backend_kind != "memory",
            calendar=lambda: clock[0],
        ) as inspector,
    ):
        collector = SharedStateCollector(inspector, registry=registry)
        await dialer.acquire(NUMBER, timeout=0)  # known to the backend, active at run time
        await dialer.acquire(PLAIN, timeout=0)
        await dialer.set_state(HELD, "released", reason="given back")
        lapses_at = _noon(paid_until + dt.timedelta(days=1)) - 12 * 3600
        moments = [
            (_noon(paid_until), 1, "active"),  # the last day paid for
            (lapses_at - 1, 1, "active"),  # its last second
            (lapses_at, 0, "expired"),  # the day it lapses, from midnight
            (_noon(paid_until + dt.timedelta(days=4)), -3, "expired"),  # inside the grace period
            (_noon(paid_until + dt.timedelta(days=7)), -6, "expired"),  # its last day
            (_noon(paid_until + dt.timedelta(days=8)), -7, "released"),  # after it
        ]
        for now, left, state in moments:
            clock[0] = now
            assert await collector.refresh() is True
            samples = scrape(registry)
            for number in (NUMBER, HELD, NEVER):
                assert value(samples, "number_days_left", number=number) == left, (now, number)
            for each in STATES:
                expected = 1 if each == state else 0
                assert value(samples, "number_state", number=NUMBER, state=each) == expected
                assert value(samples, "number_state", number=NEVER, state=each) == expected
                released = 1 if each == "released" else 0
                assert value(samples, "number_state", number=HELD, state=each) == released
                active = 1 if each == "active" else 0
                assert value(samples, "number_state", number=PLAIN, state=each) == active
            assert value(samples, "number_days_left", number=PLAIN) is None
            assert value(samples, "number_in_use", number=NUMBER) == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_calendar_that_is_not_a_clock_is_refused() -> None:
    registry = CollectorRegistry()
    with pytest.raises(InvalidArgument, match="calendar"):
        SharedStateCollector.from_url("memory://", registry=registry, calendar=5)  # type: ignore[arg-type]
    assert list(registry.collect()) == []  # nothing registered
