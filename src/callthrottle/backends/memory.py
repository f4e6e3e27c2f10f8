"""The embedded backend: pure Python, one process, same semantics as Redis."""

from __future__ import annotations

import bisect
import math
import random
import time
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import TYPE_CHECKING, cast

import anyio
from anyio.lowlevel import checkpoint, current_token

from .._models import Holder, Usage, WindowUsage
from .._pools import STICKY_TTL
from .._rates import DAY, NO_RATES, WEEK
from ._base import (
    OWN_TAGS,
    AcquireResult,
    EventListener,
    Layout,
    Outcome,
    PickResult,
    RenewState,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from anyio.abc import TaskStatus

    from .._pools import MemberSpec
    from .._rates import GroupPlan, RatePlan, Window

__all__ = ("MemoryBackend",)


@dataclass(slots=True)
class _Entry:
    """A holder or a waiter of one number."""

    owner: str
    ttl: float
    limit: int
    max_hold: float | None
    expires: float  # holder: lease expiry; waiter: when its place in line lapses
    deadline: float = math.inf  # holder only: now + max_hold at grant time
    rated: bool = False  # has rate windows: never handed a slot without asking
    since: float = 0.0  # holder only: when it was granted


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
        if self.state == "warming" and self.since is not None:
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


_NO_POLICY = _Policy()
_EXPIRES: Callable[[_Entry], float] = attrgetter("expires")
_DURATIONS = frozenset({"until", "luntil"})
_INTS = frozenset({"cap", "lcap"})


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
_CONFLICT = AcquireResult(Outcome.CONFLICT)


_RESTING = 1 << 62  # the load recorded for a number that could not take a call: tried last


class _Pool:
    """A pool's numbers: their specs, their round-robin order, and their loads in buckets (so
    that the least loaded are found without looking at every number)."""

    __slots__ = (
        "areas", "buckets", "callees", "cursor", "line", "load", "members", "order", "picked",
        "picks", "random", "regions",
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


def _live(state: _NumberState, now: float, but: str = "") -> int:
    """A pool member's load: its live leases (``but`` one, being released)."""
    return sum(1 for t, e in state.holders.items() if e.expires > now and t != but)


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
        "_callees", "_checkpoint", "_clock", "_group_holders", "_group_logs", "_group_policies",
        "_group_waiters", "_layout",
        "_listeners", "_numbers", "_policies", "_pools", "_rates", "_wall_clock",
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
        self._listeners: dict[str, EventListener] = {}
        self._policies: dict[str, _Policy] = {}
        self._rates: dict[str, _RateLog] = {}
        self._callees: dict[tuple[str, str], _RateLog] = {}
        self._layout: Layout = OWN_TAGS
        # Per group ("trunk:x"): its live leases (the numbers' own entries), its rate log, and
        # the callers waiting for one of its slots ((owner, number, token) -> when it lapses).
        self._group_holders: dict[str, dict[tuple[str, str], _Entry]] = {}
        self._group_logs: dict[str, _RateLog] = {}
        self._group_waiters: dict[str, dict[tuple[str, str, str], float]] = {}
        self._group_policies: dict[str, dict[str, object]] = {}
        self._pools: dict[str, _Pool] = {}

    def __repr__(self) -> str:
        holders = sum(len(s.holders) for s in self._numbers.values())
        waiting = sum(len(s.queue) for s in self._numbers.values())
        return f"<MemoryBackend {len(self._numbers)} numbers, {holders} leases, {waiting} waiting>"

    def use_layout(self, layout: Layout) -> None:
        self._layout = layout

    async def group_usage(self, group: GroupPlan, tag: str) -> Usage:
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

    def _group_in_force(
        self, group: GroupPlan, priority: int
    ) -> tuple[int | None, tuple[Window, ...]]:
        """The group's cap for a call of this priority, and its windows, set ones first."""
        policy = self._group_policies.get(group.group, {})
        cap = cast("int | None", policy.get("cap", group.cap))
        if cap is not None and priority < 1:
            cap = max(cap - group.reserve, 0)
        return cap, cast("tuple[Window, ...]", policy.get("rates", group.windows))

    def _group_in_use(self, group: str, now: float) -> int:
        holders = self._group_holders.get(group)
        if not holders:
            return 0
        for key in [k for k, e in holders.items() if e.expires <= now]:
            del holders[key]
        return len(holders)

    def _leave_groups(self, number: str, token: str, owner: str, nudge: bool) -> None:
        """The lease left the number: take it out of its groups, and wake their waiters."""
        for group in self._layout.groups_for(number):
            self._group_waiters.get(group.group, {}).pop((owner, number, token), None)
            holders = self._group_holders.get(group.group, {})
            entry = holders.get((number, token))
            if entry is not None and entry.owner == owner:  # another's lease stays counted
                del holders[(number, token)]
                if nudge:
                    self._nudge_group(group.group)

    def _nudge_group(self, group: str) -> None:
        waiters = self._group_waiters.get(group)
        if not waiters:
            return
        now = self._clock()
        for key in [k for k, lapse in waiters.items() if lapse <= now]:
            del waiters[key]
        if waiters:
            owner, number, token = min(waiters, key=waiters.__getitem__)
            self._notify(owner, "nudged", number, token)

    async def open(self) -> None:
        self._checkpoint = current_token().backend_class.checkpoint
        await self._checkpoint()

    async def listen(
        self, owner: str, listener: EventListener, *, task_status: TaskStatus[None]
    ) -> None:
        self._listeners[owner] = listener
        try:
            task_status.started()
            await anyio.sleep_forever()
        finally:
            if self._listeners.get(owner) is listener:
                del self._listeners[owner]

    # -- state helpers (synchronous: atomic within the event loop) --------------------------

    def _settle(self, number: str, now: float) -> _NumberState:
        """Drop expired holders and waiters, then grant waiters whose turn came."""
        state = self._numbers.get(number)
        if state is None:
            state = self._numbers[number] = _NumberState()
            return state
        holders, queue = state.holders, state.queue
        if state.next_expiry <= now:
            for token in [t for t, e in holders.items() if e.expires <= now]:
                self._leave_groups(number, token, holders.pop(token).owner, nudge=False)
            for token in [t for t, e in queue.items() if e.expires <= now]:
                del queue[token]
            state.next_expiry = min(
                min((e.expires for e in holders.values()), default=math.inf),
                min((e.expires for e in queue.values()), default=math.inf),
            )
        if not queue:
            return state
        policy = self._policies.get(number)
        if policy is not None and policy.unavailable(now) is not None:
            return state
        granted = False
        while queue:
            token, entry = next(iter(queue.items()))
            cap = entry.limit if policy is None else policy.cap_in_force(entry.limit, now)
            full = len(holders) >= cap
            if full or entry.rated:
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
        entry.deadline = now + entry.max_hold if entry.max_hold is not None else math.inf
        entry.since = now
        entry.expires = expires = min(now + entry.ttl, entry.deadline)
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
            self._group_holders.setdefault(group.group, {})[(number, token)] = entry
            self._group_waiters.get(group.group, {}).pop((entry.owner, number, token), None)
            group_windows = self._group_in_force(group, 0)[1]
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
        """None if every group has a slot; else the refusal (registering a waiter)."""
        for group in rates.groups:
            cap = self._group_in_force(group, rates.priority)[0]
            if cap is None or self._group_in_use(group.group, now) < cap:
                continue
            if wait:
                self._group_waiters.setdefault(group.group, {})[(owner, number, token)] = now + ttl
            # A cap of 0 for this call (all of it a reserve) is full with no lease to wait for.
            holders = self._group_holders.get(group.group)
            retry_in = max(min(e.expires for e in holders.values()) - now, 0.0) if holders else None
            return AcquireResult(Outcome.GROUP_FULL, retry_in, group=group.group)
        return None

    def _callee_log(self, number: str, rates: RatePlan, create: bool = False) -> _RateLog | None:
        """The log of calls to the callee from the number's tag, if callee windows apply."""
        if rates.callee is None or not rates.callee_windows:
            return None
        key = (self._layout.tag_for(number), rates.callee)
        if create:
            return self._callees.setdefault(key, _RateLog())
        return self._callees.get(key) or _EMPTY_LOG

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
        listener = self._listeners.get(owner)
        if listener is not None:
            listener(kind, number, token)

    def _forget_if_idle(self, number: str, state: _NumberState) -> None:
        if not state.holders and not state.queue:
            self._numbers.pop(number, None)

    @staticmethod
    def _retry_in(state: _NumberState, now: float) -> float | None:
        if not state.holders:
            return None
        return max(min(map(_EXPIRES, state.holders.values())) - now, 0.0)

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
    ) -> AcquireResult:
        await self._checkpoint()
        return self._acquire_now(number, token, owner, limit, ttl, max_hold, enqueue, rates)

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
    ) -> AcquireResult:
        now = self._clock()
        policy = self._policies.get(number)
        if policy is None:
            windows = rates.windows  # what _NO_POLICY's windows_in_force and cap_in_force give
        else:
            unavailable = policy.unavailable(now)
            if unavailable is not None:
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
                return _GRANTED
            waiting.expires = expires = now + waiting.ttl
            state.next_expiry = min(state.next_expiry, expires)
            return AcquireResult(Outcome.QUEUED, self._retry_in(state, now))
        if rated:
            refused = self._refusal(
                number, token, owner, ttl, rates, now, windows, callee_log, wait=enqueue
            )
            if refused is not None:
                self._forget_if_idle(number, state)
                return refused
        expires = now + ttl
        entry = _Entry(owner, ttl, limit, max_hold, expires, math.inf, rated)
        if not queue and len(holders) < limit:
            if rated:
                self._admit(state, number, token, entry, now, windows, rates)
            else:
                self._grant(state, number, token, entry, now)
            return _GRANTED
        retry_in = self._retry_in(state, now)
        if enqueue:
            queue[token] = entry
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
            (self._group_logs.get(g.group), self._group_in_force(g, 0)[1], g.group)
            for g in rates.groups
        ]
        return self._rate_refusal(logs, now, rates.tz_offset) or self._group_full(
            number, token, owner, ttl, rates, now, wait=wait
        )

    async def release(
        self, number: str, token: str, releaser: str, pool: str | None = None
    ) -> bool:
        # All the work happens before the checkpoint: a release cancelled there is not lost.
        state = self._numbers.get(number)
        if pool is not None:
            self._note_load(pool, number, state, token)
        if state is None:
            await self._checkpoint()
            return False
        now = self._clock()
        self._settle(number, now)
        entry = state.holders.pop(token, None)
        if entry is not None:
            if self._group_holders or self._group_waiters:
                self._leave_groups(number, token, entry.owner, nudge=True)
            if entry.owner != releaser:
                self._notify(entry.owner, "released", number, token)
            self._settle(number, now)
        if not state.holders and not state.queue:
            self._numbers.pop(number, None)
        await self._checkpoint()
        return entry is not None

    async def abandon(self, number: str, token: str, owner: str) -> None:
        await self._checkpoint()
        state = self._numbers.get(number)
        if state is None:
            self._leave_groups(number, token, owner, nudge=True)
            return
        for entries in (state.queue, state.holders):
            entry = entries.get(token)
            if entry is not None and entry.owner == owner:
                del entries[token]
        self._leave_groups(number, token, owner, nudge=True)
        self._settle(number, self._clock())
        self._forget_if_idle(number, state)

    async def renew(self, owner: str, items: Sequence[tuple[str, str]]) -> list[RenewState]:
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
            if holder is not None and holder.owner == owner:
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
        await self._checkpoint()
        now = self._clock()
        cap = self._policies.get(number, _NO_POLICY).cap_in_force(limit, now)
        state = self._numbers.get(number)
        if state is None:
            return Usage(in_use=0, limit=cap, waiting=0)
        in_use = sum(1 for e in state.holders.values() if e.expires > now)
        waiting = sum(1 for e in state.queue.values() if e.expires > now)
        return Usage(in_use=in_use, limit=cap, waiting=waiting)

    async def set_policy(self, number: str, changes: Mapping[str, object]) -> None:
        await self._checkpoint()
        now = self._clock()
        policy = self._policies.setdefault(number, _Policy())
        for name, value in changes.items():
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
        if policy == _NO_POLICY:
            del self._policies[number]
        if number in self._numbers:
            state = self._settle(number, now)
            for token, entry in state.queue.items():
                self._notify(entry.owner, "nudged", number, token)
            self._forget_if_idle(number, state)

    async def get_policy(self, number: str) -> dict[str, object]:
        await self._checkpoint()
        now = self._clock()
        policy = self._policies.get(number, _NO_POLICY)
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
        # A pool left with no numbers keeps its line and its round-robin place (as on Redis):
        # callers still wait on it, and numbers may join it again.
        return len(state.members)

    async def pool_members(self, pool: str) -> list[str]:
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
    ) -> PickResult:
        await self._checkpoint()
        state = self._pools.get(pool)
        if state is None:
            return PickResult(Outcome.REFUSED)
        now = self._clock()
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
        for number in candidates:
            spec = state.members[number]
            rates = _with_call(spec.plan, call)
            result = self._acquire_now(
                number, token, owner, spec.limit, ttl, max_hold, False, rates
            )
            if result.outcome is Outcome.GRANTED:
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
            if result.retry_in is not None and (earliest is None or result.retry_in < earliest):
                earliest = result.retry_in
        if wait:
            line[me] = now + ttl  # a place kept in line (its order unchanged when it had one)
        return PickResult(Outcome.REFUSED, None, earliest)

    async def pool_leave(self, pool: str, token: str, owner: str) -> None:
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
    ) -> bool:
        await self._checkpoint()
        now = self._clock()
        state = self._settle(number, now)
        known = state.holders.get(token) or state.queue.get(token)
        if known is not None:
            return known.owner == owner and token in state.holders
        entry = _Entry(owner, ttl, limit, max_hold, now + ttl, math.inf, bool(rates.groups))
        self._grant(state, number, token, entry, now)
        entry.since = now - age
        for group in rates.groups:
            self._group_holders.setdefault(group.group, {})[(number, token)] = entry
        return True

    async def release_owner(self, owner: str) -> int:
        await self._checkpoint()
        now = self._clock()
        removed = 0
        for number in list(self._numbers):
            state = self._settle(number, now)
            for entries in (state.holders, state.queue):
                for token in [t for t, e in entries.items() if e.owner == owner]:
                    del entries[token]
                    self._leave_groups(number, token, owner, nudge=True)
                    removed += 1
            self._settle(number, now)
            self._forget_if_idle(number, state)
        return removed

    # -- operator queries and admin actions ----------------------------------------------------

    async def known_numbers(self) -> list[str]:
        await self._checkpoint()
        return sorted(set(self._numbers) | set(self._policies))

    async def holders(self, number: str) -> list[Holder]:
        await self._checkpoint()
        now = self._clock()
        state = self._numbers.get(number)
        if state is None:
            return []
        live = sorted(
            (e.expires, token, e) for token, e in state.holders.items() if e.expires > now
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

    async def reset_number(self, number: str) -> tuple[int, int]:
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
                if entry.expires > now:
                    counts[index] += 1
                    self._notify(entry.owner, event, number, token)
        return counts[0], counts[1]

    async def aclose(self) -> None:
        await self._checkpoint()
