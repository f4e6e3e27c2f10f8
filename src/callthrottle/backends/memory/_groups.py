"""Groups of numbers (a trunk, a carrier): their leases, their lines and their reserves.
Twins of the group helpers of ``_common.lua`` (its keys GH, GR, GW, GQ, GV and GP)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from ._records import _expiry
from ._state import _MemoryState

if TYPE_CHECKING:
    from ..._rates import GroupPlan, Window


class _GroupLines(_MemoryState):
    """A group's leases and line, read and kept by every operation that touches its numbers."""

    __slots__ = ()

    def _group_in_force(self, group: GroupPlan) -> tuple[int | None, tuple[Window, ...]]:
        """The group's cap (its reserve included) and its windows, set ones first."""
        policy = self._group_policies.get(group.group, {})
        cap = cast("int | None", policy.get("cap", group.cap))
        return cap, cast("tuple[Window, ...]", policy.get("rates", group.windows))

    def _group_has_room(
        self, group: GroupPlan, cap: int, me: tuple[str, str, str], reserved: bool, now: float
    ) -> bool:
        """Whether a slot of the group is free for the caller (``reserved``: it may take the
        reserve), the callers ahead of it in the group's line served first. A caller ahead
        stands before it only for a slot that caller may take: while only calls that may not
        take the reserve wait, a reserved slot is free for one that may. Every lease counts in
        the share of calls that may not: a call that may takes a slot before such a caller ahead
        only when that caller would find its share full anyway (else it would take its slot).
        Twin of ``group_has_room`` in ``_common.lua``."""
        in_use = self._group_in_use(group.group, now)
        share = max(cap - group.reserve - in_use, 0)  # slots free to every call
        line = self._purge_group_line(group.group, now)
        if not line:  # nobody waits: the common case
            return in_use < cap if reserved else share > 0
        keys = list(line)
        ahead = keys.index(me) if me in line else len(keys)
        if ahead < share:
            return True  # a slot of the share is left for it once those ahead have theirs
        if not reserved or in_use + share >= cap:
            return False
        may_reserve = self._group_reserve_line.get(group.group, {})
        # Taking a slot now fills the share one caller sooner: the last caller ahead that the
        # share serves must be one that may take the reserve (it takes a reserved slot then).
        if share > 0 and keys[share - 1] not in may_reserve:
            return False
        takers = sum(1 for key in keys[share:ahead] if key in may_reserve)
        return in_use + share + takers < cap

    def _group_in_use(self, group: str, now: float) -> int:
        """The group's live leases, the lapsed ones dropped. Twin of ``settle_group`` in
        ``_common.lua`` (then a count of GH)."""
        holders = self._group_holders.get(group)
        if not holders:
            return 0
        for key in [k for k, e in holders.items() if _expiry(e) <= now]:
            del holders[key]
        return len(holders)

    def _leave_groups(self, number: str, token: str, owner: str, nudge: bool) -> None:
        """The lease left the number: take it out of its groups, and wake their waiters. Twin of
        ``leave_groups`` in ``_common.lua``."""
        for group in self._layout.groups_for(number):
            self._leave_group_line(group.group, (owner, number, token), nudge)
            holders = self._group_holders.get(group.group, {})
            entry = holders.get((number, token))
            if entry is not None and entry.owner == owner:  # another's lease stays counted
                del holders[(number, token)]
                if nudge:
                    self._nudge_group(group.group)

    def _purge_group_line(self, group: str, now: float) -> dict[tuple[str, str, str], float]:
        """The group's line without the places that lapsed. Twin of ``purge_group_line`` in
        ``_common.lua``."""
        waiters = self._group_waiters.get(group)
        if waiters is None:
            return {}
        lapsed = [k for k, lapse in waiters.items() if lapse <= now]
        if lapsed:
            may_reserve = self._group_reserve_line.get(group, {})
            for key in lapsed:
                del waiters[key]
                may_reserve.pop(key, None)
        return waiters

    def _leave_group_line(self, group: str, waiter: tuple[str, str, str], free: bool) -> None:
        """The caller leaves the group's line; when it was first (or the first that may take the
        reserve), the next is told (a slot kept for it may be free). ``free``: False when it took
        that slot and none is left. Twin of ``leave_group_line`` in ``_common.lua``."""
        waiters = self._group_waiters.get(group)
        if not waiters or waiter not in waiters:
            return
        first = next(iter(waiters)) == waiter
        del waiters[waiter]
        may_reserve = self._group_reserve_line.get(group)
        if may_reserve and waiter in may_reserve:
            first = first or next(iter(may_reserve)) == waiter
            del may_reserve[waiter]
        if first and free:
            self._nudge_group(group)

    def _nudge_group(self, group: str) -> None:
        """Ask the first caller in the group's line to try again (a slot of the group freed),
        and the first that may take the reserve when it is further back (the slot may be a
        reserved one, which those ahead of it may not take). Twin of ``nudge_group`` in
        ``_common.lua``."""
        waiters = self._purge_group_line(group, self._clock())
        if waiters:
            first = next(iter(waiters))
            self._notify(first[0], "nudged", first[1], first[2])
            may_reserve = self._group_reserve_line.get(group)
            if may_reserve:
                owner, number, token = next(iter(may_reserve))
                if (owner, number, token) != first:
                    self._notify(owner, "nudged", number, token)
