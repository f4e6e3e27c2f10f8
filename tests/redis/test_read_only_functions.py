"""The views are registered ``no-writes`` and called read only: the server itself would refuse
a write from one, whether it runs as the loaded library (``FCALL_RO``) or, on a server without
the library, as a script of the same code (``EVAL_RO``), which loads nothing."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest
from redis.exceptions import ResponseError

from callthrottle.backends._lane import Library, ScriptLane
from callthrottle.backends.redis import _LIBRARY

if TYPE_CHECKING:
    import redis

VIEWS = {
    "usage",
    "holders",
    "oldest_wait",
    "policy_read",
    "window_usage",
    "group_usage",
    "get_policy",
    "pool_members",
}

SHARED = "local KEYS, ARGV\nlocal function bind(keys, args) KEYS, ARGV = keys, args end"


def _flags(client: redis.Redis, library: Library) -> dict[str, list[bytes]]:
    """Each function of the library (as loaded on the server) and its flags."""
    name = library.source.partition("name=")[2].partition("\n")[0]
    [listed] = client.function_list(library=name)
    described: list[Any] = _map(listed)[b"functions"]
    functions = {_map(f)[b"name"].decode(): _map(f)[b"flags"] for f in described}
    return {fn: functions[full] for fn, full in library.functions.items()}


def _map(raw: list[Any]) -> dict[bytes, Any]:
    return dict(zip(raw[::2], raw[1::2], strict=True))


def test_the_views_and_only_they_are_registered_no_writes(sync_client: redis.Redis) -> None:
    # Loaded if missing (never replaced: the library's state, its fence, would start over).
    with contextlib.suppress(ResponseError):
        sync_client.function_load(_LIBRARY.source)
    flags = _flags(sync_client, _LIBRARY)
    assert _LIBRARY.read_only == VIEWS
    assert {fn for fn, listed in flags.items() if listed == [b"no-writes"]} == VIEWS
    # The one function that reaches several slots of a node: the publisher's stamps.
    assert flags["policy_stamp"] == [b"allow-cross-slot-keys"]
    assert all(listed == [] for fn, listed in flags.items() if fn not in {*VIEWS, "policy_stamp"})


async def test_a_view_that_would_write_is_refused_by_the_server(
    lane: ScriptLane, sync_client: redis.Redis, prefix: str
) -> None:
    writer = Library(
        "readonly_test",
        SHARED,
        {"sneaky": "-- flags: no-writes\nreturn redis.call('SET', KEYS[1], 'x')"},
    )
    key = prefix + "{x}:written"
    # Not loaded: run as EVAL_RO of the same code, and nothing is loaded for it.
    with pytest.raises(ResponseError, match="Write commands are not allowed"):
        await lane.read(writer, "sneaky", [key], ())
    assert not sync_client.function_list(library=writer.functions["sneaky"].rsplit("_", 1)[0])
    # Loaded: FCALL_RO.
    await lane.load(writer)
    with pytest.raises(ResponseError, match="Write commands are not allowed"):
        await lane.read(writer, "sneaky", [key], ())
    assert sync_client.exists(key) == 0
    sync_client.function_delete(writer.functions["sneaky"].rsplit("_", 1)[0])
