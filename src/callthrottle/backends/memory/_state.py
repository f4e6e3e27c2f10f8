"""The state every part of the memory backend shares, and the events it sends."""

from __future__ import annotations

import math
import time
import types
from typing import TYPE_CHECKING

from anyio.lowlevel import checkpoint

from .._base import OWN_TAGS, EventListener, Layout
from ._records import _Ended, _Lapsed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator

    from .._policy import Published
    from ._policy import _Policy
    from ._pool_state import _Pool
    from ._records import _Entry, _NumberState
    from ._sessions import _Session
    from ._windows import _RateLog


@types.coroutine
def yield_to_loop() -> Generator[None, None, None]:
    """anyio's checkpoint on asyncio (``await asyncio.sleep(0)``, whose body this is): a bare
    yield, which the task takes as "run me again soon" (and where a cancellation reaches it)."""
    yield


class _MemoryState:
    """The backend's data, by number, group, pool and session; each part of
    :class:`~callthrottle.backends.memory.MemoryBackend` works on it (on Redis, the keys)."""

    __slots__ = (
        "_callees", "_checkpoint", "_clock", "_ended", "_group_holders", "_group_logs",
        "_group_policies", "_group_reserve_line", "_group_waiters", "_lapsed", "_layout",
        "_listeners", "_numbers", "_policies", "_pools", "_published", "_rates", "_sessions",
        "_stamp", "_stamp_reached", "_wall_clock",
    )  # fmt: skip

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        # anyio's checkpoint; once opened, the running event loop's own (the same function,
        # without finding the event loop again on every call).
        self._checkpoint: Callable[[], Awaitable[None]] = checkpoint
        self._numbers: dict[str, _NumberState] = {}
        # Per owner, the listeners of its throttles (a session's may be several).
        self._listeners: dict[str, tuple[EventListener, ...]] = {}
        self._policies: dict[str, _Policy] = {}
        self._rates: dict[str, _RateLog] = {}
        self._callees: dict[tuple[str, str], _RateLog] = {}
        self._layout: Layout = OWN_TAGS
        # Per group ("trunk:x"): its live leases (the numbers' own entries), its rate log, and
        # its line: the callers waiting for one of its slots ((owner, number, token) -> when
        # the place lapses), first come first (a caller takes a free slot of the group only
        # when no caller ahead of it waits for one).
        self._group_holders: dict[str, dict[tuple[str, str], _Entry]] = {}
        self._group_logs: dict[str, _RateLog] = {}
        self._group_waiters: dict[str, dict[tuple[str, str, str], float]] = {}
        # Per group with a reserve: the callers in its line that may take a reserved slot
        # (priority calls), in line order (a freed reserved slot is the first one's).
        self._group_reserve_line: dict[str, dict[tuple[str, str, str], None]] = {}
        self._group_policies: dict[str, dict[str, object]] = {}
        self._pools: dict[str, _Pool] = {}
        self._ended = _Ended()
        self._lapsed = _Lapsed()
        self._sessions: dict[str, _Session] = {}
        # The published policy, newest first (the current one, then the ones it replaced), and
        # the highest policy version a decision was made with (see policy_stale in
        # _common.lua: one stamp, as a single Redis server has).
        self._published: list[Published] = []
        self._stamp = 0
        self._stamp_reached = -math.inf  # when the newest version reached it

    def _stale(self, version: int) -> bool:
        """Whether a decision made with policy ``version`` comes too late: a newer one is in
        force (the stamp is raised to a newer ``version``). Twin of ``policy_stale`` in
        ``_common.lua``."""
        if version < self._stamp:
            return True
        if version > self._stamp:
            self._raise_stamp(version)
        return False

    def _raise_stamp(self, version: int) -> None:
        """Twin of ``raise_stamp`` in ``_common.lua``."""
        if version > self._stamp:
            self._stamp = version
            self._stamp_reached = self._clock()

    def _notify(self, owner: str, kind: str, number: str, token: str) -> None:
        """Tell the owner's throttles (on Redis, a message on the owner's channel)."""
        for listener in self._listeners.get(owner, ()):
            listener(kind, number, token)

    def _forget_if_idle(self, number: str, state: _NumberState) -> None:
        """A number with no lease and nobody waiting leaves nothing behind (as its keys on
        Redis)."""
        if not state.holders and not state.queue:
            self._numbers.pop(number, None)
