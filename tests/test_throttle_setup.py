"""Building and opening a throttle: validation before any connection, clear lifecycle errors."""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
import pytest

from callthrottle import InvalidArgument, Reaction, Throttle, ThrottleError, UnknownScheme
from callthrottle.backends import MemoryBackend, RedisBackend

BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"default_limit": 0}, "default_limit must be an int from 1 to 100000, got 0"),
    ({"default_limit": "20"}, "default_limit must be an int from 1 to 100000"),
    (
        {"lease_ttl": 0},
        "lease_ttl must be a number of seconds from 0.001 to 31622400 .366 days., got 0",
    ),
    ({"lease_ttl": -1.0}, "lease_ttl must be a number of seconds from 0.001 to 31622400"),
    ({"lease_ttl": math.inf}, "lease_ttl must be a number of seconds from 0.001 to 31622400"),
    ({"max_hold": 0}, "max_hold must be a number of seconds from 0.001 to 31622400"),
    ({"owner_id": "a b"}, "owner_id must be free of whitespace"),
    ({"renew_interval": 30.0}, "renew_interval must be shorter than lease_ttl"),
    ({"calendar": 1.7e9}, "calendar must be None or a callable returning seconds since the epoch"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Throttle.from_url("memory://", **options)
    with pytest.raises(InvalidArgument, match=message):
        Throttle(MemoryBackend(), **options)


@pytest.mark.parametrize("url", ["memcached://localhost", "localhost:6379", "http://x", ""])
def test_unknown_scheme_lists_the_supported_ones(url: str) -> None:
    with pytest.raises(UnknownScheme, match="memory://, redis://, rediss://, unix://") as caught:
        Throttle.from_url(url)
    assert caught.value.argument == "url"


def test_url_must_be_a_string() -> None:
    with pytest.raises(InvalidArgument, match="url must be a str"):
        Throttle.from_url(None)  # type: ignore[arg-type]


def test_memory_url_takes_no_redis_options() -> None:
    with pytest.raises(InvalidArgument, match="options must be empty for memory://"):
        Throttle.from_url("memory://", socket_timeout=1)


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://localhost:6380/1", "unix:///tmp/redis.sock"]
)
def test_redis_urls_make_a_redis_backend_without_connecting(url: str) -> None:
    throttle = Throttle.from_url(url, key_prefix="app:")
    assert isinstance(throttle.backend, RedisBackend)
    assert "prefix='app:'" in repr(throttle.backend)


async def test_a_throttle_must_be_opened_before_use() -> None:
    throttle = Throttle.from_url("memory://")
    with pytest.raises(ThrottleError, match="not open: use it as `async with"):
        await throttle.acquire("+8657188880001")
    async with throttle:
        assert "(open)" in repr(throttle)
        with pytest.raises(ThrottleError, match="already open"):
            await throttle.__aenter__()
    assert "(closed)" in repr(throttle)
    with pytest.raises(ThrottleError, match="not open"):
        await throttle.usage("+8657188880001")


def test_owner_id_defaults_to_host_pid_random() -> None:
    import os

    first, second = Throttle.from_url("memory://"), Throttle.from_url("memory://")
    assert first.owner_id != second.owner_id
    assert f":{os.getpid()}:" in first.owner_id


@pytest.mark.parametrize("region", ["XX", "china", 86, ""])
def test_default_region_must_be_a_region_code(region: object) -> None:
    with pytest.raises(InvalidArgument, match="default_region must be None or a two-letter"):
        Throttle.from_url("memory://", default_region=region)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("feedback", "message"),
    [
        ({"x": Reaction("flag")}, "outcome must be a SIP status"),
        ({607: "cooldown"}, "feedback\\['607'\\] must be a Reaction"),
        ({607: Reaction("sleep")}, "action must be one of cooldown, flag, lower_cap, none"),
        ({607: Reaction("cooldown")}, "seconds must be a number of seconds from 0.001"),
        ({475: Reaction("lower_cap", seconds=5, factor=2)}, "factor must be a number between"),
    ],
)
def test_bad_feedback_configuration(feedback: dict[Any, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Throttle.from_url("memory://", feedback=feedback)


def test_an_owner_id_too_long_for_degraded_mode_is_refused_before_the_layout_changes() -> None:
    """Regression test: the in-process fallback's owner id (``<owner_id>:degraded``) was
    checked after the backend took the new throttle's layout, so a refused throttle had
    already moved the keys of a backend other throttles share."""
    backend = RedisBackend.from_url("redis://localhost:1")  # never connected
    tenant = {"tenants": {"a": {"cap": 5}}, "numbers": {"+8657188880001": {"tenant": "a"}}}
    Throttle(backend, config=tenant)
    keys = backend.keys_for("+8657188880001")
    assert "{t:a}" in keys[0]
    with pytest.raises(InvalidArgument, match=r"owner_id must be at most 247 characters with"):
        Throttle(backend, owner_id="x" * 250, degraded_share=0.5)
    assert backend.keys_for("+8657188880001") == keys
    Throttle(backend, owner_id="x" * 247, degraded_share=0.5)  # the longest that fits


async def test_a_slot_block_that_ends_after_close_gave_its_lease_back_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Close gives back every lease it holds: a ``slot()`` block that ends afterwards finds
    its lease released, and has no failure to report."""
    throttle = Throttle(MemoryBackend())
    async with throttle:
        block = throttle.slot("+8657188880001")
        lease = await block.__aenter__()
    assert lease.released
    caplog.clear()  # close's own warning: it gave a lease back
    with caplog.at_level(logging.WARNING, logger="callthrottle"):
        await block.__aexit__(None, None, None)
    assert caplog.records == []


async def test_a_session_slot_block_that_ends_while_closing_says_its_lease_was_not_given_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A session throttle's close leaves the session's leases held (they stay with the
    session): a ``slot()`` block that ends while it closes (here: while a waiter of the
    throttle withdraws) could not give its lease back, and says so, as it did before the
    close gave back leases silently for throttles without a session."""
    number = "+8657188880001"
    backend = MemoryBackend()
    throttle = Throttle(backend, session="sess-1", lease_ttl=30)
    ended = anyio.Event()
    with caplog.at_level(logging.WARNING, logger="callthrottle"):
        async with anyio.create_task_group() as tg:
            await throttle.__aenter__()

            async def call() -> None:
                async with throttle.slot(number, limit=1, timeout=0):
                    await ended.wait()  # the call ends as the throttle closes

            async def waiter() -> None:
                with pytest.raises(ThrottleError):
                    await throttle.acquire(number, limit=1, timeout=30)

            tg.start_soon(call)
            await anyio.sleep(0.05)
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            ended.set()
            await throttle.__aexit__(None, None, None)
    async with Throttle(backend) as observer:
        assert (await observer.usage(number, limit=1)).in_use == 1  # the session's still
    assert any("could not release" in record.getMessage() for record in caplog.records)
