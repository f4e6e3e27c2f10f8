"""The embedded backend: pure Python, one process, same semantics as Redis.

Its modules mirror the Lua library of the Redis backend (``backends/lua/``), a Lua file's twin
found by the file's name:

- ``_acquire.py``: ``acquire.lua`` (and ``batch.lua``'s acquires)
- ``_slots.py``: ``release.lua`` (and ``batch.lua``'s releases), ``abandon.lua``,
  ``renew.lua``, ``restore.lua``
- ``_pools.py``: ``pick.lua``, ``pool_update.lua``, ``pool_members.lua``, ``pool_leave.lua``
- ``_policy.py``: ``set_policy.lua``, ``get_policy.lua``, ``set_group_policy.lua``
- ``_views.py``: ``usage.lua``, ``holders.lua``, ``window_usage.lua``, ``group_usage.lua``
- ``_sessions.py``: ``keepalive.lua``
- ``_published.py``: ``policy_publish.lua`` (and ``_state.py``: ``policy_stale``)
- ``_owners.py``: ``release_owner.lua``, ``release_owner_lines.lua``, ``reset_number.lua``
- this module: ``fence_lift.lua`` (nothing to lift), and what has no twin (``open``,
  ``listen``, ``aclose``)
- ``_lines.py`` (a number's line, a pool's line) and ``_groups.py`` (a group's leases and
  line): the helpers of ``_common.lua`` the others share, on the records of ``_records.py``
  (a number's leases and line), ``_windows.py`` (rate logs) and ``_pool_state.py`` (a pool).

Each part is a class over the state they share (``_state.py``): :class:`MemoryBackend` is
their sum, so that a call goes straight to its method, without a hop on the hot path.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import anyio
from anyio.lowlevel import current_token

from ._owners import _Owners
from ._pools import _Pools
from ._published import _PolicyBook
from ._sessions import _Sessions
from ._slots import _Slots
from ._state import yield_to_loop
from ._views import _Views

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from .._base import EventListener, Layout

__all__ = ("MemoryBackend",)


class MemoryBackend(_Pools, _Slots, _Views, _Owners, _Sessions, _PolicyBook):
    """Slots kept in this process's memory: the embedded default (``memory://``).

    Several :class:`~callthrottle.Throttle` objects may share one instance, standing in for
    several dialer processes; the state is lost when the process exits. Time comes from
    ``clock`` (seconds, monotonic); ``wall_clock`` (seconds since the epoch) only places local
    midnight for calendar-day windows. Tests may replace either.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        holders = sum(len(s.holders) for s in self._numbers.values())
        waiting = sum(len(s.queue) for s in self._numbers.values())
        return f"<MemoryBackend {len(self._numbers)} numbers, {holders} leases, {waiting} waiting>"

    @property
    def pools_place_numbers(self) -> bool:
        """No Lua twin: a number's place never depends on its pools here."""
        return False

    def use_layout(self, layout: Layout) -> None:
        """No Lua twin: where numbers live is the throttles' configuration."""
        self._layout = layout

    async def open(self) -> None:
        """No Lua twin: nothing to connect to."""
        token = current_token()
        self._checkpoint = token.backend_class.checkpoint
        if isinstance(token.native_token, asyncio.AbstractEventLoop):
            self._checkpoint = yield_to_loop  # the same, without two calls around it
        await self._checkpoint()

    async def listen(
        self, owner: str, listener: EventListener, *, task_status: TaskStatus[None]
    ) -> None:
        """No Lua twin: events are delivered in-process (on Redis, by sharded pub/sub)."""
        self._listeners[owner] = (*self._listeners.get(owner, ()), listener)
        try:
            task_status.started()
            await anyio.sleep_forever()
        finally:
            others = tuple(each for each in self._listeners.get(owner, ()) if each is not listener)
            if others:
                self._listeners[owner] = others
            else:
                self._listeners.pop(owner, None)

    async def lift_fence(self) -> None:
        """Lua twin: ``fence_lift.lua``. Nothing to lift: this backend never loses its data."""
        await self._checkpoint()

    async def aclose(self) -> None:
        """No Lua twin: nothing to disconnect."""
        await self._checkpoint()
