"""The embedded backend: pure Python, one process, same semantics as Redis."""

from __future__ import annotations

import bisect
import math
import random
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, cast

import anyio
from anyio.lowlevel import checkpoint, current_token

from ..._models import Holder, Usage, WindowUsage
from ..._pools import STICKY_TTL
from ..._rates import DAY, NO_RATES, WEEK
from .._base import (
    ENDED_KEPT,
    EXPIRED_KEPT,
    OWN_TAGS,
    SESSION_HOLD_MAX,
    AcquireResult,
    EventListener,
    Layout,
    Outcome,
    PickResult,
    ReleaseState,
    RenewState,
    RestoreOutcome,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from anyio.abc import TaskStatus

    from ..._pools import MemberSpec
    from ..._rates import GroupPlan, RatePlan, Window

__all__ = ("MemoryBackend",)


class _Session:
    """A session's record, one per session name, shared by its leases: keeping a session
    alive costs the same whatever it holds. Its current life ends at ``ends`` (the backend's
    clock), which a keep-alive or an acquire in the session moves later, never earlier; once
    a life ended, the next keep-alive starts a new one (``life`` + 1, the old end kept as
    ``before``), and the old life's leases never count again. Twin of the session record in
    _common.lua (keep_session, life_end)."""

    __slots__ = ("before", "ends", "life")

    def __init__(self) -> None:
        self.ends = -math.inf
        self.life = 0
        self.before = -math.inf

    def keep(self, now: float, ttl: float) -> int:
        """Keep the session alive ``ttl`` more (never shortened); a new life if the last
        ended. Returns the life the session is in now."""
        if self.ends <= now:
            self.before, self.life, self.ends = self.ends, self.life + 1, now + ttl
        else:
            self.ends = max(self.ends, now + ttl)
        return self.life

    def end(self, now: float) -> None:
        """The current life ends now (its leases lapse)."""
        self.ends = min(self.ends, now)

    def end_of(self, life: int) -> float:
        """When life ``life`` ends (or ended); for a life before the last one, whose end is
        not kept, the last one's end stands for it."""
        return self.ends if life == self.life else self.before


@dataclass(slots=True)
class _Entry:
    """A holder or a waiter of one number."""

    owner: str
    ttl: float
    limit: int
    max_hold: float | None
    # holder: lease expiry (a session lease: its deadline); waiter: when its place lapses
    expires: float
    deadline: float = math.inf  # holder only: now + max_hold at grant time
    rated: bool = False  # has rate windows: never handed a slot without asking
    since: float = 0.0  # holder only: when it was granted
    session: _Session | None = None  # a session lease (or a waiter for one): its session
    life: int = 0  # a session lease: the life of its session it was granted in


def _expiry(entry: _Entry) -> float:
    """When a holder's lease lapses: its own expiry, or its session's when that comes first
    (a session lease's "expiry" is its session's: waiters time their retries by it)."""
    session = entry.session
    if session is None:
        return entry.expires
    return min(entry.expires, session.end_of(entry.life))


@dataclass(slots=True)
class _Policy:
    """A number's runtime policy (see :meth:`Backend.set_policy`); times by the backend clock."""

    cap: int | None = None
    state: str | None = None
    reason: str | None = None
    until: float | None = None
    lcap: int | None = None
    luntil: float | None = None
    rates: tuple[Window, ...] | None = None
    since: float | None = None

    def windows_in_force(self, plan: RatePlan, now: float) -> tuple[Window, ...]:
        windows = plan.windows if self.rates is None else self.rates
        if self.since is not None:  # warming (or cooled down by a carrier while warming)
            warmup = plan.warmup_window((now - self.since) / WEEK)
            if warmup is not None:
                windows = (*windows, warmup)
        return windows

    def cap_in_force(self, asked: int, now: float) -> int:
        cap = asked if self.cap is None else self.cap
        if self.lcap is not None and self.luntil is not None and self.luntil > now:
            cap = min(cap, self.lcap)
        return cap

    def unavailable(self, now: float) -> str | None:
        if self.state is None or self.state in ("active", "warming"):
            return None
        if self.state == "cooling" and self.until is not None and self.until <= now:
            return None
        return self.state

    def drop_lapsed(self, now: float) -> None:
        """Forget the carrier reactions that lapsed (a lowered cap, a cool-down and its reason),
        as Redis does: its policy key expires with them, or drops them at the next change."""
        if self.luntil is not None and self.luntil <= now:
            self.lcap = self.luntil = None
        if self.state == "cooling" and self.until is not None and self.until <= now:
            self.state = self.reason = self.until = None


_NO_POLICY = _Policy()
_DURATIONS = frozenset({"until", "luntil"})
_INTS = frozenset({"cap", "lcap"})
_STATE_FIELDS = frozenset({"state", "reason", "until", "since"})


@dataclass(slots=True)
class _NumberState:
    holders: dict[str, _Entry] = field(default_factory=dict)
    queue: dict[str, _Entry] = field(default_factory=dict)  # insertion order is FIFO order
    # At most the earliest expiry of any holder or waiter: until then nothing can lapse, so
    # settling need not look at every entry. Lowered whenever an entry's expiry is set.
    next_expiry: float = math.inf


def _window_start(window: Window, now: float, tz_offset: float, wall: float) -> float:
    """On the backend clock: a calendar day started at local midnight by the wall clock."""
    if window.calendar:
        return now - (wall + tz_offset) % DAY
    return now - window.seconds


class _RateLog:
    """When the number's admitted calls started, oldest first, as long as its longest window.

    The whole log lapses a second after the longest window in force at its last call has run
    out (as its key does on Redis): a longer window set later does not count older calls."""

    __slots__ = ("hits", "lapses")

    def __init__(self) -> None:
        self.hits: list[float] = []
        self.lapses = math.inf

    def current(self, now: float) -> list[float]:
        if now >= self.lapses:
            self.hits.clear()
            self.lapses = math.inf
        return self.hits

    def refusal(
        self, windows: Sequence[Window], now: float, tz_offset: float, wall: float
    ) -> tuple[float, Window] | None:
        """None if every window has room; else (seconds until it has, the full window)."""
        hits = self.current(now)
        for window in windows:
            start = _window_start(window, now, tz_offset, wall)
            first = bisect.bisect_left(hits, start)
            count = len(hits) - first
            if count >= window.amount:
                if window.calendar:
                    return start + DAY - now, window
                oldest = hits[first + count - window.amount]
                return oldest + window.seconds + 1e-3 - now, window
        return None

    def hit(self, windows: Sequence[Window], now: float) -> None:
        longest = max(DAY if w.calendar else w.seconds for w in windows)
        hits = self.current(now)
        hits.append(now)
        del hits[: bisect.bisect_left(hits, now - longest)]
        self.lapses = now + longest + 1.0


_EMPTY_LOG = _RateLog()  # read only: stands for a callee nobody has called yet
_GRANTED = AcquireResult(Outcome.GRANTED)  # immutable: one instance serves every grant
_RELEASED, _EXPIRED, _UNKNOWN = ReleaseState.RELEASED, ReleaseState.EXPIRED, ReleaseState.UNKNOWN
_CONFLICT = AcquireResult(Outcome.CONFLICT)


_RESTING = 1 << 62  # the load recorded for a number that could not take a call: tried last


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
        old = self.members.get(number)
        if old is None:
            self.order.append(number)
            self.set_load(number, load)
        else:
            self._unplace(number, old)
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

    def least_loaded(self, count: int) -> list[str]:
        picked: list[str] = []
        for load in sorted(self.buckets):  # as many buckets as distinct loads: a handful
            for number in self.buckets[load]:
                picked.append(number)
                if len(picked) == count:
                    return picked
        return picked

    def near(self, where: tuple[str, str], count: int) -> list[str]:
        """The callee's area's numbers, then its region's (the least loaded of a random sample
        of each), then the least loaded."""
        picked: dict[str, None] = {}
        for index, key in ((self.areas, where[0]), (self.regions, where[1])):
            members = index.get(key) if key else None
            if members:
                sample = self.random.sample(members, min(count, len(members)))
                sample.sort(
                    key=lambda number: (self.load[number], self.picked.get(number, 0), number)
                )
                picked.update(dict.fromkeys(sample))
        picked.update(dict.fromkeys(self.least_loaded(count)))
        return list(picked)[:count]

    def sticky(self, callee: str, now: float, count: int) -> list[str]:
        """The callee's last number while remembered, then the least loaded."""
        remembered = self.callees.get(callee)
        picked: dict[str, None] = {}
        if remembered is not None and remembered[1] > now and remembered[0] in self.members:
            picked[remembered[0]] = None
        picked.update(dict.fromkeys(self.least_loaded(count)))
        return list(picked)[:count]

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

    def round_robin(self, count: int) -> list[str]:
        size = len(self.order)
        if size == 0:
            return []
        start = self.cursor % size
        self.cursor = start + 1
        picked = self.order[start : start + count]
        if len(picked) < count:
            picked += self.order[: min(start, count - len(picked))]
        return picked


class _Lapsed:
    """Leases dropped because they lapsed (not renewed in time, or their session died), by
    number: token -> when its record lapses (:data:`EXPIRED_KEPT` TTLs on), so that a release
    arriving later reports the lease expired. Twin of X in _common.lua."""

    __slots__ = ("marks", "records")

    def __init__(self) -> None:
        self.records: dict[str, dict[str, float]] = {}
        self.marks = 0

    def mark(self, number: str, token: str, ttl: float, lapse: float, now: float) -> None:
        """The lease ``token`` (taken with ``ttl``) lapsed at ``lapse``: remembered until
        :data:`EXPIRED_KEPT` ttls after that (a lapse older than that is forgotten, as on Redis,
        where the number's keys live that long past their leases)."""
        until = lapse + EXPIRED_KEPT * ttl
        if until <= now:
            return
        records = self.records.setdefault(number, {})
        for lapsed in [t for t, until in records.items() if until <= now]:
            del records[lapsed]
        records[token] = until
        self.marks += 1
        if self.marks % 1024 == 0:  # now and then, forget the numbers whose records all lapsed
            self.records = {
                n: r for n, r in self.records.items() if any(u > now for u in r.values())
            }

    def take(self, number: str, token: str, now: float) -> bool:
        """Whether the token's lease lapsed (recently enough to be remembered); the record goes:
        a second release finds nothing."""
        records = self.records.get(number)
        if not records:
            return False
        until = records.pop(token, None)
        if not records:
            del self.records[number]
        return until is not None and until > now

    def forget(self, number: str, token: str) -> None:
        records = self.records.get(number)
        if records:
            records.pop(token, None)


class _Ended:
    """Leases ended for good (released by another process, reset, released with their owner),
    by number: (owner, token) -> when its record lapses. A holder cut off meanwhile cannot
    count them again (:meth:`MemoryBackend.restore`); the owner's next lease of the token (a
    call ID used again) drops the record. Twin of E in _common.lua (mark_ended)."""

    __slots__ = ("marks", "records")

    def __init__(self) -> None:
        self.records: dict[str, dict[tuple[str, str], float]] = {}
        self.marks = 0

    def mark(self, number: str, owner: str, token: str, ttl: float, now: float) -> None:
        records = self.records.setdefault(number, {})
        for lapsed in [k for k, until in records.items() if until <= now]:
            del records[lapsed]
        records[(owner, token)] = now + ENDED_KEPT * ttl
        self.marks += 1
        if self.marks % 1024 == 0:  # now and then, forget the numbers whose records all lapsed
            self.records = {
                n: r for n, r in self.records.items() if any(u > now for u in r.values())
            }

    def ended(self, number: str, owner: str, token: str, now: float) -> bool:
        return self.records.get(number, {}).get((owner, token), -math.inf) > now

    def forget(self, number: str, owner: str, token: str) -> None:
        records = self.records.get(number)
        if records:
            records.pop((owner, token), None)


def _live(state: _NumberState, now: float, but: str = "") -> int:
    """A pool member's load: its live leases (``but`` one, being released)."""
    return sum(1 for t, e in state.holders.items() if _expiry(e) > now and t != but)


def _with_call(plan: RatePlan, call: RatePlan) -> RatePlan:
    """A member's plan with the per-call parts of a pick (the callee counts only where callee
    windows apply)."""
    callee = call.callee if call.callee_windows else None
    if callee is None and not call.priority and plan is NO_RATES:
        return plan
    return replace(
        plan,
        callee=callee,
        callee_windows=call.callee_windows if callee is not None else (),
        priority=call.priority if plan.groups else 0,
        tz_offset=call.tz_offset,
    )


class MemoryBackend:
    """Slots kept in this process's memory: the embedded default (``memory://``).

    Several :class:`~callthrottle.Throttle` objects may share one instance, standing in for
    several dialer processes; the state is lost when the process exits. Time comes from
    ``clock`` (seconds, monotonic); ``wall_clock`` (seconds since the epoch) only places local
    midnight for calendar-day windows. Tests may replace either.
    """

    __slots__ = (
        "_callees", "_checkpoint", "_clock", "_ended", "_group_holders", "_group_logs",
        "_group_policies", "_group_reserve_line", "_group_waiters", "_lapsed", "_layout",
        "_listeners", "_numbers", "_policies", "_pools", "_rates", "_sessions", "_wall_clock",
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

    def __repr__(self) -> str:
        holders = sum(len(s.holders) for s in self._numbers.values())
        waiting = sum(len(s.queue) for s in self._numbers.values())
        return f"<MemoryBackend {len(self._numbers)} numbers, {holders} leases, {waiting} waiting>"

    def use_layout(self, layout: Layout) -> None:
        """No Lua twin: where numbers live is the throttles' configuration."""
        self._layout = layout

    async def group_usage(self, group: GroupPlan, tag: str) -> Usage:
        """Lua twin: ``group_usage.lua``."""
        await self._checkpoint()
        now = self._clock()
        waiting = sum(
            1 for lapse in self._group_waiters.get(group.group, {}).values() if lapse > now
        )
        cap = self._group_policies.get(group.group, {}).get("cap", group.cap or 0)
        return Usage(self._group_in_use(group.group, now), cast("int", cap), waiting)

    async def set_group_policy(
        self, group: GroupPlan, tag: str, changes: Mapping[str, object]
    ) -> None:
        """Lua twin: ``set_group_policy.lua``."""
        await self._checkpoint()
        policy = self._group_policies.setdefault(group.group, {})
        for name, value in changes.items():
            if value is None:
                policy.pop(name, None)
            else:
                policy[name] = value
        now = self._clock()
        waiters = self._group_waiters.get(group.group, {})
        for owner, number, token in [key for key, lapse in waiters.items() if lapse > now]:
            self._notify(owner, "nudged", number, token)

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
        Lua twin: group_has_room in _common.lua."""
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
        holders = self._group_holders.get(group)
        if not holders:
            return 0
        for key in [k for k, e in holders.items() if _expiry(e) <= now]:
            del holders[key]
        return len(holders)

    def _leave_groups(self, number: str, token: str, owner: str, nudge: bool) -> None:
        """The lease left the number: take it out of its groups, and wake their waiters."""
        for group in self._layout.groups_for(number):
            self._leave_group_line(group.group, (owner, number, token), nudge)
            holders = self._group_holders.get(group.group, {})
            entry = holders.get((number, token))
            if entry is not None and entry.owner == owner:  # another's lease stays counted
                del holders[(number, token)]
                if nudge:
                    self._nudge_group(group.group)

    def _purge_group_line(self, group: str, now: float) -> dict[tuple[str, str, str], float]:
        """The group's line without the places that lapsed."""
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
        that slot and none is left."""
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

    def _leave_group_lines(
        self, number: str, token: str, owner: str, groups: Sequence[GroupPlan], but: str = ""
    ) -> None:
        """The caller leaves the line of every group but ``but``: it waits in one line at a
        time, so that two callers never each keep the slot the other waits for."""
        for group in groups:
            if group.group != but:
                self._leave_group_line(group.group, (owner, number, token), True)

    def _nudge_group(self, group: str) -> None:
        """Ask the first caller in the group's line to try again (a slot of the group freed),
        and the first that may take the reserve when it is further back (the slot may be a
        reserved one, which those ahead of it may not take)."""
        waiters = self._purge_group_line(group, self._clock())
        if waiters:
            first = next(iter(waiters))
            self._notify(first[0], "nudged", first[1], first[2])
            may_reserve = self._group_reserve_line.get(group)
            if may_reserve:
                owner, number, token = next(iter(may_reserve))
                if (owner, number, token) != first:
                    self._notify(owner, "nudged", number, token)

    async def open(self) -> None:
        """No Lua twin: nothing to connect to."""
        self._checkpoint = current_token().backend_class.checkpoint
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

    # -- state helpers (synchronous: atomic within the event loop) --------------------------

    def _settle(self, number: str, now: float) -> _NumberState:
        """Drop expired holders and waiters, then grant waiters whose turn came."""
        state = self._numbers.get(number)
        if state is None:
            state = self._numbers[number] = _NumberState()
            return state
        holders, queue = state.holders, state.queue
        if state.next_expiry <= now:
            for token in [t for t, e in holders.items() if _expiry(e) <= now]:
                entry = holders.pop(token)
                # a release says "expired"
                self._lapsed.mark(number, token, entry.ttl, _expiry(entry), now)
                self._leave_groups(number, token, entry.owner, nudge=False)
            for token in [t for t, e in queue.items() if e.expires <= now]:
                del queue[token]
            # A session's expiry only moves later (or its leases go with it): a lower bound.
            state.next_expiry = min(
                min(map(_expiry, holders.values()), default=math.inf),
                min((e.expires for e in queue.values()), default=math.inf),
            )
        if not queue:
            return state
        policy = self._policies.get(number)
        if policy is not None and policy.unavailable(now) is not None:
            return state
        # Windows set at run time, or a warm-up begun, since a waiter queued apply to it too:
        # it is not handed a slot without asking then, so that they are checked and counted.
        ruled = policy is not None and (bool(policy.rates) or policy.since is not None)
        granted = False
        while queue:
            token, entry = next(iter(queue.items()))
            cap = entry.limit if policy is None else policy.cap_in_force(entry.limit, now)
            full = len(holders) >= cap
            if full or entry.rated or ruled:
                # The head asks again: to time its wait from the new leases, or (rate windows)
                # to take the free slot itself, so that its windows are checked.
                if granted or not full:
                    self._notify(entry.owner, "nudged", number, token)
                break
            del queue[token]
            self._grant(state, number, token, entry, now)
            self._notify(entry.owner, "granted", number, token)
            granted = True
        return state

    @staticmethod
    def _grant(state: _NumberState, number: str, token: str, entry: _Entry, now: float) -> None:
        entry.since = now
        session = entry.session
        if session is None:
            entry.deadline = now + entry.max_hold if entry.max_hold is not None else math.inf
            entry.expires = expires = min(now + entry.ttl, entry.deadline)
        else:
            # A session lease lives while its session does, never past its deadline (a lost
            # release cannot hold the slot for ever); the grant keeps the session alive.
            hold = entry.max_hold if entry.max_hold is not None else SESSION_HOLD_MAX
            entry.deadline = entry.expires = now + hold
            entry.life = session.keep(now, entry.ttl)
            expires = _expiry(entry)
        state.holders[token] = entry
        state.next_expiry = min(state.next_expiry, expires)

    def _admit(
        self,
        state: _NumberState,
        number: str,
        token: str,
        entry: _Entry,
        now: float,
        windows: Sequence[Window],
        rates: RatePlan,
    ) -> None:
        self._grant(state, number, token, entry, now)
        if windows:
            self._rates.setdefault(number, _RateLog()).hit(windows, now)
        callee_log = self._callee_log(number, rates, create=True)
        if callee_log is not None:
            callee_log.hit(rates.callee_windows, now)
        for group in rates.groups:
            holders = self._group_holders.setdefault(group.group, {})
            holders[(number, token)] = entry
            # Out of the group's line; the next is told when a slot is still free for someone.
            cap, group_windows = self._group_in_force(group)
            free = cap is None or len(holders) < cap
            self._leave_group_line(group.group, (entry.owner, number, token), free)
            if group_windows:
                self._group_logs.setdefault(group.group, _RateLog()).hit(group_windows, now)

    def _group_full(
        self,
        number: str,
        token: str,
        owner: str,
        ttl: float,
        rates: RatePlan,
        now: float,
        wait: bool,
    ) -> AcquireResult | None:
        """None if every group has a slot; else the refusal (registering a waiter). A slot is
        free for the caller only if the callers ahead of it in the group's line leave one: a
        slot that frees is theirs first (see _group_has_room)."""
        me = (owner, number, token)
        reserved = rates.priority >= 1
        for group in rates.groups:
            cap = self._group_in_force(group)[0]
            if cap is None or self._group_has_room(group, cap, me, reserved, now):
                continue
            self._leave_group_lines(number, token, owner, rates.groups, but=group.group)
            if wait:
                line = self._group_waiters.setdefault(group.group, {})
                if me not in line and reserved and group.reserve > 0:
                    self._group_reserve_line.setdefault(group.group, {})[me] = None
                line[me] = now + ttl
            # A cap of 0 for this call (all of it a reserve) is full with no lease to wait for.
            holders = self._group_holders.get(group.group)
            retry_in = None
            if holders:
                retry_in = max(min(map(_expiry, holders.values())) - now, 0.0)
            return AcquireResult(Outcome.GROUP_FULL, retry_in, group=group.group)
        return None

    def _callee_log(self, number: str, rates: RatePlan, create: bool = False) -> _RateLog | None:
        """The log of calls to the callee from the number's tag, if callee windows apply."""
        if rates.callee is None or not rates.callee_windows:
            return None
        key = (self._layout.tag_for(number), rates.callee)
        log = self._callees.get(key)
        if log is not None or not create:
            return log or _EMPTY_LOG
        log = self._callees[key] = _RateLog()
        if len(self._callees) % 1024 == 0:
            # Now and then, forget the callees whose calls all left their windows (on Redis
            # their logs expire), so that calls to ever new callees keep a bounded number.
            now = self._clock()
            self._callees = {k: v for k, v in self._callees.items() if v.lapses > now}
        return log

    def _rate_refusal(
        self,
        logs: Sequence[tuple[_RateLog | None, Sequence[Window], str]],
        now: float,
        tz_offset: float,
    ) -> AcquireResult | None:
        wall = self._wall_clock()
        for log, windows, whose in logs:
            if log is None or not windows:
                continue
            refusal = log.refusal(windows, now, tz_offset, wall)
            if refusal is not None:
                retry_in, window = refusal
                group = whose if whose not in ("n", "c") else None
                return AcquireResult(
                    Outcome.RATE_LIMITED, retry_in, window=window, for_callee=whose == "c",
                    group=group,
                )  # fmt: skip
        return None

    def _notify(self, owner: str, kind: str, number: str, token: str) -> None:
        for listener in self._listeners.get(owner, ()):
            listener(kind, number, token)

    def _forget_if_idle(self, number: str, state: _NumberState) -> None:
        if not state.holders and not state.queue:
            self._numbers.pop(number, None)

    def _retry_in(self, number: str, state: _NumberState, now: float) -> float | None:
        """Seconds until a slot may free without anyone being told: the earliest lease expiry,
        or the end of a lowered cap (None: neither)."""
        retry_in = None
        if state.holders:
            retry_in = max(min(map(_expiry, state.holders.values())) - now, 0.0)
        policy = self._policies.get(number)
        if policy is not None and policy.lcap is not None and policy.luntil is not None:
            lapses_in = policy.luntil - now
            if lapses_in > 0 and (retry_in is None or lapses_in < retry_in):
                retry_in = lapses_in
        return retry_in

    # -- operations ---------------------------------------------------------------------------

    async def acquire(
        self,
        number: str,
        token: str,
        owner: str,
        limit: int,
        ttl: float,
        max_hold: float | None,
        enqueue: bool,
        rates: RatePlan = NO_RATES,
        *,
        session: bool = False,
    ) -> AcquireResult:
        """Lua twin: ``acquire.lua`` (also run for each operation of ``batch.lua`` and for each
        number ``pick.lua`` tries)."""
        await self._checkpoint()
        if session:
            return self._acquire_in_session(
                number, token, owner, limit, ttl, max_hold, enqueue, rates
            )
        return self._acquire_now(number, token, owner, limit, ttl, max_hold, enqueue, rates)

    def _acquire_in_session(
        self,
        number: str,
        token: str,
        owner: str,
        limit: int,
        ttl: float,
        max_hold: float | None,
        enqueue: bool,
        rates: RatePlan,
    ) -> AcquireResult:
        """An acquire of a session lease: granted or queued, it keeps the session alive."""
        record = self._sessions.get(owner)
        if record is None:
            record = self._sessions[owner] = _Session()
        result = self._acquire_now(
            number, token, owner, limit, ttl, max_hold, enqueue, rates, record
        )
        if result.outcome is Outcome.GRANTED or result.outcome is Outcome.QUEUED:
            record.keep(self._clock(), ttl)
        return result

    def _acquire_now(
        self,
        number: str,
        token: str,
        owner: str,
        limit: int,
        ttl: float,
        max_hold: float | None,
        enqueue: bool,
        rates: RatePlan,
        session: _Session | None = None,
    ) -> AcquireResult:
        now = self._clock()
        policy = self._policies.get(number)
        # A waiter keeps the cap it asked for: the one in force is worked out when a slot frees.
        asked = limit
        if policy is None:
            windows = rates.windows  # what _NO_POLICY's windows_in_force and cap_in_force give
        else:
            unavailable = policy.unavailable(now)
            if unavailable is not None:
                # A token that holds a live slot already (an acquire sent again after its
                # reply was lost, the number disabled meanwhile) is told so: its call is up.
                numbers = self._numbers.get(number)
                held = None if numbers is None else numbers.holders.get(token)
                if held is not None and _expiry(held) > now:
                    return _GRANTED if held.owner == owner else _CONFLICT
                # Refused for good: a place it had in a group's line goes.
                self._leave_group_lines(number, token, owner, self._layout.groups_for(number))
                until = policy.until  # a cool-down's end; one past gives no time to retry at
                retry_in = None if until is None or until < now else until - now
                return AcquireResult(Outcome.UNAVAILABLE, retry_in, unavailable, policy.reason)
            limit = policy.cap_in_force(limit, now)
            windows = policy.windows_in_force(rates, now)
        state = self._settle(number, now)
        holders, queue = state.holders, state.queue
        current = holders.get(token)
        if current is not None:
            return _GRANTED if current.owner == owner else _CONFLICT
        callee_log = None if rates.callee is None else self._callee_log(number, rates)
        # Without windows or groups nothing can refuse a call but the cap.
        rated = bool(windows) or callee_log is not None or bool(rates.groups)
        waiting = queue.get(token)
        if waiting is not None:
            if waiting.owner != owner:
                return _CONFLICT
            if next(iter(queue)) == token and len(holders) < limit:
                # First in line with a slot free: take it, if the rate windows allow.
                del queue[token]
                if rated:
                    refused = self._refusal(
                        number, token, owner, ttl, rates, now, windows, callee_log, wait=True
                    )
                    if refused is not None:
                        self._settle(number, now)
                        self._forget_if_idle(number, state)
                        return refused
                self._admit(state, number, token, waiting, now, windows, rates)
                if queue:  # the next is served (or told to ask) when a slot is still free
                    self._settle(number, now)
                return _GRANTED
            waiting.expires = expires = now + waiting.ttl
            state.next_expiry = min(state.next_expiry, expires)
            return AcquireResult(Outcome.QUEUED, self._retry_in(number, state, now))
        if rated:
            refused = self._refusal(
                number, token, owner, ttl, rates, now, windows, callee_log, wait=enqueue
            )
            if refused is not None:
                self._forget_if_idle(number, state)
                return refused
        expires = now + ttl
        # A session's waiter claims its slot itself, as a rated one does: one that died never
        # asks, and no slot is kept for it as long as its session lives.
        claims = rated or session is not None
        entry = _Entry(owner, ttl, asked, max_hold, expires, math.inf, claims, session=session)
        if not queue and len(holders) < limit:
            self._ended.forget(number, owner, token)  # a new lease of the token
            if rated:
                self._admit(state, number, token, entry, now, windows, rates)
            else:
                self._grant(state, number, token, entry, now)
            return _GRANTED
        retry_in = self._retry_in(number, state, now)
        if enqueue:
            if rates.groups:  # it waits in the number's line now
                self._leave_group_lines(number, token, owner, rates.groups)
            queue[token] = entry
            self._ended.forget(number, owner, token)  # a new lease of the token, to come
            state.next_expiry = min(state.next_expiry, expires)
            return AcquireResult(Outcome.QUEUED, retry_in)
        self._forget_if_idle(number, state)
        return AcquireResult(Outcome.REFUSED, retry_in)

    def _refusal(
        self,
        number: str,
        token: str,
        owner: str,
        ttl: float,
        rates: RatePlan,
        now: float,
        windows: tuple[Window, ...],
        callee_log: _RateLog | None,
        wait: bool,
    ) -> AcquireResult | None:
        """A full rate window's or group's refusal (a group registers a waiter), or None."""
        logs = [(self._rates.get(number), windows, "n"), (callee_log, rates.callee_windows, "c")]
        logs += [
            (self._group_logs.get(g.group), self._group_in_force(g)[1], g.group)
            for g in rates.groups
        ]
        refused = self._rate_refusal(logs, now, rates.tz_offset)
        if refused is not None:
            # It asks again when the window has room: meanwhile it keeps no group's slot.
            self._leave_group_lines(number, token, owner, rates.groups)
            return refused
        return self._group_full(number, token, owner, ttl, rates, now, wait=wait)

    async def release(self, number: str, token: str, releaser: str, pool: str | None = None) -> int:
        # All the work happens before the checkpoint: a release cancelled there is not lost.
        """Lua twin: ``release.lua`` (also run for each operation of ``batch.lua``)."""
        state = self._numbers.get(number)
        if pool is not None:
            self._note_load(pool, number, state, token)
        now = self._clock()
        if state is None:
            lapsed = self._lapsed.take(number, token, now)
            await self._checkpoint()
            return _EXPIRED if lapsed else _UNKNOWN
        self._settle(number, now)
        entry = state.holders.pop(token, None)
        if entry is not None:
            if self._group_holders or self._group_waiters:
                self._leave_groups(number, token, entry.owner, nudge=True)
            if entry.owner != releaser:
                # Its holder may not hear of it (cut off): the record keeps it from counting
                # it again.
                self._ended.mark(number, entry.owner, token, entry.ttl, now)
                self._notify(entry.owner, "released", number, token)
            elif entry.session is not None:
                # A session's other processes hear of it too (the one that took it may hold
                # it still).
                self._notify(entry.owner, "released", number, token)
            self._settle(number, now)
            if self._lapsed.records:
                self._lapsed.forget(number, token)
            outcome = _RELEASED
        elif self._lapsed.take(number, token, now):
            outcome = _EXPIRED
        else:
            outcome = _UNKNOWN
        if not state.holders and not state.queue:
            self._numbers.pop(number, None)
        await self._checkpoint()
        return outcome

    async def abandon(self, number: str, token: str, owner: str) -> None:
        """Lua twin: ``abandon.lua``."""
        await self._checkpoint()
        state = self._numbers.get(number)
        if state is None:
            self._leave_groups(number, token, owner, nudge=True)
            return
        now = self._clock()
        self._settle(number, now)  # a lease that lapsed meanwhile is recorded as expired
        for entries in (state.queue, state.holders):
            entry = entries.get(token)
            if entry is not None and entry.owner == owner:
                del entries[token]
        self._leave_groups(number, token, owner, nudge=True)
        self._settle(number, now)
        self._forget_if_idle(number, state)

    async def renew(
        self, owner: str, items: Sequence[tuple[str, str]], ttl: float = 0.0
    ) -> list[RenewState]:
        """Lua twin: ``renew.lua`` (called once per number)."""
        await self._checkpoint()
        now = self._clock()
        states: list[RenewState] = []
        for number, token in items:
            if number not in self._numbers:
                states.append(RenewState.GONE)
                continue
            state = self._settle(number, now)
            holder = state.holders.get(token)
            waiter = state.queue.get(token)
            if holder is not None and holder.owner == owner and holder.session is not None:
                states.append(RenewState.HELD)  # its session keeps it alive, not renewals
            elif holder is not None and holder.owner == owner:
                holder.expires = min(now + holder.ttl, holder.deadline)
                state.next_expiry = min(state.next_expiry, holder.expires)
                final = holder.expires == holder.deadline
                states.append(RenewState.FINAL if final else RenewState.HELD)
            elif waiter is not None and waiter.owner == owner:
                waiter.expires = now + waiter.ttl
                state.next_expiry = min(state.next_expiry, waiter.expires)
                states.append(RenewState.QUEUED)
            else:
                states.append(RenewState.GONE)
            self._forget_if_idle(number, state)
        return states

    async def usage(self, number: str, limit: int) -> Usage:
        """Lua twin: ``usage.lua``."""
        await self._checkpoint()
        now = self._clock()
        cap = self._policies.get(number, _NO_POLICY).cap_in_force(limit, now)
        state = self._numbers.get(number)
        if state is None:
            return Usage(in_use=0, limit=cap, waiting=0)
        in_use = sum(1 for e in state.holders.values() if _expiry(e) > now)
        waiting = sum(1 for e in state.queue.values() if e.expires > now)
        return Usage(in_use=in_use, limit=cap, waiting=waiting)

    async def set_policy(self, number: str, changes: Mapping[str, object]) -> None:
        """Lua twin: ``set_policy.lua``."""
        await self._checkpoint()
        now = self._clock()
        policy = self._policies.setdefault(number, _Policy())
        # A carrier's reaction leaves alone a state an operator set for good that keeps the
        # number from admitting calls: it stays out of service after the reaction's while.
        for_good = (
            "reaction" in changes
            and policy.unavailable(now) is not None
            and policy.state != "cooling"
        )
        for name, value in changes.items():
            if name == "reaction" or (for_good and name in _STATE_FIELDS):
                continue
            if value is None:
                setattr(policy, name, None)
            elif name in _DURATIONS:
                setattr(policy, name, now + cast("float", value))
            elif name in _INTS:
                setattr(policy, name, cast("int", value))
            elif name == "since":
                policy.since = now
            elif name == "rates":
                policy.rates = cast("tuple[Window, ...]", value)
            else:
                setattr(policy, name, str(value))
        policy.drop_lapsed(now)
        if policy == _NO_POLICY:
            del self._policies[number]
        if number in self._numbers:
            state = self._settle(number, now)
            for token, entry in state.queue.items():
                self._notify(entry.owner, "nudged", number, token)
            self._forget_if_idle(number, state)
        # Callers waiting for a slot of the number's groups are told too (a number that no
        # longer admits calls refuses them, and they leave the group's line).
        for group in self._layout.groups_for(number):
            for owner, on, token in list(self._purge_group_line(group.group, now)):
                if on == number:
                    self._notify(owner, "nudged", number, token)

    def _policy_now(self, number: str, now: float) -> _Policy | None:
        """The number's policy without its lapsed reactions; None (and forgotten) once nothing
        is left of it, as a Redis policy key that expired with its last reaction."""
        policy = self._policies.get(number)
        if policy is None:
            return None
        policy.drop_lapsed(now)
        if policy == _NO_POLICY:
            del self._policies[number]
            return None
        return policy

    async def get_policy(self, number: str) -> dict[str, object]:
        """Lua twin: ``get_policy.lua``."""
        await self._checkpoint()
        now = self._clock()
        policy = self._policy_now(number, now) or _NO_POLICY
        fields: dict[str, object] = {}
        for name in ("cap", "state", "reason", "until", "lcap", "luntil", "rates", "since"):
            value = getattr(policy, name)
            if value is None:
                continue
            if name in _DURATIONS:
                fields[name] = value - now
            elif name == "since":
                fields[name] = now - value
            elif name == "rates":
                fields[name] = value
            else:
                fields[name] = str(value)
        return fields

    # -- pools ---------------------------------------------------------------------------------

    async def pool_update(
        self, pool: str, add: Mapping[str, MemberSpec], remove: Sequence[str]
    ) -> int:
        """Lua twin: ``pool_update.lua``."""
        await self._checkpoint()
        state = self._pools.get(pool)
        if state is None:
            state = self._pools[pool] = _Pool()
        now = self._clock()
        for number, spec in add.items():
            numbers = self._numbers.get(number)
            state.add(number, spec, 0 if numbers is None else _live(numbers, now))
        for number in remove:
            state.remove(number)
        if not state.members:
            # Its counters start again, as on Redis, where they go with the last number. Its
            # line stays (callers still wait on it, and numbers may join it again), and so do
            # the records of slots picks took (a pick asked again still finds its slot, as on
            # Redis, where the record outlives the pool's members); the pool goes with both.
            state.cursor = state.picks = 0
            if not state.line and all(until <= now for _, until in state.taken.values()):
                del self._pools[pool]
            return 0
        return len(state.members)

    async def pool_members(self, pool: str) -> list[str]:
        """Lua twin: ``pool_members.lua``."""
        await self._checkpoint()
        state = self._pools.get(pool)
        return [] if state is None else list(state.order)

    async def pick(
        self,
        pool: str,
        token: str,
        owner: str,
        ttl: float,
        max_hold: float | None,
        strategy: str,
        tries: int,
        call: RatePlan,
        near: tuple[str, str] = ("", ""),
        sticky_ttl: float = STICKY_TTL,
        wait: bool = False,
        *,
        session: bool = False,
    ) -> PickResult:
        """Lua twin: ``pick.lua``."""
        await self._checkpoint()
        state = self._pools.get(pool)
        if state is None:
            return PickResult(Outcome.REFUSED)
        now = self._clock()
        record = None
        if session:
            record = self._sessions.get(owner)
            if record is None:
                record = self._sessions[owner] = _Session()
        # The token holds a slot of the pool already (this pick is asked again): that slot, as
        # the first pick answered; nothing else is touched.
        taken = state.taken.get(token)
        if taken is not None and taken[1] > now:
            numbers = self._numbers.get(taken[0])
            holder = None if numbers is None else numbers.holders.get(token)
            if holder is not None and _expiry(holder) > now:
                granted = holder.owner == owner
                if granted and record is not None:
                    record.keep(now, ttl)  # (its lease's life goes on)
                return PickResult(Outcome.GRANTED if granted else Outcome.CONFLICT, taken[0])
        me = (owner, token)
        line = state.line
        for waiter in [w for w, lapses in line.items() if lapses <= now]:
            del line[waiter]
        first = next(iter(line), None)
        if first is not None and first != me:
            if wait:
                line[me] = now + ttl
            return PickResult(Outcome.QUEUED if wait else Outcome.REFUSED)
        if strategy == "round-robin":
            candidates = state.round_robin(tries)
        elif strategy == "local":
            candidates = state.near(near, tries)
        elif strategy == "sticky" and call.callee is not None:
            candidates = state.sticky(call.callee, now, tries)
        else:
            candidates = state.least_loaded(tries)
        earliest: float | None = None
        full = False  # some number was full: a slot that frees may serve the caller
        for number in candidates:
            spec = state.members[number]
            rates = _with_call(spec.plan, call)
            result = self._acquire_now(
                number, token, owner, spec.limit, ttl, max_hold, False, rates, record
            )
            if result.outcome is Outcome.GRANTED:
                if record is not None:  # granted (or held already): the session lives on
                    record.keep(now, ttl)
                # Remembered as long as the lease may live (a session lease is not renewed).
                hold = max_hold if max_hold is not None else SESSION_HOLD_MAX
                state.took(token, number, now + (hold if record is not None else ttl), now)
                numbers = self._numbers.get(number)
                state.set_load(number, 0 if numbers is None else _live(numbers, now))
                if strategy == "sticky" and call.callee is not None:
                    state.remember(call.callee, number, now + sticky_ttl, now)
                if first == me:
                    self._leave_line(pool, state, me)
                return PickResult(result.outcome, number)
            if result.outcome is Outcome.CONFLICT:
                return PickResult(result.outcome, number)
            # It could not take the call: to the back, behind every number not known to be
            # unable, so that the next picks look at others first.
            state.set_load(number, _RESTING)
            full = full or result.outcome in (Outcome.REFUSED, Outcome.GROUP_FULL)
            if result.retry_in is not None and (earliest is None or result.retry_in < earliest):
                earliest = result.retry_in
        # A place in line only for a caller that a freed slot may serve: one held back by rate
        # windows (its callee's, say) or by states alone would keep every other caller waiting.
        if wait and full:
            line[me] = now + ttl  # a place kept in line (its order unchanged when it had one)
        elif first == me:
            self._leave_line(pool, state, me)
        return PickResult(Outcome.REFUSED, None, earliest)

    async def pool_leave(self, pool: str, token: str, owner: str) -> None:
        """Lua twin: ``pool_leave.lua``."""
        await self._checkpoint()
        state = self._pools.get(pool)
        if state is not None:
            self._leave_line(pool, state, (owner, token))

    def _leave_line(self, pool: str, state: _Pool, waiter: tuple[str, str]) -> None:
        was_first = next(iter(state.line), None) == waiter
        state.line.pop(waiter, None)
        if was_first:
            self._nudge_line(pool, state)

    def _nudge_line(self, pool: str, state: _Pool) -> None:
        first = next(iter(state.line), None)
        if first is not None:
            self._notify(first[0], "nudged", f"pool:{pool}", first[1])

    def _note_load(self, pool: str, number: str, state: _NumberState | None, token: str) -> None:
        """After a release through ``pool``: the number's load as it will be."""
        pool_state = self._pools.get(pool)
        if pool_state is None or number not in pool_state.members:
            return
        held = 0 if state is None else _live(state, self._clock(), token)
        pool_state.set_load(number, held)
        self._nudge_line(pool, pool_state)

    async def window_usage(self, number: str, rates: RatePlan) -> list[WindowUsage]:
        """Lua twin: ``window_usage.lua``."""
        await self._checkpoint()
        now, wall = self._clock(), self._wall_clock()
        policy = self._policies.get(number)
        windows = rates.windows if policy is None else policy.windows_in_force(rates, now)
        hits = self._rates[number].current(now) if number in self._rates else []
        return [
            WindowUsage(
                window,
                len(hits)
                - bisect.bisect_left(hits, _window_start(window, now, rates.tz_offset, wall)),
            )
            for window in windows
        ]

    async def restore(
        self,
        number: str,
        token: str,
        owner: str,
        limit: int,
        ttl: float,
        max_hold: float | None,
        rates: RatePlan = NO_RATES,
        age: float = 0.0,
        session: bool = False,
    ) -> RestoreOutcome:
        """Lua twin: ``restore.lua``."""
        await self._checkpoint()
        now = self._clock()
        state = self._settle(number, now)
        known = state.holders.get(token) or state.queue.get(token)
        if known is not None:
            if known.owner == owner and token in state.holders:
                return RestoreOutcome.RESTORED
            return RestoreOutcome.TAKEN
        if self._ended.ended(number, owner, token, now):
            self._forget_if_idle(number, state)
            return RestoreOutcome.ENDED
        record = None
        if session:  # a session lease: it lives on with its session (a new life if it ended)
            record = self._sessions.get(owner)
            if record is None:
                record = self._sessions[owner] = _Session()
        claims = bool(rates.groups) or record is not None
        entry = _Entry(owner, ttl, limit, max_hold, now + ttl, math.inf, claims, session=record)
        self._grant(state, number, token, entry, now)
        entry.since = now - age
        for group in rates.groups:
            self._group_holders.setdefault(group.group, {})[(number, token)] = entry
        return RestoreOutcome.RESTORED

    async def keepalive(self, session: str, ttl: float) -> bool:
        """Lua twin: ``keepalive.lua`` (this backend never loses its data: never fenced)."""
        await self._checkpoint()
        record = self._sessions.get(session)
        if record is None:
            record = self._sessions[session] = _Session()
        record.keep(self._clock(), ttl)
        return False

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

    # -- operator queries and admin actions ----------------------------------------------------

    async def known_numbers(self) -> list[str]:
        """No Lua twin: on Redis a SCAN of the key prefix, in Python."""
        await self._checkpoint()
        now = self._clock()
        policies = [n for n in list(self._policies) if self._policy_now(n, now) is not None]
        return sorted(set(self._numbers) | set(policies))

    async def holders(self, number: str) -> list[Holder]:
        """Lua twin: ``holders.lua``."""
        await self._checkpoint()
        now = self._clock()
        state = self._numbers.get(number)
        if state is None:
            return []
        live = sorted(
            (expires, token, e)
            for token, e in state.holders.items()
            if (expires := _expiry(e)) > now
        )
        return [
            Holder(
                number,
                token,
                e.owner,
                expires - now,
                e.ttl,
                None if e.deadline == math.inf else e.deadline - now,
                max(now - e.since, 0.0),
            )
            for expires, token, e in live
        ]

    async def lift_fence(self) -> None:
        """Lua twin: ``fence_lift.lua``. Nothing to lift: this backend never loses its data."""
        await self._checkpoint()

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

    async def aclose(self) -> None:
        """No Lua twin: nothing to disconnect."""
        await self._checkpoint()
