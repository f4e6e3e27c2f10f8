"""redis-py's async client runs on asyncio only: everything here runs on asyncio."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import redis
from callthrottle import Throttle

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sync_client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client, to look at the server from the side."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def throttle(redis_url: str, prefix: str) -> AsyncIterator[Throttle]:
    """An open throttle on the test server, on a key prefix of the test's own."""
    async with Throttle.from_url(redis_url, key_prefix=prefix) as opened:
        yield opened
