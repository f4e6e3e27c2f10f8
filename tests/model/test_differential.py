"""Both backends in lockstep: a MemoryBackend and a RedisBackend on a real server, one test clock.

Hypothesis drives the two with the same operations, as throttles would send them (see
``_universe``: five numbers, a trunk and a tenant with a reserve, rolling and calendar-day
windows in a time zone, callee windows, two pools): acquire (try once or wait), a queued
token asking again, abandon, release by the owner or by another throttle, renew, restore,
release_owner, reset_number, run-time caps and states and carrier reactions, group caps,
pool changes and picks with every strategy and a fallback pool (members with paid periods,
lapsed, about to lapse or neither by each pick's calendar), session leases (acquired and
picked by the owner ``SESSION``) and their keep-alives, and the clock moving past TTLs,
max_hold, sessions' expiries, windows and local midnights. Every reply of one must be the
other's, and after every step so must everything they show (usage, holders, window and group
usage, policy, pool members). After every step the rules of ``_reference`` are checked too, and on Redis no
key is left without an expiry but the ones meant to last (policies, pools); after time passes
beyond every TTL, only those are left.

The Redis backend reads the test clock through a copy of its function library (see
``_clock``); production code is unchanged.

The run is bounded for ``python dev.py test`` (60 examples of up to 40 steps, about 15 s); a
longer one (2000 examples of up to 80 steps, no time limit)::

    CALLTHROTTLE_DIFFERENTIAL=long python dev.py test tests/model/test_differential.py

or any number of examples with ``CALLTHROTTLE_DIFFERENTIAL_EXAMPLES=500``. The cases it found
are kept below as fixed sequences of steps (``replay``).
"""

from __future__ import annotations

import os
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from callthrottle._rates import DAY, RatePlan, Window
from callthrottle.backends import (
    AcquireRequest,
    GroupPolicyChange,
    MemoryBackend,
    PickRequest,
    PolicyChange,
    RedisBackend,
)
from callthrottle.backends._policy import KEEP

from .._servers import fence_mark
from ._clock import TestClock, age_keys, clocked_library, set_server_clock, use_library
from ._reference import Reference, check_step
from ._universe import (
    CALLEES,
    CAPS,
    FALLBACK,
    GROUP_TAG,
    GROUPS,
    LAYOUT,
    NUMBERS,
    PLAIN,
    POOLS,
    SESSION,
    SMALL,
    STRATEGIES,
    TENANTED,
    TRUNKED,
    call_plan,
    member_spec,
    plan,
)
from ._views import comparable, views

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from callthrottle._pools import MemberSpec
    from callthrottle.backends import Backend, PickResult

pytestmark = pytest.mark.redis

DB = 9  # a database of its own: every step scans the keys left (the server is shared)

TOKENS = ("t1", "t2", "t3", "t4", "t5", "t6")
OWNERS = ("o1", "o2", "o3")
TTLS = (5.0, 10.0)
MAX_HOLDS = (None, None, 8.0, 20.0)
TZ_OFFSETS = (0.0, 8 * 3600.0, -5 * 3600.0, 5.5 * 3600.0)
STEPS = (0.5, 1.0, 4.0, 5.0, 9.0, 10.0, 31.0, 3600.0)
BEYOND_EVERY_TTL = 2 * DAY  # longer than any lease, line, window or sticky callee lasts
# Paid periods: a pool member's (lapses_at, warn_at), and the calendar a pick is made at (0: a
# caller without one), around one lapse instant, to the millisecond.
LAPSE = 1_801_440_000.0
TERMS = (
    (0.0, 0.0), (0.0, 0.0), (LAPSE, LAPSE - 7 * DAY), (LAPSE, LAPSE - 2 * DAY),
    (LAPSE + DAY, LAPSE - 6 * DAY),
)  # fmt: skip
CALENDARS = (
    0.0, LAPSE - 8 * DAY, LAPSE - 3 * DAY, LAPSE - DAY, LAPSE - 0.001, LAPSE, LAPSE + 0.5 * DAY,
    LAPSE + DAY, LAPSE + 9 * DAY,
)  # fmt: skip
NO_TERMS = ((0.0, 0.0),) * len(NUMBERS)

numbers = st.sampled_from(NUMBERS)
tokens = st.sampled_from(TOKENS)
owners = st.sampled_from(OWNERS)
callers = st.sampled_from((*OWNERS, SESSION))  # a session's name too
priorities = st.sampled_from((0, 0, 1))
callees = st.sampled_from((None, *CALLEES))
# The policy a caller decided with: mostly the newest it may know of (-1), sometimes an older
# one (the stamp of the first or second published: a process that has not heard of the
# newest), or none (0).
versions = st.sampled_from((-1, -1, 0, 1, 2))


class Differential(RuleBasedStateMachine):
    """Set ``portal``, ``redis_url`` and ``client`` (a client of the server) before running."""

    portal: BlockingPortal
    redis_url: str
    client: aioredis.Redis
    clock_key: str

    def __init__(self) -> None:
        super().__init__()
        self.clock = TestClock()
        self.prefix = f"d{uuid.uuid4().hex[:10]}:"
        self.memory = MemoryBackend(clock=self.clock, wall_clock=self.clock)
        self.redis = RedisBackend.from_url(self.redis_url, key_prefix=self.prefix, db=DB)
        for backend in (self.memory, self.redis):
            backend.use_layout(LAYOUT)
        self.reference = Reference(self.clock.now)
        self.tz_offset = 0.0
        # (number, token, owner) told QUEUED -> what it asked with (it asks again with them)
        self.queued: dict[tuple[str, str, str], tuple[float, float | None, RatePlan]] = {}
        self.seen: dict[str, Any] = {}
        self.stamps: list[int] = []  # of the policies published, oldest first
        self.call(self._open)

    @property
    def published(self) -> int:
        """The stamp of the newest policy published (0: none)."""
        return self.stamps[-1] if self.stamps else 0

    def _version(self, drawn: int) -> int:
        """-1: the newest policy's stamp; 0: none; else the stamp of the ``drawn``-th policy
        published (or ``drawn`` itself, older than any, when fewer were)."""
        if drawn < 0:
            return self.published
        return self.stamps[drawn - 1] if 0 < drawn <= len(self.stamps) else drawn

    async def _open(self) -> None:
        await set_server_clock(self.client, self.clock_key, self.clock)
        await self.memory.open()
        await self.redis.open()
        # The test's library is new to the server, which may be younger than a lease TTL: it
        # would fence as after a restart (tests/redis/test_fence.py); no call is up here.
        await self.redis.lift_fence()

    def teardown(self) -> None:
        self.call(self._close)

    async def _close(self) -> None:
        await self.redis.aclose()
        keys = [key async for key in self.client.scan_iter(match=self.prefix + "*")]
        if keys:
            await self.client.delete(*keys)

    def call(self, function: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return self.portal.call(function, *args)

    def both(self, action: Callable[[Backend], Awaitable[Any]]) -> Any:
        """Run ``action`` on each backend; their replies must agree. Returns the memory one."""

        async def run() -> tuple[Any, Any]:
            return await action(self.memory), await action(self.redis)

        first, second = self.portal.call(run)
        assert comparable(first) == comparable(second), f"memory {first!r}, redis {second!r}"
        return first

    def step(
        self,
        action: Callable[[Backend], Awaitable[Any]],
        admits: int | None = None,
        try_once: str | None = None,
    ) -> Any:
        """One operation on both backends, then the views compared and the rules checked."""
        before = self.seen
        reply = self.both(action)
        self.compare_views()
        if before:
            check_step(self.reference, before, self.seen, admits, try_once)
        return reply

    def compare_views(self) -> None:
        async def run() -> tuple[Any, Any]:
            return await views(self.memory, self.tz_offset), await views(self.redis, self.tz_offset)

        memory, redis = self.portal.call(run)
        for name, seen in memory.items():
            assert comparable(seen) == comparable(redis[name]), (
                f"{name}: memory {seen!r}, redis {redis[name]!r}"
            )
        self.seen = memory

    # -- set-up -----------------------------------------------------------------------------

    @initialize(
        tz_offset=st.sampled_from(TZ_OFFSETS),
        terms=st.tuples(*[st.sampled_from(TERMS)] * len(NUMBERS)),
    )
    def start(self, tz_offset: float, terms: tuple[tuple[float, float], ...] = NO_TERMS) -> None:
        self.tz_offset = tz_offset
        for pool, members in POOLS.items():
            specs = {n: _with_term(n, terms[NUMBERS.index(n)]) for n in members}
            self.both(partial(_fill, pool, specs))
        self.compare_views()

    # -- calls --------------------------------------------------------------------------------

    @rule(
        number=numbers,
        token=tokens,
        owner=callers,
        enqueue=st.booleans(),
        ttl=st.sampled_from(TTLS),
        max_hold=st.sampled_from(MAX_HOLDS),
        callee=callees,
        priority=priorities,
        version=versions,
    )
    def acquire(
        self,
        number: str,
        token: str,
        owner: str,
        enqueue: bool,
        ttl: float,
        max_hold: float | None,
        callee: str | None,
        priority: int,
        version: int = -1,
    ) -> None:
        rates = plan(number, self.tz_offset, callee, priority)
        asked = AcquireRequest(
            number, token, owner, CAPS[number], ttl, max_hold, rates, _session(owner),
            self._version(version),
        )  # fmt: skip
        result = self.step(
            lambda b: b.acquire(asked, enqueue=enqueue),
            admits=priority,
            try_once=None if enqueue else token,
        )
        if result.outcome == 0:
            self.queued[(number, token, owner)] = (ttl, max_hold, rates)

    @precondition(lambda self: bool(self.queued))
    @rule(data=st.data())
    def wait(self, data: st.DataObject) -> None:
        """A queued caller asks again (its own limit and plan, as its throttle keeps them)."""
        number, token, owner = data.draw(st.sampled_from(sorted(self.queued)))
        ttl, max_hold, rates = self.queued[(number, token, owner)]
        asked = AcquireRequest(
            number, token, owner, CAPS[number], ttl, max_hold, rates, _session(owner),
            self.published,  # its throttle took the newest policy
        )  # fmt: skip
        result = self.step(
            lambda b: b.acquire(asked, enqueue=True),
            admits=rates.priority,
        )
        if result.outcome != 0:
            del self.queued[(number, token, owner)]

    @rule(number=numbers, token=tokens, owner=callers)
    def abandon(self, number: str, token: str, owner: str) -> None:
        self.step(lambda b: b.abandon(number, token, owner), admits=0)
        self.queued.pop((number, token, owner), None)

    @rule(number=numbers, token=tokens, releaser=callers, pool=st.sampled_from((None, *POOLS)))
    def release(self, number: str, token: str, releaser: str, pool: str | None) -> None:
        self.step(lambda b: b.release(number, token, releaser, pool), admits=0)

    @rule(
        owner=callers,
        items=st.lists(st.tuples(numbers, tokens), min_size=1, max_size=3, unique=True),
    )
    def renew(self, owner: str, items: list[tuple[str, str]]) -> None:
        self.step(lambda b: b.renew(owner, items), admits=0)

    @rule(ttl=st.sampled_from(TTLS))
    def keepalive(self, ttl: float) -> None:
        self.step(lambda b: b.keepalive(SESSION, ttl), admits=0)

    @rule(
        number=numbers,
        token=tokens,
        owner=owners,
        ttl=st.sampled_from(TTLS),
        max_hold=st.sampled_from(MAX_HOLDS),
        age=st.sampled_from((0.0, 3.0)),
    )
    def restore(
        self, number: str, token: str, owner: str, ttl: float, max_hold: float | None, age: float
    ) -> None:
        rates = plan(number, self.tz_offset)
        self.step(
            lambda b: b.restore(
                AcquireRequest(number, token, owner, CAPS[number], ttl, max_hold, rates), age=age
            )
        )

    @rule(owner=callers)
    def release_owner(self, owner: str) -> None:
        self.step(lambda b: b.release_owner(owner), admits=0)
        self.queued = {q: v for q, v in self.queued.items() if q[2] != owner}

    @rule(number=numbers)
    def reset_number(self, number: str) -> None:
        self.step(lambda b: b.reset_number(number), admits=0)
        self.queued = {q: v for q, v in self.queued.items() if q[0] != number}

    # -- policy -----------------------------------------------------------------------------

    @rule(
        number=numbers,
        changes=st.sampled_from(
            [
                PolicyChange(cap=1),
                PolicyChange(cap=4),
                PolicyChange(cap=None),
                PolicyChange(state="disabled", reason="blocked"),
                PolicyChange(state="cooling", until=30.0, reason="477"),
                PolicyChange(state="cooling", until=None, reason="477"),
                PolicyChange(state="warming", warming=True),
                PolicyChange(state=None, reason=None, until=None, warming=None),
                PolicyChange(lowered=(1, 20.0)),
                PolicyChange(lowered=None),
                PolicyChange(rates=(Window(2, 10.0), Window(3, DAY, calendar=True))),
                PolicyChange(rates=None),
            ]
        ),
    )
    def set_policy(self, number: str, changes: PolicyChange) -> None:
        self.reference.set_policy(number, changes)
        self.step(lambda b: b.set_policy(number, changes), admits=0)

    @rule(
        group=st.sampled_from(GROUPS),
        changes=st.sampled_from(
            [
                GroupPolicyChange(cap=1),
                GroupPolicyChange(cap=5),
                GroupPolicyChange(cap=None),
                GroupPolicyChange(rates=(Window(2, 10.0),)),
                GroupPolicyChange(rates=None),
            ]
        ),
    )
    def set_group_policy(self, group: Any, changes: GroupPolicyChange) -> None:
        cap = changes.cap
        if cap is not KEEP:
            if cap is None:
                self.reference.group_caps.pop(group.group, None)
            else:
                self.reference.group_caps[group.group] = cap
        self.step(lambda b: b.set_group_policy(group, GROUP_TAG, changes), admits=0)

    # -- pools ------------------------------------------------------------------------------

    @rule(
        member=st.sampled_from([(pool, n) for pool, members in POOLS.items() for n in members]),
        remove=st.booleans(),
        term=st.sampled_from(TERMS),
    )
    def pool_update(
        self, member: tuple[str, str], remove: bool, term: tuple[float, float] = (0.0, 0.0)
    ) -> None:
        """A number taken out, or added (or its spec written again: a renewal when its paid
        period changed)."""
        pool, number = member
        if remove:
            self.step(lambda b: b.pool_update(pool, {}, [number]))
        else:
            spec = _with_term(number, term)
            self.step(lambda b: b.pool_update(pool, {number: spec}, ()))

    @rule(
        pool=st.sampled_from(sorted(POOLS)),
        token=tokens,
        owner=callers,
        ttl=st.sampled_from(TTLS),
        max_hold=st.sampled_from(MAX_HOLDS),
        strategy=st.sampled_from(STRATEGIES),
        tries=st.sampled_from((1, 2, 3)),
        wait=st.booleans(),
        callee=callees,
        priority=priorities,
        sticky_ttl=st.sampled_from((10.0, 86400.0)),
        version=versions,
        calendar=st.sampled_from(CALENDARS),
    )
    def pick(
        self,
        pool: str,
        token: str,
        owner: str,
        ttl: float,
        max_hold: float | None,
        strategy: str,
        tries: int,
        wait: bool,
        callee: str | None,
        priority: int,
        sticky_ttl: float,
        version: int = -1,
        calendar: float = 0.0,
    ) -> None:
        """A pick as ``Throttle.acquire_from`` makes it: the pool asked for, then its fallback
        (tried in passing, never waited on), at the caller's calendar."""
        if strategy == "local":
            # The local strategy samples an area's numbers at random when it has more than
            # `tries`: with as many tries as the pool has numbers, both backends see them all.
            tries = 3
        call = call_plan(self.tz_offset, callee, priority)
        near = ("571", "CN") if callee == CALLEES[0] else ("21", "CN") if callee else ("", "")
        chain = [pool] + ([FALLBACK[pool]] if pool in FALLBACK else [])
        for index, name in enumerate(chain):
            queue = wait and index == 0
            asked = PickRequest(
                name, token, owner, ttl, max_hold, strategy, tries, call, near, sticky_ttl,
                _session(owner), self._version(version), calendar,
            )  # fmt: skip
            result = self.step(
                partial(_pick, asked, queue),
                admits=priority,
                try_once=None if queue else token,
            )
            if result.outcome != 2:  # granted, conflict, or waiting behind others
                break

    @rule(on_top=st.booleans(), digest=st.sampled_from(("d1", "d2")))
    def publish_policy(self, on_top: bool, digest: str) -> None:
        """A policy published (on top of the newest, or of one that is not in force: then
        nothing is written), and every stamp raised: from then on a decision made with an
        older policy is refused, and a caller that queued before is not handed a slot without
        asking again."""
        expected = len(self.stamps) if on_top else len(self.stamps) + 1

        async def publish(backend: Backend) -> tuple[int, int]:
            reply = await backend.publish_policy(
                f'{{"policy": "{digest}"}}', digest, expected=expected, by="ops@h", comment=""
            )
            if isinstance(reply, int):
                return (reply, 0)  # refused: the version in force
            return (reply.version, await backend.raise_stamps(reply.stamp))

        version, stamp = self.step(publish, admits=0)
        if stamp:
            self.stamps.append(stamp)
            assert version == len(self.stamps)

    @rule(pool=st.sampled_from(sorted(POOLS)), token=tokens, owner=callers)
    def pool_leave(self, pool: str, token: str, owner: str) -> None:
        self.step(lambda b: b.pool_leave(pool, token, owner), admits=0)

    # -- time ---------------------------------------------------------------------------------

    @rule(seconds=st.sampled_from(STEPS))
    def advance(self, seconds: float) -> None:
        self.pass_time(seconds)

    @rule()
    def beyond_every_ttl(self) -> None:
        """Time passes beyond every TTL: nobody holds or waits, and on Redis only the keys meant
        to last are left (the numbers' and groups' policies, the pools)."""
        self.pass_time(BEYOND_EVERY_TTL)
        for number in NUMBERS:
            assert self.seen[f"usage {number}"].in_use == 0
            assert self.seen[f"usage {number}"].waiting == 0
        self.call(self._only_lasting_keys)

    async def _only_lasting_keys(self) -> None:
        async for raw in self.client.scan_iter(match=self.prefix + "*"):
            key = raw.decode()
            if key == fence_mark(self.prefix):
                continue  # the prefix's marker never expires (see fence_mark)
            assert await self.client.pttl(key) == -1, f"{key} outlived every TTL"
            if key.endswith(":p") and ":n:" in key:
                number = key.rpartition(":n:")[2][:-2]
                assert self.seen[f"policy {number}"], f"{key} left with no policy"

    @rule(late=st.sampled_from((0.0, 1.0)))
    def to_midnight(self, late: float) -> None:
        """To the next local midnight (or just past it)."""
        local = (self.clock.now + self.tz_offset) % DAY
        self.pass_time(DAY - local + late)

    def pass_time(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.reference.now = self.clock.now

        async def run() -> None:
            await age_keys(self.client, self.prefix + "*", round(seconds * 1000))
            await set_server_clock(self.client, self.clock_key, self.clock)

        self.call(run)
        self.compare_views()

    @invariant()
    def keys_expire(self) -> None:
        """No key is left without an expiry but a policy's and a pool's (the numbers' and
        groups' run-time policies, the published policy, its history and the stamps)."""
        self.call(self._keys_expire)

    async def _keys_expire(self) -> None:
        keys = [k.decode() async for k in self.client.scan_iter(match=self.prefix + "*")]
        keys = [key for key in keys if key != fence_mark(self.prefix)]  # it never expires
        if not keys:
            return
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(key)
        ttls = await pipe.execute()
        lasting = sorted(k for k, ttl in zip(keys, ttls, strict=True) if ttl == -1)
        for key in lasting:
            rest = key[len(self.prefix) :]
            lasts = rest.endswith((":p", ":stamp")) or rest.startswith("{policy}")
            assert lasts or ":pool:" in rest, f"{key} never expires"


LONG = os.environ.get("CALLTHROTTLE_DIFFERENTIAL") == "long"


def _fill(pool: str, added: dict[str, MemberSpec], backend: Backend) -> Awaitable[int]:
    return backend.pool_update(pool, added, ())


def _with_term(number: str, term: tuple[float, float]) -> MemberSpec:
    """The number's member spec with a paid period: (lapses_at, warn_at), (0, 0) for none."""
    return replace(member_spec(number), lapses_at=term[0], warn_at=term[1])


def _pick(request: PickRequest, wait: bool, backend: Backend) -> Awaitable[PickResult]:
    return backend.pick(request, wait=wait)


def _session(owner: str) -> bool:
    """Whether a throttle of the session asks (its leases are the session's)."""
    return owner == SESSION


def _settings() -> settings:
    examples = int(os.environ.get("CALLTHROTTLE_DIFFERENTIAL_EXAMPLES", "2000" if LONG else "60"))
    return settings(
        max_examples=examples,
        stateful_step_count=80 if LONG else 40,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.mark.timeout(0 if LONG or "CALLTHROTTLE_DIFFERENTIAL_EXAMPLES" in os.environ else 120)
def test_memory_and_redis_backends_agree(redis_url: str) -> None:
    with differential(redis_url) as machine:
        run_state_machine_as_test(machine, settings=_settings())


@contextmanager
def differential(redis_url: str) -> Iterator[type[Differential]]:
    """The machine's class, bound to a portal and to the server (its clock patched in)."""
    with ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal("asyncio"))
        clock_key = f"c{uuid.uuid4().hex[:10]}:clock"
        stack.enter_context(use_library(clocked_library(clock_key)))
        client = aioredis.Redis.from_url(redis_url, db=DB)
        stack.callback(lambda: portal.call(client.aclose))

        class Machine(Differential):
            pass

        Machine.portal, Machine.redis_url, Machine.client = portal, redis_url, client
        Machine.clock_key = clock_key
        yield Machine


def replay(
    machine: type[Differential],
    *steps: tuple[str, dict[str, Any]],
    terms: tuple[tuple[float, float], ...] = NO_TERMS,
) -> None:
    """Run the given steps on a fresh pair of backends (one found case, kept as a test);
    ``terms``: the numbers' paid periods (see ``TERMS``)."""
    state = machine()
    try:
        state.start(tz_offset=0.0, terms=terms)
        for name, arguments in steps:
            getattr(state, name)(**arguments)
            state.keys_expire()
    finally:
        state.teardown()


def test_one_token_admitted_twice_in_one_millisecond_counts_twice(redis_url: str) -> None:
    """A token admitted, dropped and admitted again at the same instant is two calls in the
    number's rate windows (on Redis the second hit used to replace the first)."""
    call = {"enqueue": False, "ttl": 5.0, "max_hold": None, "callee": None, "priority": 0}
    with differential(redis_url) as machine:
        replay(
            machine,
            ("acquire", {"number": TRUNKED, "token": "t1", "owner": "o1", **call}),
            ("reset_number", {"number": TRUNKED}),
            ("acquire", {"number": TRUNKED, "token": "t1", "owner": "o2", **call}),
        )


def test_a_pool_emptied_and_filled_again_keeps_its_line_and_order(redis_url: str) -> None:
    """A pool whose every number left keeps its line and its round-robin place (the memory
    backend forgot them), and a caller that waits on it joins its line whatever the strategy
    (on Redis, round-robin refused it without a place)."""
    pick = {"ttl": 5.0, "max_hold": None, "tries": 1, "callee": None, "priority": 0}
    pick |= {"sticky_ttl": 10.0}
    with differential(redis_url) as machine:
        replay(
            machine,
            ("acquire", {"number": SMALL, "token": "t1", "owner": "o1", "enqueue": False,
                         "ttl": 5.0, "max_hold": None, "callee": None, "priority": 0}),
            ("pick", {"pool": "p2", "token": "t2", "owner": "o1", "strategy": "round-robin",
                      "wait": True, **pick}),
            ("pool_update", {"member": ("p2", TENANTED), "remove": True}),
            ("pool_update", {"member": ("p2", SMALL), "remove": True}),
            ("pick", {"pool": "p2", "token": "t3", "owner": "o2", "strategy": "round-robin",
                      "wait": True, **pick}),
            ("pool_update", {"member": ("p2", TENANTED), "remove": False}),
            ("pool_update", {"member": ("p2", SMALL), "remove": False}),
            ("pick", {"pool": "p2", "token": "t2", "owner": "o1", "strategy": "round-robin",
                      "wait": True, **pick}),
        )  # fmt: skip


def test_a_pools_load_counts_live_leases_only(redis_url: str) -> None:
    """A number joining a pool brings the load of its live leases, not of leases that expired
    unnoticed (Redis saw none once the expired lease's keys were gone, memory still one)."""
    pick: dict[str, Any] = {"ttl": 5.0, "max_hold": None, "tries": 1, "callee": None}
    pick |= {"pool": "p2", "owner": "o1", "token": "t1", "strategy": "least-loaded"}
    pick |= {"sticky_ttl": 10.0, "wait": False, "priority": 0}
    with differential(redis_url) as machine:
        replay(
            machine,
            ("pool_update", {"member": ("p2", TENANTED), "remove": True}),
            ("restore", {"number": TENANTED, "token": "t1", "owner": "o1", "ttl": 5.0,
                         "max_hold": None, "age": 0.0}),
            ("pick", pick),
            ("advance", {"seconds": 6.0}),
            ("pool_update", {"member": ("p2", TENANTED), "remove": False}),
            ("pick", pick),
        )  # fmt: skip


def test_a_rate_log_lasts_as_long_as_its_longest_window_then(redis_url: str) -> None:
    """A number's log of calls is kept as long as the longest window in force when it last
    counted a call: a day window set later does not count calls older than that (on Redis the
    log's key had expired; memory still counted them)."""
    call = {"enqueue": False, "ttl": 5.0, "max_hold": None, "callee": None, "priority": 0}
    day = PolicyChange(rates=(Window(3, DAY, calendar=True),))
    with differential(redis_url) as machine:
        replay(
            machine,
            ("acquire", {"number": TRUNKED, "token": "t1", "owner": "o1", **call}),
            ("advance", {"seconds": 62.0}),  # its 60 s window, and a second more
            ("set_policy", {"number": TRUNKED, "changes": day}),
        )


def test_a_number_disabled_after_a_cool_down_gives_no_time_to_retry_at(redis_url: str) -> None:
    """The end of a past cool-down is no time to retry at (memory gave it, as negative)."""
    call = {"enqueue": False, "ttl": 5.0, "max_hold": None, "callee": None, "priority": 0}
    cooling = PolicyChange(state="cooling", until=30.0, reason="477")
    with differential(redis_url) as machine:
        replay(
            machine,
            ("set_policy", {"number": SMALL, "changes": cooling}),
            ("advance", {"seconds": 31.0}),
            ("set_policy", {"number": SMALL, "changes": PolicyChange(state="disabled")}),
            ("acquire", {"number": SMALL, "token": "t1", "owner": "o1", **call}),
        )


def test_lapsed_numbers_of_a_sample_go_back_in_load_order(redis_url: str) -> None:
    """The local strategy's sample is random (on Redis, SRANDMEMBER's order): the lapsed numbers
    it finds went back in that order, so the next pick took another number on each backend.
    Three rounds: the two orders differ in one at least, seven times in eight."""
    pick: dict[str, Any] = {"ttl": 5.0, "max_hold": None, "priority": 0, "sticky_ttl": 10.0}
    pick |= {"pool": "p1", "owner": "o1", "wait": False}
    lapsing = (LAPSE, LAPSE - 7 * DAY)
    steps: list[tuple[str, dict[str, Any]]] = [
        ("pool_update", {"member": ("p1", PLAIN), "remove": True}),
    ]
    for token in ("t1", "t2", "t3"):
        steps += [
            ("pick", {**pick, "token": "t6", "strategy": "local", "tries": 3,
                      "callee": CALLEES[1], "calendar": LAPSE}),
            ("pick", {**pick, "token": token, "strategy": "least-loaded", "tries": 1,
                      "callee": None, "calendar": 0.0}),
        ]  # fmt: skip
    with differential(redis_url) as machine:
        replay(machine, *steps, terms=((0.0, 0.0), lapsing, lapsing, (0.0, 0.0), (0.0, 0.0)))
