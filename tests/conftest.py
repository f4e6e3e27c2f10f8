"""Fixtures: a real server, and throttles on every backend and event loop.

Conformance tests ask for ``backend_kind`` (directly or through ``throttle`` /
``new_throttle``) and run on these combinations, visible in their ids:

- ``asyncio-memory``, ``trio-memory``, ``asyncio-redis``, and ``asyncio-cluster``: a Redis
  Cluster of three masters the test session starts (the keys of the tests' numbers spread
  over all three).

redis-py's async client cannot run on trio, so there is no ``trio-redis`` conformance run;
``tests/redis/test_redis_backend.py::test_refuses_trio_with_a_clear_error`` asserts the error
the Redis backend gives there instead.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from callthrottle import Throttle
from callthrottle.backends import Backend, MemoryBackend, RedisBackend

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


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_kind" in metafunc.fixturenames:
        metafunc.parametrize(("anyio_backend", "backend_kind"), COMBINATIONS)


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
        yield url


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


ThrottleFactory = Callable[..., Throttle]


@pytest.fixture
def new_throttle(new_backend: BackendFactory) -> ThrottleFactory:
    """Make an unopened throttle on the test's shared state; use it with ``async with``."""

    def make(**options: Any) -> Throttle:
        options.setdefault("close_backend", True)
        return Throttle(new_backend(), **options)

    return make


@pytest.fixture
async def throttle(new_throttle: ThrottleFactory) -> AsyncIterator[Throttle]:
    """An open throttle with the defaults (cap 20, 30 s leases)."""
    async with new_throttle() as opened:
        yield opened
