"""Fixtures: a real server, and throttles on every backend and event loop.

Conformance tests ask for ``backend_kind`` (directly or through ``throttle`` /
``new_throttle``) and run on these combinations, visible in their ids:

- ``asyncio-memory``, ``trio-memory``, ``asyncio-redis``, and ``asyncio-cluster``: a Redis
  Cluster of three masters the test session starts (the keys of the tests' numbers spread
  over all three).

redis-py's async client cannot run on trio, so there is no ``trio-redis`` conformance run;
``tests/redis/test_redis_backend.py::test_refuses_trio_with_a_clear_error`` asserts the error
the Redis backend gives there instead.

The conformance modules listed in ``SYNC_MODULES`` also run through the blocking facade
(``api`` = ``sync``: ``asyncio-memory-sync``, ``asyncio-redis-sync``): ``throttle`` and
``new_throttle`` then give an object with the async API whose every call is a blocking call of
a :class:`SyncThrottle`, made in a worker thread. The test's own event loop only waits for
those threads; every throttle of the test runs on the facade's loop (one per test, shared, so
throttles on one memory backend stay on one loop). Left out: tests that drive a backend
directly (they take ``new_backend``) and tests marked ``direct_only`` (each says why).
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, cast

import anyio
import anyio.to_thread
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

import redis
from callthrottle import Lease, Throttle
from callthrottle.backends import Backend, MemoryBackend, RedisBackend
from callthrottle.sync import SyncThrottle

from ._servers import cluster, redis_server

ASYNCIO = pytest.param(("asyncio", {"debug": True}), id="asyncio")
TRIO = pytest.param(("trio", {}), id="trio")

COMBINATIONS = [
    pytest.param(("asyncio", {"debug": True}), "memory", id="asyncio-memory"),
    pytest.param(("trio", {}), "memory", id="trio-memory"),
    pytest.param(
        ("asyncio", {"debug": True}), "redis", id="asyncio-redis", marks=pytest.mark.redis
    ),
    pytest.param(
        ("asyncio", {"debug": True}),
        "cluster",
        id="asyncio-cluster",
        marks=[pytest.mark.redis, pytest.mark.cluster],
    ),
]
SYNC_COMBINATIONS = [
    pytest.param(("asyncio", {"debug": True}), "memory", id="asyncio-memory-sync"),
    pytest.param(
        ("asyncio", {"debug": True}), "redis", id="asyncio-redis-sync", marks=pytest.mark.redis
    ),
]

#: Conformance modules whose tests also run through the blocking facade. Left out:
#: test_cancellation (it cancels callers in the middle of a call; a blocking call cannot be
#: cancelled by its caller, only given a timeout).
SYNC_MODULES = frozenset(
    {
        "test_admin",
        "test_callee",
        "test_capacity",
        "test_closing",
        "test_fifo",
        "test_groups",
        "test_health",
        "test_leases",
        "test_policies",
        "test_pools",
        "test_pools_unknown",
        "test_rates",
        "test_release",
        "test_sessions",
        "test_validation",
    }
)


def _runs_through_the_facade(metafunc: pytest.Metafunc) -> bool:
    module = metafunc.module.__name__
    if not module.startswith("tests.conformance.") or module.rpartition(".")[2] not in SYNC_MODULES:
        return False
    if "new_backend" in inspect.signature(metafunc.function).parameters:
        return False  # it drives a backend in its own event loop, which the facade cannot reach
    return metafunc.definition.get_closest_marker("direct_only") is None


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_kind" not in metafunc.fixturenames:
        return
    if "api" not in metafunc.fixturenames:
        metafunc.parametrize(("anyio_backend", "backend_kind"), COMBINATIONS)
        return
    combinations = [pytest.param(*p.values, "direct", id=p.id, marks=p.marks) for p in COMBINATIONS]
    if _runs_through_the_facade(metafunc):
        combinations += [
            pytest.param(*p.values, "sync", id=p.id, marks=p.marks) for p in SYNC_COMBINATIONS
        ]
    metafunc.parametrize(("anyio_backend", "backend_kind", "api"), combinations)


@pytest.fixture(params=[ASYNCIO, TRIO])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Tests that need no backend run on both event loops."""
    return request.param


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A Redis Cluster of three masters: ``redis+cluster://host:port,...``."""
    with cluster() as (url, _):
        _CLUSTERS.append(url)
        try:
            yield url
        finally:
            _CLUSTERS.remove(url)


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix unique to the test, so tests never see each other's keys."""
    return f"t{uuid.uuid4().hex[:12]}:"


BackendFactory = Callable[[], Backend]


@pytest.fixture
def new_backend(backend_kind: str, request: pytest.FixtureRequest) -> BackendFactory:
    """Make backends that share one state, like separate processes sharing one server.

    Memory: the same object every time. Redis: a new client each time, on a key prefix unique
    to the test.
    """
    if backend_kind == "memory":
        shared = MemoryBackend()
        return lambda: shared
    prefix: str = request.getfixturevalue("prefix")
    if backend_kind == "cluster":
        seeds: str = request.getfixturevalue("cluster_url")
        return lambda: RedisBackend.from_cluster_url(seeds, key_prefix=prefix)
    url: str = request.getfixturevalue("redis_url")
    return lambda: RedisBackend.from_url(url, key_prefix=prefix)


#: The Redis Clusters the session started (see ``cluster_url``).
_CLUSTERS: list[str] = []


@pytest.fixture(autouse=True)
def _drop_policy_stamps() -> Iterator[None]:
    """After each test, on the session's Redis Cluster: the policy stamps a test that
    published left (a key per slot, 16,384 of them, kept for good) are deleted, so that the
    SCANs of the tests after it do not walk them all."""
    yield
    for url in _CLUSTERS:
        for seed in url.removeprefix("redis+cluster://").split(","):
            host, port = seed.rsplit(":", 1)
            with redis.Redis(host=host, port=int(port)) as client:
                stamps = list(client.scan_iter(match="*{s[0-9]*}:stamp", count=5000))
                with client.pipeline(transaction=False) as pipe:
                    for key in stamps:
                        pipe.delete(key)  # one by one: they are on different slots
                    pipe.execute()


ThrottleFactory = Callable[..., Throttle]


@pytest.fixture
def api() -> str:
    """How the test reaches the throttle: ``direct`` (async) or ``sync`` (the facade)."""
    return "direct"


@pytest.fixture
def facade_portal(api: str) -> Iterator[BlockingPortal | None]:
    """The event loop every facade of a ``sync`` test runs its throttle on."""
    if api != "sync":
        yield None
        return
    with start_blocking_portal("asyncio") as portal:
        yield portal


@pytest.fixture
def new_throttle(
    new_backend: BackendFactory, facade_portal: BlockingPortal | None
) -> ThrottleFactory:
    """Make an unopened throttle on the test's shared state; use it with ``async with``."""

    def make(**options: Any) -> Throttle:
        options.setdefault("close_backend", True)
        return Throttle(new_backend(), **options)

    if facade_portal is None:
        return make

    def make_blocking(**options: Any) -> Throttle:
        Throttle(MemoryBackend(), **options)  # bad options fail here, as they do directly
        facade = SyncThrottle(partial(make, **options), portal=facade_portal)
        return cast("Throttle", _ThroughTheFacade(facade))

    return make_blocking


@pytest.fixture
async def throttle(new_throttle: ThrottleFactory) -> AsyncIterator[Throttle]:
    """An open throttle with the defaults (cap 20, 30 s leases)."""
    async with new_throttle() as opened:
        yield opened


class _ThroughTheFacade:
    """The async :class:`Throttle` API, served by a :class:`SyncThrottle`'s blocking calls.

    Every coroutine method becomes a blocking call in a worker thread (so many callers can
    block at once, as dialer threads do); ``slot``/``slot_from`` enter and leave the facade's
    context managers; properties and plain methods are the facade's own.
    """

    def __init__(self, facade: SyncThrottle) -> None:
        self._facade = facade
        self._threads: anyio.CapacityLimiter | None = None

    async def _blocking(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        assert self._threads is not None, "enter the throttle first"
        call = partial(function, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=self._threads)

    async def __aenter__(self) -> _ThroughTheFacade:
        self._threads = anyio.CapacityLimiter(1000)  # every caller of a test may block at once
        await self._blocking(self._facade.__enter__)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._blocking(self._facade.__exit__, *exc_info)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._facade, name)
        if inspect.iscoroutinefunction(getattr(Throttle, name, None)):
            return partial(self._blocking, attribute)
        return attribute

    @asynccontextmanager
    async def _enter(self, manager: Any) -> AsyncIterator[Lease]:
        lease: Lease = await self._blocking(manager.__enter__)
        try:
            yield lease
        except BaseException as exc:
            if not await self._blocking(manager.__exit__, type(exc), exc, exc.__traceback__):
                raise
        else:
            await self._blocking(manager.__exit__, None, None, None)

    def slot(self, number: str, **kwargs: Any) -> Any:
        return self._enter(self._facade.slot(number, **kwargs))

    def slot_from(self, pool: str, **kwargs: Any) -> Any:
        return self._enter(self._facade.slot_from(pool, **kwargs))
