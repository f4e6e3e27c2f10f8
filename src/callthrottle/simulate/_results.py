"""What a simulated campaign saw: per number and in all (times in simulated seconds unless said
otherwise). The engine (``__init__.py``) fills these in; ``_explain.py`` puts them into words."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._words import cause_words, failure_kind

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import tzinfo

__all__ = ("LAPSED", "WAITED", "CampaignResult", "Departure", "Line", "NumberReport", "quantile_of")

#: A call that waited longer than this (simulated seconds) for its slot counts as a wait.
WAITED = 1.0


@dataclass
class Line:
    """The callers waiting for a slot (on a number, or on the pool), averaged over time: an
    attempt refused at once never counts as waiting, one waiting a whole bucket counts 1."""

    waiting: int = 0  # right now
    area: float = 0.0  # caller-seconds waited since the last bucket closed
    since: float = 0.0  # when ``waiting`` last changed (real seconds)

    def move(self, now: float, change: int) -> None:
        self.area += self.waiting * (now - self.since)
        self.since = now
        self.waiting += change

    def close(self, now: float, length: float) -> float:
        """The average number waiting over the bucket of ``length`` real seconds ending now."""
        self.move(now, 0)
        average, self.area = self.area / length, 0.0
        return average


@dataclass(frozen=True)
class Departure:
    """When the campaign first saw a number out of service for its paid period, and why.

    :ivar at: simulated seconds into the campaign
    :ivar state: ``"expired"`` or ``"released"``
    :ivar reason: the throttle's reason (``paid until 2027-01-31; ...``), or ""
    :ivar seen: how: ``"refused"`` (an attempt on it was refused) or ``"status"`` (its
        status said so: a pool skips a lapsed number without refusing anything). Either way
        it was out by ``at``, and in when its last call before was asked for.
    """

    at: float
    state: str
    reason: str
    seen: str


#: The states a number is in once its paid period has run out.
LAPSED = ("expired", "released")


@dataclass
class NumberReport:
    """What the campaign saw on one caller-ID number (times in simulated seconds).

    ``attempts`` counts the agents' asks for a slot on this number; each became a call
    (``calls``) or failed, counted in ``causes`` by why (see ``_words.CAUSES``). An agent
    dialing from a pool asks the pool, not a number: its failures are the campaign's
    (:attr:`CampaignResult.causes`), and a number's attempts are then its calls.
    """

    number: str
    cap: int
    calls: int = 0  # calls placed (slots granted)
    rejected: int = 0  # of which the carrier refused
    timeouts: int = 0  # acquires on this number that gave up after the timeout
    attempts: int = 0  # asks for a slot on this number (placed, timed out or refused)
    causes: Counter[str] = field(default_factory=Counter)  # failed attempts by cause
    details: Counter[tuple[str, str]] = field(default_factory=Counter)  # (cause, which/why)
    peak: int = 0  # most calls up at once, counted by the simulation itself
    peak_reported: int = 0  # most in_use that throttle.usage() reported in the samples
    leftover: int = 0  # in_use after the campaign ended and every agent hung up (should be 0)
    busy: float = 0.0  # call-seconds carried (the sum of its calls' lengths)
    waits: list[float] = field(default_factory=list, repr=False)  # per placed call
    timeline: list[int] = field(default_factory=list, repr=False)  # peak per time bucket
    queue: list[float] = field(default_factory=list, repr=False)  # callers waiting, per bucket
    states: list[str] = field(default_factory=list, repr=False)  # its state as each bucket began
    limits: list[int] = field(default_factory=list, repr=False)  # the cap in force then
    active: int = field(default=0, repr=False)  # calls up right now
    window: int = field(default=0, repr=False)  # peak since the last sample
    line: Line = field(default_factory=Line, repr=False)  # agents waiting for a slot on it
    began: list[float] = field(default_factory=list, repr=False)  # when each call began
    left: Departure | None = None  # first seen expired or released

    def saw(self, departure: Departure) -> None:
        """Keep the earliest sighting of the number out for its paid period."""
        if self.left is None or departure.at < self.left.at:
            self.left = departure

    def in_service(self, elapsed: float) -> bool:
        """Whether it was in service ``elapsed`` simulated seconds in, as the campaign saw it:
        not once it left for its paid period."""
        return self.left is None or elapsed < self.left.at

    def calls_between(self, first: float, end: float) -> int:
        """Calls that began in ``[first, end)`` (simulated seconds)."""
        return sum(1 for t in self.began if first <= t < end)

    @property
    def max_concurrency(self) -> int:
        return max(self.peak, self.peak_reported)

    @property
    def within_cap(self) -> bool:
        return self.max_concurrency <= self.cap

    @property
    def refused(self) -> int:
        """Failed attempts turned away at once: the number's state admitted no call."""
        return sum(self.causes.values()) - self.timeouts

    def wait(self, quantile: float) -> float:
        """The ``quantile`` (0..1) of the placed calls' waits for a slot, in seconds."""
        return quantile_of(self.waits, quantile)

    def state_time(self, bucket: float) -> dict[str, float]:
        """Simulated seconds spent in each state (as sampled at the start of each bucket), in
        the order the number first went through them."""
        spent: dict[str, float] = {}
        for state in self.states:
            spent[state] = spent.get(state, 0.0) + bucket
        return spent

    def at_cap(self) -> float:
        """The share (0..1) of the time buckets in which every slot was taken."""
        return sum(1 for v in self.timeline if v >= self.cap) / len(self.timeline or [0])

    def unused(self) -> float:
        """The share (0..1) of the time buckets in which no call was up on it."""
        return sum(1 for v in self.timeline if v == 0) / len(self.timeline or [0])

    def use(self, duration: float) -> float:
        """The share (0..1) of its cap used on average over ``duration`` seconds."""
        return self.busy / (self.cap * duration) if duration > 0 else 0.0


def quantile_of(values: Sequence[float], q: float) -> float:
    """The ``q`` (0..1) quantile of ``values`` (0 if there are none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(max(math.ceil(q * len(ordered)) - 1, 0), len(ordered) - 1)]


@dataclass
class CampaignResult:
    """A campaign's outcome. Times are simulated seconds unless said otherwise."""

    numbers: list[NumberReport]
    duration: float  # the campaign's planned length
    speed: float  # simulated seconds per real second
    bucket: float  # the length of one timeline bucket
    pool: str | None = None
    call_length: str = ""
    agents: int = 0
    elapsed: float = 0.0  # how long it really ran (real seconds)
    mean_call: float = 0.0  # the mean call length
    reject_code: str = ""  # the carrier's answer to the calls it refused
    reaction: str = ""  # what the throttle does on that answer, in words
    attempts: int = 0  # every ask for a slot, on a number or on the pool
    causes: Counter[str] = field(default_factory=Counter)  # failed attempts by cause
    details: Counter[tuple[str, str]] = field(default_factory=Counter)  # (cause, which/why)
    timeouts: int = 0  # failed attempts that waited the whole timeout
    queue: list[float] = field(default_factory=list, repr=False)  # waiting for the pool
    windows: tuple[tuple[str, float], ...] = ()  # rate windows in force: (name, real seconds)
    line: Line = field(default_factory=Line, repr=False)  # agents waiting for the pool
    start: float = 0.0  # the calendar's first instant (seconds since the epoch)
    zone: tzinfo | None = None  # the configured time zone (None: UTC)
    terms: bool = False  # whether a number dialed has a paid period

    def at(self, elapsed: float) -> float:
        """The calendar's instant ``elapsed`` simulated seconds into the campaign (seconds
        since the epoch)."""
        return self.start + elapsed

    @property
    def within_caps(self) -> bool:
        return all(n.within_cap for n in self.numbers)

    @property
    def calls(self) -> int:
        return sum(n.calls for n in self.numbers)

    @property
    def rejected(self) -> int:
        return sum(n.rejected for n in self.numbers)

    @property
    def refused(self) -> int:
        """Failed attempts turned away at once (the number's state admitted no call)."""
        return sum(self.causes.values()) - self.timeouts

    @property
    def failed(self) -> int:
        return sum(self.causes.values())

    @property
    def refusals(self) -> Counter[str]:
        """Failed attempts by cause and detail (the state's reason, the window, the group), in
        words, and the calls the carrier refused."""
        counts: Counter[str] = Counter()
        for (cause, detail), count in self.details.items():
            more = f" ({detail})" if detail else ""
            counts[f"{failure_kind(cause)}: {cause_words(cause)}{more}"] += count
        if self.rejected:
            counts[f"carrier answered {self.reject_code}"] = self.rejected
        return counts

    @property
    def capacity(self) -> float:
        """About how many calls the caps allow in the campaign: every slot (or every agent,
        if fewer) busy all along with calls of the mean length; a number's slots count only
        until it left for its paid period."""
        if self.mean_call <= 0:
            return 0.0
        cuts = {0.0, self.duration}
        for n in self.numbers:
            cuts |= {n.left.at} if n.left is not None else set()
        slot_seconds = 0.0
        for first, end in itertools.pairwise(sorted(t for t in cuts if t <= self.duration)):
            slots = sum(n.cap for n in self.numbers if n.in_service(first))
            slot_seconds += min(self.agents, slots) * (end - first)
        return slot_seconds / self.mean_call

    @property
    def waits(self) -> list[float]:
        return [w for n in self.numbers for w in n.waits]

    @property
    def waited(self) -> int:
        """Placed calls that waited for their slot (longer than :data:`WAITED`)."""
        return sum(1 for w in self.waits if w > WAITED)
