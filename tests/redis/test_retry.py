"""Every Lua function is safe to run twice for the same token: a call whose reply is cut (the
server ran it, the connection dropped before the answer arrived) is sent again by the backend
on a new connection, and leaves the state one run leaves.

For each case of ``tests/_retried.py`` (every function of the library has one at least), the
same state is built under two key prefixes; the call runs once on the first, and on the
second through a proxy that cuts its reply, so that the backend's own resend path runs it
again. Then every key of the two prefixes (type, value, expiry), every event published to the
owners, and every view must match (times within a second), and so must the replies, except
where the case says how the retry answers.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from callthrottle.backends import RedisBackend
from callthrottle.backends._lane import ScriptLane, pack
from callthrottle.backends.redis import _LIBRARY

from .._retried import (
    CASES,
    CONFIG,
    OWNERS,
    Case,
    differences,
    lua_functions,
    marker,
    plain,
    retry_reply,
    timeless,
    views,
)
from .._servers import fence_mark
from ._proxy import CuttingProxy

pytestmark = pytest.mark.redis
MS, SECONDS = 1000, 1.0  # how far apart the two runs' times may be
_ORDER_KEYS = ("{p:p}:pool:p:c", "{p:p}:pool:p:s")  # the round-robin cursor, the pick counter
_LOAD_KEY = "{p:p}:pool:p:l"
_LOAD_SCALE = 1_000_000


def test_every_lua_function_has_a_retry_case() -> None:
    assert {case.function for case in CASES} == lua_functions()


class _Events:
    """The events published to every owner of the test, under each key prefix, in order."""

    def __init__(self, prefixes: tuple[str, str]) -> None:
        self.prefixes = prefixes
        self.seen: dict[str, list[tuple[str, str]]] = {prefix: [] for prefix in prefixes}
        self._flushed = asyncio.Event()

    def channels(self) -> list[str]:
        return [f"{prefix}owner:{owner}" for prefix in self.prefixes for owner in OWNERS]

    def deliver(self, channel: bytes, payload: bytes) -> None:
        if payload == b"flush":
            self._flushed.set()
            return
        for prefix in self.prefixes:
            if channel.decode().startswith(prefix):
                self.seen[prefix].append((channel.decode()[len(prefix) :], payload.decode()))

    async def flush(self, lane: ScriptLane) -> None:
        """Wait until every event published so far has arrived (one server: in order)."""
        self._flushed.clear()
        await lane.call(pack("SPUBLISH", self.channels()[-1], "flush"))
        await asyncio.wait_for(self._flushed.wait(), 5)

    def clear(self) -> None:
        for events in self.seen.values():
            events.clear()


async def _dump(client: Any, prefix: str, case: Case) -> dict[str, Any]:
    """Every key under ``prefix``: its type, its value and when it expires (ms, -1: never);
    ``client``: a ``redis.asyncio.Redis``."""
    keys: dict[str, Any] = {}
    async for raw in client.scan_iter(match=prefix.replace("[", "\\[") + "*", count=1000):
        name = raw.decode()[len(prefix) :]
        kind = (await client.type(raw)).decode()
        value: Any
        if kind == "string":
            value = await client.get(raw)
        elif kind == "hash":
            value = await client.hgetall(raw)
        elif kind == "set":
            value = sorted(await client.smembers(raw))
        else:
            assert kind == "zset", (name, kind)
            pairs = await client.zrange(raw, 0, -1, withscores=True)
            value = sorted(
                ([member.decode(), score] for member, score in pairs),
                key=lambda pair: (timeless(pair[0]), pair[0]),
            )
            if case.order_moves and name == _LOAD_KEY:
                value = [[member, score // _LOAD_SCALE] for member, score in value]
        if case.order_moves and name in _ORDER_KEYS:
            value = "(moves on a retry)"
        if raw.decode() == fence_mark(prefix):
            value = "(when it was made)"  # the prefix's marker: its value is its making time
        keys[name] = [kind, plain(value), await client.execute_command("PEXPIRETIME", raw)]
    return keys


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_a_call_whose_reply_was_cut_leaves_the_state_of_one_run(
    redis_url: str, lane: ScriptLane, case: Case
) -> None:
    proxy = CuttingProxy.in_front_of(redis_url)
    run = uuid.uuid4().hex[:10]
    once, cut = f"r{run}a:", f"r{run}b:"
    events = _Events((once, cut))
    subscription = await lane.subscribe(events.channels(), events.deliver)
    client = aioredis.Redis.from_url(redis_url)
    async with proxy.running():
        proxied = proxy.url
        single = RedisBackend.from_url(proxied, key_prefix=once)
        retried = RedisBackend.from_url(proxied, key_prefix=cut)
        try:
            for backend in (single, retried):
                backend.use_layout(CONFIG)
                await backend.open()
                await case.setup(backend)
            await events.flush(lane)
            events.clear()

            await lane.load(_LIBRARY)  # so that each run sends its calls once
            proxy.sent[marker(case.function)] = 0
            first = await case.run(single)
            calls = proxy.sent[marker(case.function)]
            proxy.cut_reply_to(marker(case.function))
            again = await case.run(retried)
            # The call ran, its reply was cut (with the replies to any call sent with it on the
            # same connection), and the backend sent it again.
            assert proxy.cuts == 1
            assert calls < proxy.sent[marker(case.function)] <= 2 * calls

            assert differences(plain(again), plain(retry_reply(case, first)), MS, SECONDS) == []
            await events.flush(lane)
            one, two = events.seen[once], events.seen[cut]
            if case.nudges_again:
                # The second run may tell waiters again to ask again; nothing else is repeated.
                assert two[: len(one)] == one
                assert {event[1].split("\t")[0] for event in two[len(one) :]} <= {"n"}
                assert set(two) == set(one)
            else:
                assert two == one
            keys = await _dump(client, once, case), await _dump(client, cut, case)
            assert differences(keys[0], keys[1], MS, SECONDS) == []
            seen = plain(await views(single)), plain(await views(retried))
            assert differences(seen[0], seen[1], MS, SECONDS) == []
        finally:
            subscription.close()
            await single.aclose()
            await retried.aclose()
            await client.aclose()
