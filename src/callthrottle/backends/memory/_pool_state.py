"""A pool's record: its numbers, their loads and order, its line, the callees it remembers and
the slots its picks took (twin of the PM, PL, PO, PC and PS keys of ``pick.lua``)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from .._codec import epoch_ms

if TYPE_CHECKING:
    from ..._pools import MemberSpec


_RESTING = 1 << 62  # the load recorded for a number that could not take a call: tried last


def _lapse(spec: MemberSpec) -> int:
    """When the number's paid period lapses, in ms since the epoch as the Redis backend keeps
    it (0: none tracked, as for an instant not after the epoch)."""
    return max(epoch_ms(spec.lapses_at), 0)


class _Pool:
    """A pool's numbers: their specs, their round-robin order, and their loads in buckets (so
    that the least loaded are found without looking at every number)."""

    __slots__ = (
        "areas", "buckets", "callees", "cursor", "line", "load", "members", "order", "picked",
        "picks", "random", "regions", "taken",
    )  # fmt: skip

    def __init__(self) -> None:
        self.members: dict[str, MemberSpec] = {}
        self.order: list[str] = []
        self.load: dict[str, int] = {}
        self.buckets: dict[int, dict[str, None]] = {}  # load -> numbers, least recently moved first
        self.cursor = 0
        self.areas: dict[str, list[str]] = {}  # area -> its numbers (local strategy)
        self.regions: dict[str, list[str]] = {}
        self.callees: dict[str, tuple[str, float]] = {}  # callee -> (number, until): sticky
        self.line: dict[tuple[str, str], float] = {}  # (owner, token) -> lapses, first come first
        # number -> when its load last changed (a counter): the order of equals (local strategy)
        self.picked: dict[str, int] = {}
        self.picks = 0
        self.random = random.Random()
        # token -> (number, until): the slot a pick took for the token, as long as the lease's
        # first ttl, oldest first (pick.lua's ':t:<token>' keys).
        self.taken: dict[str, tuple[str, float]] = {}

    def add(self, number: str, spec: MemberSpec, load: int) -> None:
        """A number joins at ``load`` (its live leases), or its spec is updated; one whose
        paid period changed (a renewal: a lapsed number rested behind the others) takes its
        place at ``load`` again."""
        old = self.members.get(number)
        if old is None:
            self.order.append(number)
            self.set_load(number, load)
        else:
            self._unplace(number, old)
            if _lapse(old) != _lapse(spec):
                self.set_load(number, load)
        self.members[number] = spec
        if spec.area:
            self.areas.setdefault(spec.area, []).append(number)
        if spec.region:
            self.regions.setdefault(spec.region, []).append(number)

    def _unplace(self, number: str, spec: MemberSpec) -> None:
        for index, key in ((self.areas, spec.area), (self.regions, spec.region)):
            members = index.get(key)
            if members is not None:
                members.remove(number)
                if not members:
                    del index[key]

    def remove(self, number: str) -> None:
        spec = self.members.pop(number, None)
        if spec is None:
            return
        self.picked.pop(number, None)
        self._unplace(number, spec)
        self.order.remove(number)
        load = self.load.pop(number)
        bucket = self.buckets[load]
        del bucket[number]
        if not bucket:
            del self.buckets[load]

    def set_load(self, number: str, load: int) -> None:
        """Record the number's load; it goes to the back of the numbers with that load."""
        self.picks += 1
        self.picked[number] = self.picks
        old = self.load.get(number)
        if old is not None:
            bucket = self.buckets[old]
            del bucket[number]
            if not bucket:
                del self.buckets[old]
        self.load[number] = load
        self.buckets.setdefault(load, {})[number] = None

    def remember(self, callee: str, number: str, until: float, now: float) -> None:
        self.callees[callee] = (number, until)
        if len(self.callees) % 1024 == 0:  # now and then, forget the callees whose time is up
            self.callees = {c: v for c, v in self.callees.items() if v[1] > now}

    def took(self, token: str, number: str, until: float, now: float) -> None:
        """Record the slot a pick took for ``token``; forget the oldest records whose time is
        up (each is looked at once: the cost does not grow with the records kept)."""
        taken = self.taken
        taken.pop(token, None)
        taken[token] = (number, until)
        while True:
            oldest = next(iter(taken))
            if taken[oldest][1] > now:
                return
            del taken[oldest]
