"""Everything an owner (a number) holds or waits for, dropped at once. Twins of
``release_owner.lua``, ``release_owner_lines.lua`` and ``reset_number.lua``."""

from __future__ import annotations

from ._lines import _Lines
from ._records import _expiry


class _Owners(_Lines):
    """``release_owner`` and ``reset_number``."""

    __slots__ = ()

    async def release_owner(self, owner: str) -> int:
        """Lua twins: ``release_owner.lua`` (each number's leases and line) and
        ``release_owner_lines.lua`` (the owner's places in pool and group lines)."""
        await self._checkpoint()
        now = self._clock()
        removed = 0
        for number in list(self._numbers):
            state = self._settle(number, now)
            for entries in (state.holders, state.queue):
                for token in [t for t, e in entries.items() if e.owner == owner]:
                    if entries is state.holders:
                        self._ended.mark(number, owner, token, entries[token].ttl, now)
                    del entries[token]
                    self._leave_groups(number, token, owner, nudge=True)
                    removed += 1
            self._settle(number, now)
            self._forget_if_idle(number, state)
        record = self._sessions.get(owner)
        if record is not None:  # the session's life ends (its leases went above, as released)
            record.end(now)
        # Callers waiting for a pool or a group have a place in its line only.
        for name, pool in self._pools.items():
            for waiter in [w for w, lapses in pool.line.items() if lapses <= now]:
                del pool.line[waiter]
            mine = [w for w in pool.line if w[0] == owner]
            for waiter in mine:
                self._leave_line(name, pool, waiter)
            removed += len(mine)
        for group in list(self._group_waiters):
            line = self._purge_group_line(group, now)
            mine_in_group = [w for w in line if w[0] == owner]
            for key in mine_in_group:
                self._leave_group_line(group, key, True)
            removed += len(mine_in_group)
        return removed

    async def reset_number(self, number: str) -> tuple[int, int]:
        """Lua twin: ``reset_number.lua``."""
        await self._checkpoint()
        now = self._clock()
        state = self._numbers.pop(number, None)
        if state is None:
            return 0, 0
        counts = [0, 0]
        for index, (entries, event) in enumerate(
            ((state.holders, "released"), (state.queue, "nudged"))
        ):
            for token, entry in entries.items():
                self._leave_groups(number, token, entry.owner, nudge=True)
                if (_expiry(entry) if entries is state.holders else entry.expires) > now:
                    counts[index] += 1
                    if entries is state.holders:
                        self._ended.mark(number, entry.owner, token, entry.ttl, now)
                    self._notify(entry.owner, event, number, token)
        return counts[0], counts[1]
