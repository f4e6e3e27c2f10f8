"""Random sequences of operations, run against each backend and a plain reference model.

Hypothesis drives acquire (try once or queue), release (by the owner or anyone), abandon,
renew, session leases and their keep-alives and, on the memory backend, the passing of time
(its clock is injected). After every
step the backend's answers and its counts must be the model's: who holds a slot, who waits,
in what order slots are handed over, which leases expired.
"""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from callthrottle.backends import (
    AcquireRequest,
    MemoryBackend,
    Outcome,
    RedisBackend,
    ReleaseState,
    RenewState,
)
from callthrottle.backends._base import EXPIRED_KEPT, SESSION_HOLD_MAX

from .._servers import fence_mark

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from callthrottle.backends._base import Backend

NUMBERS = ("+8657188880001",)  # one number: the richest interleavings per step
LIMIT = 2
TOKENS = ("t1", "t2", "t3", "t4", "t5")
OWNERS = ("o1", "o2")
SESSION = "s1"  # an owner that is a session: its leases live while it is kept alive
CALLERS = (*OWNERS, SESSION)
TTL = 10.0  # seconds; on Redis (real time) no lease lives long enough in a run to expire


@dataclass
class NumberModel:
    # token -> owner, expiry (a session lease: its deadline), the session's life it is in
    holders: dict[str, tuple[str, float, int]] = field(default_factory=dict)
    line: dict[str, tuple[str, float]] = field(default_factory=dict)  # in order: owner, lapse
    lapsed: dict[str, float] = field(default_factory=dict)  # token -> until a release says so


class Model:
    """What the backend contract says, and nothing more."""

    def __init__(self) -> None:
        self.now = 0.0
        self.numbers = {number: NumberModel() for number in NUMBERS}
        # the session's current life, when it ends, and when the life before it ended
        self.life, self.life_ends, self.life_before = 0, -math.inf, -math.inf

    def expiry(self, holder: tuple[str, float, int]) -> float:
        """When a lease lapses: a session lease when its life of the session ends, if that comes
        first (a life before the last one ended long ago)."""
        owner, expiry, life = holder
        if owner != SESSION:
            return expiry
        if life == self.life:
            return min(expiry, self.life_ends)
        return min(expiry, self.life_before)  # an older life's end is not kept: the last one's

    def grant(self, state: NumberModel, token: str, owner: str) -> None:
        if owner == SESSION:
            state.holders[token] = (owner, self.now + SESSION_HOLD_MAX, self.keepalive())
        else:
            state.holders[token] = (owner, self.now + TTL, 0)

    def keepalive(self) -> int:
        """The session lives TTL more; once a life ended, a new one begins (its leases stay
        lapsed). Returns the life it is in."""
        if self.life_ends <= self.now:
            self.life, self.life_before = self.life + 1, self.life_ends
            self.life_ends = self.now + TTL
        else:
            self.life_ends = max(self.life_ends, self.now + TTL)
        return self.life

    def settle(self, number: str) -> NumberModel:
        state = self.numbers[number]
        for token, holder in state.holders.items():
            lapse = self.expiry(holder)
            if lapse <= self.now < lapse + EXPIRED_KEPT * TTL:  # a release says so for 4 TTLs
                state.lapsed[token] = lapse + EXPIRED_KEPT * TTL
        state.holders = {t: v for t, v in state.holders.items() if self.expiry(v) > self.now}
        state.line = {t: v for t, v in state.line.items() if v[1] > self.now}
        while state.line and len(state.holders) < LIMIT:  # first come, first served
            token, (owner, _) = next(iter(state.line.items()))
            if owner == SESSION:
                break  # a session's waiter takes its slot by asking again (it may be dead)
            del state.line[token]
            self.grant(state, token, owner)
        return state

    def acquire(self, number: str, token: str, owner: str, enqueue: bool) -> Outcome:
        outcome = self._acquire(number, token, owner, enqueue)
        if owner == SESSION and outcome in (Outcome.GRANTED, Outcome.QUEUED):
            self.keepalive()  # an acquire in the session keeps it alive
        return outcome

    def _acquire(self, number: str, token: str, owner: str, enqueue: bool) -> Outcome:
        state = self.settle(number)
        if token in state.holders:
            return Outcome.GRANTED if state.holders[token][0] == owner else Outcome.CONFLICT
        if token in state.line:
            if state.line[token][0] != owner:
                return Outcome.CONFLICT
            if next(iter(state.line)) == token and len(state.holders) < LIMIT:
                del state.line[token]
                self.grant(state, token, owner)
                self.settle(number)  # the next in line is served when a slot is still free
                return Outcome.GRANTED
            state.line[token] = (owner, self.now + TTL)
            return Outcome.QUEUED
        if not state.line and len(state.holders) < LIMIT:
            self.grant(state, token, owner)
            return Outcome.GRANTED
        if enqueue:
            state.line[token] = (owner, self.now + TTL)
            return Outcome.QUEUED
        return Outcome.REFUSED

    def release(self, number: str, token: str) -> ReleaseState:
        state = self.settle(number)
        released = state.holders.pop(token, None) is not None
        lapsed = state.lapsed.pop(token, -1.0) > self.now
        self.settle(number)
        if released:
            return ReleaseState.RELEASED
        return ReleaseState.EXPIRED if lapsed else ReleaseState.UNKNOWN

    def abandon(self, number: str, token: str, owner: str) -> None:
        state = self.settle(number)
        for where in (state.holders, state.line):
            if token in where and where[token][0] == owner:
                del where[token]
        self.settle(number)

    def renew(self, owner: str, items: list[tuple[str, str]]) -> list[RenewState]:
        states = []
        for number, token in items:
            state = self.settle(number)
            if token in state.holders and state.holders[token][0] == owner:
                if owner != SESSION:  # a session lease lives by its session's keep-alives
                    state.holders[token] = (owner, self.now + TTL, 0)
                states.append(RenewState.HELD)
            elif token in state.line and state.line[token][0] == owner:
                state.line[token] = (owner, self.now + TTL)
                states.append(RenewState.QUEUED)
            else:
                states.append(RenewState.GONE)
        return states


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BackendMachine(RuleBasedStateMachine):
    """Set ``portal``, ``backend`` and ``clock`` (None: real time) before running."""

    portal: BlockingPortal
    backend: Backend
    clock: Clock | None
    forget: Callable[[], Awaitable[None]] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        forget = type(self).forget  # (a plain function, not a method)
        if forget is not None:  # on real time: a clean slate (records of lapsed leases too)
            self.call(forget)
        for owner in CALLERS:
            self.call(self.backend.release_owner, owner)
        if self.clock is not None:
            # Past every record of a lease that lapsed in an earlier example (release_owner
            # leaves those), and the model on the same clock, to the bit.
            self.clock.now += EXPIRED_KEPT * TTL + 1.0
            self.model.now = self.clock.now

    def call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return self.portal.call(partial(function, *args, **kwargs))

    @rule(
        number=st.sampled_from(NUMBERS),
        token=st.sampled_from(TOKENS),
        owner=st.sampled_from(CALLERS),
        enqueue=st.booleans(),
    )
    def acquire(self, number: str, token: str, owner: str, enqueue: bool) -> None:
        request = AcquireRequest(number, token, owner, LIMIT, TTL, None, session=owner == SESSION)
        result = self.call(self.backend.acquire, request, enqueue=enqueue)
        assert result.outcome == self.model.acquire(number, token, owner, enqueue)

    @rule()
    def keepalive(self) -> None:
        self.call(self.backend.keepalive, SESSION, TTL)
        self.model.keepalive()

    @rule(
        number=st.sampled_from(NUMBERS), token=st.sampled_from(TOKENS), by=st.sampled_from(CALLERS)
    )
    def release(self, number: str, token: str, by: str) -> None:
        released = self.call(self.backend.release, number, token, by)
        assert released == self.model.release(number, token)

    @rule(
        number=st.sampled_from(NUMBERS),
        token=st.sampled_from(TOKENS),
        owner=st.sampled_from(CALLERS),
    )
    def abandon(self, number: str, token: str, owner: str) -> None:
        self.call(self.backend.abandon, number, token, owner)
        self.model.abandon(number, token, owner)

    @rule(
        owner=st.sampled_from(CALLERS),
        items=st.lists(
            st.tuples(st.sampled_from(NUMBERS), st.sampled_from(TOKENS)), max_size=3, unique=True
        ),
    )
    def renew(self, owner: str, items: list[tuple[str, str]]) -> None:
        if not items:
            return
        states = self.call(self.backend.renew, owner, items)
        assert list(states) == self.model.renew(owner, items)

    @rule(seconds=st.sampled_from([0.5, 3.0, 9.9, 10.0, 12.0]))
    def advance(self, seconds: float) -> None:
        if self.clock is None:
            return  # Redis judges time by its own clock
        self.clock.now += seconds
        self.model.now += seconds

    @invariant()
    def counts_agree(self) -> None:
        for number in NUMBERS:
            usage = self.call(self.backend.usage, number, LIMIT)
            state = self.model.numbers[number]
            live = sum(1 for h in state.holders.values() if self.model.expiry(h) > self.model.now)
            waiting = sum(1 for _, lapse in state.line.values() if lapse > self.model.now)
            assert (usage.in_use, usage.waiting) == (live, waiting)
            assert usage.in_use <= LIMIT


@contextmanager
def machine(
    backend_factory: Any,
    clock: Clock | None,
    forget: Callable[[], Awaitable[None]] | None = None,
) -> Iterator[type[BackendMachine]]:
    with ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal("asyncio"))
        backend = backend_factory()
        portal.call(backend.open)
        stack.callback(portal.call, backend.aclose)

        class Machine(BackendMachine):
            pass

        Machine.portal, Machine.backend, Machine.clock = portal, backend, clock
        Machine.forget = forget
        yield Machine


SETTINGS = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_memory_backend_agrees_with_the_model() -> None:
    clock = Clock()
    with machine(lambda: MemoryBackend(clock=clock), clock) as Machine:
        run_state_machine_as_test(Machine, settings=SETTINGS)


@pytest.mark.redis
def test_redis_backend_agrees_with_the_model(redis_url: str, prefix: str) -> None:
    async def forget() -> None:
        client = aioredis.Redis.from_url(redis_url)
        # Its data, not the marker that would tell the server its data was lost (a fence).
        mark = fence_mark(prefix).encode()
        keys = [key async for key in client.scan_iter(match=f"{prefix}*") if key != mark]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    backend = partial(RedisBackend.from_url, redis_url, key_prefix=prefix)
    with machine(backend, None, forget) as Machine:
        run_state_machine_as_test(Machine, settings=SETTINGS)
