"""Every function is safe to run twice for the same token, in the memory backend too: each
Lua function's memory twin, run twice on a state (its first reply lost), leaves the state that
one run leaves.

For each case of ``tests/_retried.py`` the same state is built in two backends on one clock
that stands still; the call runs once on the first and twice on the second. Then the whole
state (every field of the backend), every event told to the owners, and every view must be
equal, and so must the replies, except where the case says how the second run answers.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from callthrottle.backends import MemoryBackend

from .._retried import CASES, CONFIG, OWNERS, Case, lua_functions, plain, retry_reply, views

# Not part of the decision: the clocks, the event loop's checkpoint, where numbers live, who
# listens, and the random source of the local strategy's samples.
_NOT_STATE = frozenset({"_checkpoint", "_clock", "_wall_clock", "_layout", "_listeners", "random"})
# A pool's order, which a refused pick run again moves along (see the cases' notes).
_ORDER = frozenset({"cursor", "picks", "picked", "buckets"})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_every_lua_function_has_a_retry_case() -> None:
    assert {case.function for case in CASES} == lua_functions()


def _state(value: Any, skip: frozenset[str]) -> Any:
    """Every field of the backend, recursively, in order (a dict's order is a line's)."""
    if hasattr(value, "__slots__") and not isinstance(value, type):
        return {
            name: _state(getattr(value, name), skip)
            for cls in type(value).__mro__
            for name in getattr(cls, "__slots__", ())
            if name not in skip and hasattr(value, name)
        }
    if isinstance(value, dict):
        return [[_state(k, skip), _state(v, skip)] for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [_state(v, skip) for v in value]
    return plain(value)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_a_call_run_twice_leaves_the_state_of_one_run(case: Case) -> None:
    single = MemoryBackend(clock=lambda: 1_000_000.0, wall_clock=lambda: 1_780_000_000.0)
    twice = MemoryBackend(clock=lambda: 1_000_000.0, wall_clock=lambda: 1_780_000_000.0)
    told: dict[MemoryBackend, list[tuple[str, str, str, str]]] = {single: [], twice: []}
    async with anyio.create_task_group() as tg:
        for backend in (single, twice):
            backend.use_layout(CONFIG)
            await backend.open()
            for owner in OWNERS:

                def tell(
                    kind: str, number: str, token: str, b: Any = backend, o: str = owner
                ) -> None:
                    told[b].append((o, kind, number, token))

                await tg.start(backend.listen, owner, tell)
            await case.setup(backend)
            told[backend].clear()

        first = await case.run(single)
        lost = await case.run(twice)
        again = await case.run(twice)
        assert plain(lost) == plain(first)
        assert plain(again) == plain(retry_reply(case, first))

        one, two = told[single], told[twice]
        if case.nudges_again:
            # The second run may tell waiters again to ask again; nothing else is repeated.
            assert two[: len(one)] == one
            assert {event[1] for event in two[len(one) :]} <= {"nudged"}
            assert set(two) == set(one)
        else:
            assert two == one
        skip = _NOT_STATE | _ORDER if case.order_moves else _NOT_STATE
        assert _state(twice, skip) == _state(single, skip)
        assert plain(await views(twice)) == plain(await views(single))
        tg.cancel_scope.cancel()
