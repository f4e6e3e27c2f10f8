"""Sessions: a record per session, shared by its leases, kept alive at a cost that does not grow
with them. Twin of keep_session, end_session and life_end in ``_common.lua``, and of
``keepalive.lua``."""

from __future__ import annotations

import math

from ._state import _MemoryState


class _Session:
    """A session's record, one per session name, shared by its leases: keeping a session
    alive costs the same whatever it holds. Its current life ends at ``ends`` (the backend's
    clock), which a keep-alive or an acquire in the session moves later, never earlier; once
    a life ended, the next keep-alive starts a new one (``life`` + 1, the old end kept as
    ``before``), and the old life's leases never count again. Twin of ``keep_session``,
    ``end_session`` and ``life_end`` in ``_common.lua`` (the session record)."""

    __slots__ = ("before", "ends", "life")

    def __init__(self) -> None:
        self.ends = -math.inf
        self.life = 0
        self.before = -math.inf

    def keep(self, now: float, ttl: float) -> int:
        """Keep the session alive ``ttl`` more (never shortened); a new life if the last
        ended. Returns the life the session is in now. Twin of ``keep_session`` in
        ``_common.lua``."""
        if self.ends <= now:
            self.before, self.life, self.ends = self.ends, self.life + 1, now + ttl
        else:
            self.ends = max(self.ends, now + ttl)
        return self.life

    def end(self, now: float) -> None:
        """The current life ends now (its leases lapse). Twin of ``end_session`` in
        ``_common.lua``."""
        self.ends = min(self.ends, now)

    def end_of(self, life: int) -> float:
        """When life ``life`` ends (or ended); for a life before the last one, whose end is
        not kept, the last one's end stands for it. Twin of ``life_end`` in ``_common.lua``."""
        return self.ends if life == self.life else self.before


class _Sessions(_MemoryState):
    """``keepalive``."""

    __slots__ = ()

    async def keepalive(self, session: str, ttl: float) -> bool:
        """Lua twin: ``keepalive.lua`` (this backend never loses its data: never fenced)."""
        await self._checkpoint()
        record = self._sessions.get(session)
        if record is None:
            record = self._sessions[session] = _Session()
        record.keep(self._clock(), ttl)
        return False
