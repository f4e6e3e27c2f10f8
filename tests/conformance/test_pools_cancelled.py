"""A pool's caller cancelled while it waits leaves the pool's line: the next callers of the
pool are served as soon as a number frees up."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from callthrottle import Throttle

if TYPE_CHECKING:
    from callthrottle.backends import Backend, PickResult

    from ..conftest import BackendFactory

POOL = "late"
NUMBER = "+8657188880001"
#: A shared tenant: on Redis Cluster, numbers added at run time need one (see the README).
CONFIG = {"default_tenant": "acme"}


class _SlowAfterPick:
    """Wraps a backend: once a pick was refused, every other call than a pick answers only
    after ``slow`` is set (a stalled server's reply)."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner
        self.refused = anyio.Event()
        self.slow = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name in ("pool_members",):

            async def stalled(*args: Any, **kwargs: Any) -> Any:
                await self.slow.wait()
                return await attribute(*args, **kwargs)

            return stalled
        return attribute

    async def pick(self, *args: Any, **kwargs: Any) -> PickResult:
        result = await self._inner.pick(*args, **kwargs)
        if result.number is None:
            self.refused.set()
        return result


async def test_a_pool_caller_cancelled_after_a_refused_pick_leaves_the_line(
    new_backend: BackendFactory,
) -> None:
    slow = _SlowAfterPick(new_backend())
    async with (
        Throttle(slow, close_backend=True, config=CONFIG, default_limit=1) as throttle,
        Throttle(new_backend(), close_backend=True, config=CONFIG, default_limit=1) as other,
    ):
        await other.add_to_pool(POOL, [NUMBER])
        held = await other.acquire_from(POOL, timeout=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(throttle.acquire_from, POOL, timeout=10))
            with anyio.fail_after(5):
                await slow.refused.wait()  # refused: the number is full, it waits in line
            await anyio.sleep(0.05)  # on to its next call (a slow one)
            tg.cancel_scope.cancel()  # hung up, or its deadline came
        slow.slow.set()
        assert await other.release(held)
        # The slot that freed goes to the next caller: no place of the cancelled caller is
        # left ahead of it in the pool's line.
        lease = await other.acquire_from(POOL, timeout=0)
        assert lease.number == NUMBER
        assert await other.release(lease)
