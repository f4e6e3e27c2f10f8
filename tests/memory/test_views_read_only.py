"""The memory backend's views change nothing, as the Redis functions they mirror (registered
``no-writes`` there): not even dropping what lapsed (leases, a group's holders, a cool-down, a
lowered cap, a rate log), which the next decision does."""

from __future__ import annotations

from typing import Any

import pytest

from callthrottle import Throttle
from callthrottle._config import Config
from callthrottle._inspector import Inspector
from callthrottle.backends import MemoryBackend, PolicyChange

A, B = "+8657188880001", "+8657188880002"
CONFIG = {
    "trunks": {"trunk-400": {"cap": 5}},
    "numbers": {A: {"trunk": "trunk-400", "rates": "5/minute"}},
    "pools": {"sales": {"numbers": [A, B]}},
}
_NOT_STATE = {"_listeners", "_checkpoint", "_clock", "_wall_clock", "_layout"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _state(value: Any) -> Any:
    """Everything the value holds, as plain data (slotted records included)."""
    if isinstance(value, dict):
        return {repr(k): _state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_state(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    slots = [
        name
        for cls in type(value).__mro__
        for name in getattr(cls, "__slots__", ())
        if name not in _NOT_STATE and hasattr(value, name)
    ]
    if slots and not isinstance(value, (str, bytes)):
        return {name: _state(getattr(value, name)) for name in slots}
    return value


async def test_views_change_nothing_even_once_everything_lapsed() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    throttle = Throttle(backend, config=CONFIG, lease_ttl=60.0, renew_interval=50.0)
    async with throttle:
        await throttle.acquire(A, token="call-1", timeout=0)
        await throttle.acquire_from("sales", token="call-2", timeout=0)
        await throttle.set_state(B, "cooling", duration=1.0)
        await backend.set_policy(A, PolicyChange(lowered=(1, 1.0)))
        clock.now += 86_400.0  # every lease, cool-down, lowered cap and rate log lapsed

        before = _state(backend)
        async with Inspector(backend, config=Config.from_dict(CONFIG)) as inspector:
            for number in (A, B):
                assert (await inspector.usage(number)).in_use == 0
                assert await inspector.holders(number) == []
                assert await inspector.oldest_wait(number) is None
                assert [w.used for w in await inspector.window_usage(number)] == [0] * (number == A)
                assert (await inspector.status(number)).state.value == "active"
            assert (await inspector.group_usage("trunk", "trunk-400")).in_use == 0
            assert set(await inspector.known_numbers()) <= {A, B}
            assert await inspector.known_pools() == {"sales": [A, B]}
            assert await inspector.pool_members("sales") == [A, B]
        assert _state(backend) == before
