"""The published carrier policy: twin of ``policy_publish.lua``, ``policy_read.lua`` and
``policy_stamp.lua`` (the one stamp of this backend; the twin of ``policy_stale`` in
``_common.lua`` is ``_MemoryState._stale``)."""

from __future__ import annotations

from .._base import POLICY_HISTORY
from .._policy import Published
from ._state import _MemoryState


class _PolicyBook(_MemoryState):
    """``publish_policy``, ``published_policy``, ``policy_history``."""

    __slots__ = ()

    async def published_policy(self, newer_than: int = 0) -> Published | None:
        """Lua twin: ``policy_read.lua``."""
        await self._checkpoint()
        if not self._published or self._published[0].stamp <= newer_than:
            return None
        return self._published[0]

    async def policy_history(self, count: int) -> list[Published]:
        """Lua twin: ``policy_read.lua``."""
        await self._checkpoint()
        return self._published[1 : 1 + count]

    async def publish_policy(
        self,
        document: str,
        digest: str,
        *,
        expected: int,
        by: str,
        comment: str,
        floor: int = 0,
    ) -> Published | int:
        """Lua twin: ``policy_publish.lua`` (and ``policy_stamp.lua``, which raises a Cluster's
        other stamps: this backend has one)."""
        await self._checkpoint()
        in_force = self._published[0] if self._published else None
        current = 0 if in_force is None else in_force.version
        if (
            in_force is not None
            and current > expected
            and (in_force.digest, in_force.by, in_force.comment) == (digest, by, comment)
        ):
            return in_force  # this very publish, asked again: answered as it was
        if current != expected:
            return current
        now = self._wall_clock()
        stamp = max(int(now * 1000), self._stamp + 1, floor)
        published = Published(current + 1, digest, document, now, by, comment, stamp)
        self._published.insert(0, published)
        del self._published[1 + POLICY_HISTORY :]
        self._raise_stamp(stamp)
        return published

    async def raise_stamps(self, version: int) -> int:
        """Lua twin: ``policy_stamp.lua`` (this backend has one stamp)."""
        await self._checkpoint()
        self._raise_stamp(version)
        return self._stamp
