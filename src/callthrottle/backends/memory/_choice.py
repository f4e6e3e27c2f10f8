"""The numbers a pick tries, in order (twin of the choice in ``pick.lua``): by the strategy,
at most ``tries`` of them, passing over the numbers whose paid period lapsed by the caller's
calendar, and putting those inside their warning window after their equals of load."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from .._codec import epoch_ms
from ._pool_state import _RESTING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._requests import PickRequest
    from ._pool_state import _Pool

_FRESH, _WARNS = 0, 1
#: The load recorded for a number passed over as lapsed: behind even the numbers that could not
#: take a call (``_RESTING``), so that later picks, also while every number is full, look at
#: others first (a renewal puts it back at its load: ``_Pool.add``).
_UNPAID = 2 * _RESTING


class _Choice:
    """One pick's choice: the candidates so far, the numbers looked at, and those found
    lapsed (they go to the back once the choice is made)."""

    __slots__ = ("calendar", "candidates", "lapsed_seen", "seen", "state", "tries", "unpaid")

    def __init__(self, state: _Pool, tries: int, calendar: float) -> None:
        self.state = state
        self.tries = tries
        self.calendar = epoch_ms(calendar)  # compared in ms, as pick.lua does
        self.candidates: list[str] = []
        self.seen: set[str] = set()
        self.unpaid: list[str] = []
        self.lapsed_seen = False  # some number looked at lapsed

    def banded(self, number: str) -> bool:
        """Whether the number is in the band of the lapsed (``_UNPAID``)."""
        return self.state.load.get(number, 0) >= _UNPAID

    def look(self, number: str) -> int | None:
        """Whether the number is inside its warning window (``_WARNS``) or not (``_FRESH``);
        None if it lapsed (noted, to go to the band of the lapsed unless it is there), was
        looked at already, or is not in the pool."""
        if number in self.seen:
            return None
        self.seen.add(number)
        spec = self.state.members.get(number)
        if spec is None:
            return None
        lapses = epoch_ms(spec.lapses_at)
        if lapses <= 0:
            return _FRESH
        if self.calendar >= lapses:
            self.lapsed_seen = True
            if not self.banded(number):
                self.unpaid.append(number)
            return None
        return _WARNS if self.calendar >= max(epoch_ms(spec.warn_at), 0) else _FRESH

    @property
    def room(self) -> bool:
        return len(self.candidates) < self.tries

    def sample(self, members: list[str]) -> None:
        """The least loaded of a random sample of ``members`` (among equals of load, those not
        about to lapse first)."""
        state = self.state
        sampled = state.random.sample(members, min(self.tries, len(members)))
        # Looked at in load order (not the sample's random one): the lapsed go back in that
        # order.
        sampled.sort(key=lambda number: (state.load[number], state.picked.get(number, 0), number))
        ranked = []
        for number in sampled:
            warns = self.look(number)
            if warns is not None:
                ranked.append((state.load[number], warns, state.picked.get(number, 0), number))
        ranked.sort()
        for item in ranked:
            if self.room:
                self.candidates.append(item[3])

    def least_loaded(self) -> None:
        """Then the least loaded, until ``tries`` are found (among equals of load, those not
        about to lapse first). The band of the lapsed is left out, but for its first ``tries``
        numbers when nothing else was found."""
        ranked: list[tuple[int, int, int, str]] = []
        room = self.tries - len(self.candidates)
        state = self.state

        def rank(load: int, numbers: Iterable[str]) -> None:
            for number in numbers:
                if len(ranked) == room:
                    return
                warns = self.look(number)
                if warns is not None:
                    ranked.append((load, warns, len(ranked), number))

        if room > 0:
            for load in sorted(state.buckets):  # as many buckets as distinct loads: a handful
                if load < _UNPAID:
                    rank(load, state.buckets[load])
            if not ranked and not self.candidates and _UNPAID in state.buckets:
                rank(_UNPAID, itertools.islice(state.buckets[_UNPAID], self.tries))
        ranked.sort()
        self.candidates += (item[3] for item in ranked)

    def every_one_lapsed(self) -> bool:
        """Whether every number of the pool lapsed, as far as one page tells (twin of
        ``every_one_lapsed`` in ``pick.lua``)."""
        state = self.state
        below = list(
            itertools.islice(
                (
                    number
                    for load in sorted(state.buckets)
                    if load < _UNPAID
                    for number in state.buckets[load]
                ),
                self.tries,
            )
        )
        if len(below) >= self.tries:
            return False
        if not below:
            return bool(state.load)
        for number in below:
            lapses = epoch_ms(state.members[number].lapses_at)
            if lapses <= 0 or self.calendar < lapses:
                return False
        return True

    def round_robin(self) -> None:
        """From the pool's cursor on, in its order; a lapsed number has no turn (the next one
        takes it)."""
        state = self.state
        order = state.order
        size = len(order)
        if size == 0:
            return
        start = state.cursor % size
        turn = None
        walk = min(size, 4 * self.tries)  # a run of lapsed numbers does not add to the cost
        for offset in range(walk):
            if not self.room:
                break
            at = (start + offset) % size
            if self.look(order[at]) is not None:
                self.candidates.append(order[at])
                turn = at if turn is None else turn
        state.cursor = (start + walk) % size if turn is None else turn + 1
        if not self.candidates:  # past the run, the turn goes on; this pick takes the least
            self.least_loaded()


def choose(state: _Pool, request: PickRequest, now: float) -> tuple[list[str], bool]:
    """The numbers ``request`` tries, in order, and whether every number of the pool lapsed
    (none found, some lapsed: when none is found, every number was looked at); those found
    lapsed go to the back."""
    choice = _Choice(state, request.tries, request.calendar)
    strategy, callee = request.strategy, request.call.callee
    if strategy == "local":
        for index, key in ((state.areas, request.near[0]), (state.regions, request.near[1])):
            members = index.get(key) if key else None
            if members:
                choice.sample(members)
    elif strategy == "sticky" and callee is not None:
        remembered = state.callees.get(callee)
        if remembered is not None and remembered[1] > now:
            number = remembered[0]
            if choice.look(number) is not None:
                choice.candidates.append(number)
    if strategy == "round-robin":
        choice.round_robin()
    else:
        choice.least_loaded()
    for number in choice.unpaid:
        state.set_load(number, _UNPAID)
    return choice.candidates, not choice.candidates and choice.lapsed_seen


def every_one_lapsed(state: _Pool, request: PickRequest) -> bool:
    """Whether every number of the pool lapsed by the request's calendar, as far as one page
    tells (a caller behind others in line is told so)."""
    return _Choice(state, request.tries, request.calendar).every_one_lapsed()
