"""redis-py's async client runs on asyncio only: everything here runs on asyncio."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

import redis
from callthrottle import Throttle
from callthrottle.backends._lane import ScriptLane

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


@pytest.fixture
async def lane(redis_url: str) -> AsyncIterator[ScriptLane]:
    """The script lane on its own connection to the test server."""
    client = aioredis.Redis.from_url(redis_url)
    opened = ScriptLane.for_client(client)
    yield opened
    await opened.aclose()
    await client.aclose()
