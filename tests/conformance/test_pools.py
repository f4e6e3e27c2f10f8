"""Caller-ID pools: a slot on any suitable number of a pool, in one step."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import (
    AcquireTimeout,
    Config,
    ConfigError,
    InvalidArgument,
    Lease,
    LeaseConflict,
    PoolExhausted,
    Throttle,
)
from callthrottle._rates import NO_RATES
from callthrottle.backends import Outcome, PickRequest, PickResult

if TYPE_CHECKING:
    from callthrottle.backends import Backend

    from ..conftest import BackendFactory, ThrottleFactory

NUMBERS = [f"+86571888{i:05d}" for i in range(5)]
OTHER = "+8657199990001"


def pools(**extra: Any) -> dict[str, Any]:
    return {"pools": {"a": {"numbers": NUMBERS, **extra}, "b": {"numbers": [OTHER]}}}


async def test_least_loaded_spreads_one_call_at_a_time_over_every_number(
    new_throttle: ThrottleFactory,
) -> None:
    """Dialing one call at a time never keeps using the same caller ID (callees would label
    it): among numbers equally loaded, the least recently picked goes first."""
    picked: Counter[str] = Counter()
    async with new_throttle(config=pools(), default_limit=2) as throttle:
        for _ in range(50):
            async with throttle.slot_from("a", timeout=0) as lease:
                assert lease.pool == "a"
                picked[lease.number] += 1
    assert picked == dict.fromkeys(NUMBERS, 10)


async def test_least_loaded_fills_numbers_evenly_and_then_refuses(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(config=pools(), default_limit=2, lease_ttl=30) as throttle:
        leases = [await throttle.acquire_from("a", timeout=0) for _ in range(10)]
        assert Counter(lease.number for lease in leases) == dict.fromkeys(NUMBERS, 2)
        with pytest.raises(PoolExhausted) as caught:
            await throttle.acquire_from("a", timeout=0)
        assert caught.value.pools == ("a",)
        assert caught.value.refused_by == "pool"
        assert isinstance(caught.value, AcquireTimeout)
        assert caught.value.retry_after is not None
        assert 25 < caught.value.retry_after <= 30  # the earliest lease expiry
        for number in NUMBERS:
            assert (await throttle.usage(number)).in_use == 2
        for lease in leases:
            assert await throttle.release(lease) is True


async def test_round_robin_follows_the_pool_order(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(config=pools(strategy="round-robin")) as throttle:
        order = await throttle.pool_members("a")
        assert order == NUMBERS
        picked = []
        for _ in range(12):
            lease = await throttle.acquire_from("a", timeout=0)
            picked.append(lease.number)
        assert picked == (NUMBERS * 3)[:12]
        # A strategy can be asked for per call, too.
        least = await throttle.acquire_from("a", timeout=0, strategy="least-loaded")
        assert least.number in NUMBERS[2:]  # the ones with 2 calls, not 3


async def test_round_robin_goes_on_in_order_when_numbers_are_added(
    new_throttle: ThrottleFactory,
) -> None:
    """The turn passes to the number after the last one picked, also onto numbers added
    meanwhile (none is skipped)."""
    async with new_throttle(config={"default_tenant": "acme"}) as throttle:
        await throttle.add_to_pool("live", NUMBERS[:3])
        picked = []
        for added in (None, None, None, None, NUMBERS[3:], None, None):
            if added:
                await throttle.add_to_pool("live", added)
            lease = await throttle.acquire_from("live", strategy="round-robin", timeout=0)
            picked.append(NUMBERS.index(lease.number))
            await throttle.release(lease)
        assert picked == [0, 1, 2, 0, 1, 2, 3]


@pytest.mark.parametrize("state", ["flagged", "expired", "released"])
async def test_numbers_out_of_service_are_skipped(
    new_throttle: ThrottleFactory, state: str
) -> None:
    async with new_throttle(config=pools(), default_limit=1) as throttle:
        for number in NUMBERS[:4]:
            await throttle.set_state(number, state)
        assert (await throttle.acquire_from("a", timeout=0)).number == NUMBERS[4]
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("a", timeout=0)


async def test_numbers_that_cannot_take_the_call_are_skipped(
    new_throttle: ThrottleFactory,
) -> None:
    """Full, disabled, cooling down, over a rate window: each is skipped; the one number left
    takes every call, and then the pool is exhausted."""
    full, disabled, cooling, limited, good = NUMBERS
    config = pools()
    config["numbers"] = {limited: {"rates": "1/minute"}}
    async with new_throttle(config=config, default_limit=2) as throttle:
        await throttle.acquire(full, timeout=0)
        await throttle.acquire(full, timeout=0)
        await throttle.set_state(disabled, "disabled", reason="released by the carrier")
        await throttle.set_state(cooling, "cooling", duration=600, reason="477")
        await throttle.release(await throttle.acquire(limited, timeout=0))  # its 1 call a minute
        picked = [await throttle.acquire_from("a", timeout=0) for _ in range(2)]
        assert [lease.number for lease in picked] == [good, good]
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("a", timeout=0)
        assert (await throttle.usage(full)).in_use == 2
        for number in (disabled, cooling, limited):
            assert (await throttle.usage(number)).in_use == 0


async def test_trunk_and_callee_limits_apply_to_the_number_picked(
    new_throttle: ThrottleFactory,
) -> None:
    config = pools()
    config["trunks"] = {"t400": {"cap": 3}}
    config["numbers"] = {number: {"trunk": "t400"} for number in NUMBERS}
    config["callee"] = {"rates": "1/minute"}
    async with new_throttle(config=config) as throttle:
        first = await throttle.acquire_from("a", timeout=0, callee="+8613800138000")
        with pytest.raises(PoolExhausted):  # the callee was called a moment ago, from any number
            await throttle.acquire_from("a", timeout=0, callee="+8613800138000")
        await throttle.acquire_from("a", timeout=0, callee="+8613800138001")
        await throttle.acquire_from("a", timeout=0)
        with pytest.raises(PoolExhausted):  # the trunk's 3 lines are busy
            await throttle.acquire_from("a", timeout=0)
        assert (await throttle.group_usage("trunk", "t400")).in_use == 3
        await throttle.release(first)
        await throttle.acquire_from("a", timeout=0)


async def test_a_full_pool_falls_back_to_its_fallback_pool(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(config=pools(fallback="b"), default_limit=1) as throttle:
        leases = [await throttle.acquire_from("a", timeout=0) for _ in range(5)]
        spill = await throttle.acquire_from("a", timeout=0)
        assert (spill.number, spill.pool) == (OTHER, "b")
        with pytest.raises(PoolExhausted) as caught:
            await throttle.acquire_from("a", timeout=0)
        assert caught.value.pools == ("a", "b")
        await throttle.release(leases[0])
        again = await throttle.acquire_from("a", timeout=0)
        assert (again.number, again.pool) == (leases[0].number, "a")


async def test_members_change_at_run_time_for_every_throttle(
    new_throttle: ThrottleFactory,
) -> None:
    """Members carry the cap of the throttle that added them (here 1), for every picker.

    The numbers share a tenant, as pools of numbers the configuration does not list must on
    Redis Cluster (tests/redis/test_cluster.py checks the error otherwise)."""
    shared = {"default_tenant": "acme"}
    async with (
        new_throttle(default_limit=1, config=shared) as admin,
        new_throttle(config=shared) as dialer,
    ):
        assert await admin.pool_members("live") == []
        assert await admin.add_to_pool("live", NUMBERS[:2]) == 2
        assert await admin.add_to_pool("live", [NUMBERS[1], "+86 571 8880 0002"]) == 3
        assert await dialer.pool_members("live") == NUMBERS[:3]
        assert await admin.remove_from_pool("live", [NUMBERS[0]]) == 2
        picked = {(await dialer.acquire_from("live", timeout=0)).number for _ in range(2)}
        assert picked == {NUMBERS[1], NUMBERS[2]}  # the removed number is never picked
        with pytest.raises(PoolExhausted):
            await dialer.acquire_from("live", timeout=0)
        await admin.add_to_pool("live", [NUMBERS[4]])
        assert (await dialer.acquire_from("live", timeout=0)).number == NUMBERS[4]
        assert await admin.remove_from_pool("live", NUMBERS) == 0
        assert await admin.pool_members("live") == []
        with pytest.raises(PoolExhausted):
            await dialer.acquire_from("live", timeout=0)


async def test_a_waiting_call_gets_the_first_number_that_frees_up(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(config=pools(), default_limit=1) as throttle:
        leases = [await throttle.acquire_from("a", timeout=0) for _ in range(5)]
        got: list[Lease] = []

        async def wait() -> None:
            got.append(await throttle.acquire_from("a", timeout=5))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.05)
            assert not got
            await throttle.release(leases[3])
        assert got[0].number == leases[3].number
        started = anyio.current_time()
        with pytest.raises(PoolExhausted) as caught:
            await throttle.acquire_from("a", timeout=0.3)
        assert 0.29 <= anyio.current_time() - started < 2
        assert caught.value.timeout == 0.3
        assert sum([(await throttle.usage(n)).in_use for n in NUMBERS]) == 5


@pytest.mark.direct_only("cancels a caller while it waits; a blocking call cannot be")
async def test_a_cancelled_pick_leaves_no_slot_behind(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(config=pools(), default_limit=1) as throttle:
        leases = [await throttle.acquire_from("a", timeout=0) for _ in range(5)]
        with anyio.move_on_after(0.1):
            await throttle.acquire_from("a")
        for lease in leases:
            await throttle.release(lease)
        assert sum([(await throttle.usage(n)).in_use for n in NUMBERS]) == 0
        assert throttle.held == ()


async def test_many_callers_at_once_never_pass_any_cap(new_throttle: ThrottleFactory) -> None:
    async with (
        new_throttle(config=pools(), default_limit=2) as first,
        new_throttle(config=pools(), default_limit=2) as second,
    ):
        granted: list[Lease] = []
        refused = 0

        async def call(throttle: Throttle) -> None:
            nonlocal refused
            try:
                granted.append(await throttle.acquire_from("a", timeout=0))
            except PoolExhausted:
                refused += 1

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(call, first if i % 2 else second)
        assert len(granted) == 10
        assert refused == 30
        assert Counter(lease.number for lease in granted) == dict.fromkeys(NUMBERS, 2)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda t: t.acquire_from("", timeout=0), "pool"),
        (lambda t: t.acquire_from("has space", timeout=0), "pool"),
        (lambda t: t.acquire_from("a", timeout=-1), "timeout"),
        (lambda t: t.acquire_from("a", strategy="random"), "strategy"),
        (lambda t: t.acquire_from("a", callee="not a number"), "callee"),
        (lambda t: t.add_to_pool("a", "+8657188800000"), "numbers"),
        (lambda t: t.add_to_pool("a", ["+8657188800000", "12"]), "number"),
        (lambda t: t.remove_from_pool(" ", []), "pool"),
        (lambda t: t.add_to_pool("a:t", ["+8657188800000"]), "pool"),
        (lambda t: t.acquire_from("a:t", timeout=0), "pool"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_written(
    throttle: Throttle, call: Any, argument: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await call(throttle)
    assert caught.value.argument == argument
    assert await throttle.pool_members("a") == []


@pytest.mark.parametrize(
    ("pools_table", "key"),
    [
        ({"a": {"numbers": "+8657188800000"}}, "config.pools.a.numbers"),
        ({"a": {"numbers": ["12"]}}, "config.pools.a.numbers[0]"),
        ({"a": {"strategy": "random"}}, "config.pools.a.strategy"),
        ({"a": {"fallback": "nowhere"}}, "config.pools.a.fallback"),
        ({"a": {"fallback": "b"}, "b": {"fallback": "a"}}, "config.pools.a.fallback"),
        ({"a": {"size": 3}}, "config.pools.a"),
    ],
)
def test_bad_pool_configuration_names_the_key(pools_table: dict[str, Any], key: str) -> None:
    from callthrottle import Config

    with pytest.raises(ConfigError) as caught:
        Config.from_dict({"pools": pools_table})
    assert caught.value.argument.startswith(key)


async def test_numbers_that_could_not_take_a_call_are_looked_at_last(
    new_throttle: ThrottleFactory,
) -> None:
    """A pick looks at 16 numbers at most (its cost does not grow with the pool). Numbers that
    refused move behind the others, so the next picks reach the ones that can take calls."""
    numbers = [f"+86571889{i:05d}" for i in range(40)]
    disabled, good = numbers[:30], numbers[30:]
    async with new_throttle(config={"pools": {"big": {"numbers": numbers}}}) as throttle:
        for number in disabled:
            await throttle.set_state(number, "disabled")
        outcomes = []
        for _ in range(3):
            try:
                lease = await throttle.acquire_from("big", timeout=0)
            except PoolExhausted:
                outcomes.append("exhausted")
            else:
                outcomes.append("granted")
                assert lease.number in good
                await throttle.release(lease)
        assert outcomes.count("exhausted") <= 1
        assert outcomes[-1] == "granted"
        # From now on the good numbers come first.
        for _ in range(20):
            lease = await throttle.acquire_from("big", timeout=0)
            assert lease.number in good
            await throttle.release(lease)


HANGZHOU = ["+8657188880001", "+8657188880002"]
ELSEWHERE_IN_CHINA = ["+861088880001", "+862188880001"]
SAN_FRANCISCO = ["+14155550100"]


async def test_local_presence_prefers_the_callees_area_then_its_region(
    new_throttle: ThrottleFactory,
) -> None:
    numbers = SAN_FRANCISCO + ELSEWHERE_IN_CHINA + HANGZHOU
    config = {"pools": {"near": {"numbers": numbers, "strategy": "local"}}}
    async with new_throttle(config=config, default_limit=1) as throttle:

        async def picks(callee: str, count: int) -> list[str]:
            return [
                (await throttle.acquire_from("near", timeout=0, callee=callee)).number
                for _ in range(count)
            ]

        hangzhou_callee = "+8657112345678"  # a fixed line in area 571
        first = await picks(hangzhou_callee, 4)
        assert sorted(first[:2]) == sorted(HANGZHOU)
        assert sorted(first[2:]) == sorted(ELSEWHERE_IN_CHINA)  # same region, before the US
        assert await picks(hangzhou_callee, 1) == SAN_FRANCISCO
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("near", timeout=0, callee=hangzhou_callee)
        for lease in list(throttle.held):
            await throttle.release(lease)
        assert await picks("+14155550123", 1) == SAN_FRANCISCO  # a callee in San Francisco
        mobile = await picks("+8613800138000", 4)  # no area: any number in China first
        assert sorted(mobile) == sorted(HANGZHOU + ELSEWHERE_IN_CHINA)


async def test_sticky_gives_a_callee_the_same_caller_id_while_it_can(
    new_throttle: ThrottleFactory,
) -> None:
    config = {"pools": {"s": {"numbers": NUMBERS, "strategy": "sticky", "sticky_ttl": 0.2}}}
    callee, other = "+8613800138000", "+8613800138001"
    async with new_throttle(config=config, default_limit=2) as throttle:
        first = await throttle.acquire_from("s", timeout=0, callee=callee)
        await throttle.release(first)
        for _ in range(3):
            again = await throttle.acquire_from("s", timeout=0, callee=callee)
            assert again.number == first.number
            await throttle.release(again)
        assert (await throttle.acquire_from("s", timeout=0, callee=other)).number != first.number
        # The callee's number is full: another one takes the call, and from then on sticks.
        blockers = [await throttle.acquire(first.number, timeout=0) for _ in range(2)]
        moved = await throttle.acquire_from("s", timeout=0, callee=callee)
        assert moved.number != first.number
        await throttle.release(moved)
        for lease in blockers:
            await throttle.release(lease)
        assert (await throttle.acquire_from("s", timeout=0, callee=callee)).number == moved.number
        # Without a callee, or once the callee is forgotten, the pick is least-loaded.
        await anyio.sleep(0.25)
        numbers = set()
        for _ in range(5):
            lease = await throttle.acquire_from("s", timeout=0, callee=callee)
            numbers.add(lease.number)
            await anyio.sleep(0.25)  # forgotten again
        assert len(numbers) >= 3


async def test_callers_waiting_on_a_pool_are_served_in_order(
    new_throttle: ThrottleFactory,
) -> None:
    """First come, first served across throttles; while anyone waits, a try-once caller does
    not take the slot that frees; a release in one throttle wakes a waiter in another at once
    (well before the 0.25 s it would otherwise take to look again)."""
    config = {"pools": {"one": {"numbers": NUMBERS[:1]}}}
    async with (
        new_throttle(config=config, default_limit=1) as holder,
        new_throttle(config=config, default_limit=1) as waiters,
    ):
        held = await holder.acquire_from("one", timeout=0)
        order: list[tuple[str, float]] = []

        async def wait(name: str) -> None:
            lease = await waiters.acquire_from("one", token=name, timeout=10)
            order.append((name, anyio.current_time()))
            await anyio.sleep(0.02)
            await waiters.release(lease)

        async with anyio.create_task_group() as tg:
            for name in ("w1", "w2", "w3"):
                tg.start_soon(wait, name)
                await anyio.sleep(0.05)  # each is in line before the next comes
            released_at = anyio.current_time()
            await holder.release(held)
            with pytest.raises(PoolExhausted):  # others wait: no barging in
                await holder.acquire_from("one", timeout=0)
        assert [name for name, _ in order] == ["w1", "w2", "w3"]
        assert order[0][1] - released_at < 0.2
        # Nobody waits any more: a try-once caller gets the free slot.
        await holder.release(await holder.acquire_from("one", timeout=0))


@pytest.mark.direct_only("cancels a caller while it waits; a blocking call cannot be")
async def test_a_caller_that_stops_waiting_leaves_the_line(new_throttle: ThrottleFactory) -> None:
    config = {"pools": {"one": {"numbers": NUMBERS[:1]}}}
    async with new_throttle(config=config, default_limit=1) as throttle:
        held = await throttle.acquire_from("one", timeout=0)
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("one", timeout=0.1)  # first in line, then gone
        with anyio.move_on_after(0.1):
            await throttle.acquire_from("one")  # cancelled while in line
        await throttle.release(held)
        lease = await throttle.acquire_from("one", timeout=0)  # nobody is left in line
        assert lease.number == NUMBERS[0]


class _SentTwice:
    """A backend whose picks run twice, the first reply lost: what the Redis connection does
    when a pick's reply is cut (it sends the same call again on a new connection)."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def pick(self, *args: Any, **kwargs: Any) -> PickResult:
        await self._inner.pick(*args, **kwargs)
        return await self._inner.pick(*args, **kwargs)


@pytest.mark.parametrize("strategy", ["least-loaded", "round-robin", "local", "sticky"])
@pytest.mark.parametrize("timeout", [0, 5])
async def test_a_pick_sent_again_returns_the_slot_it_took(
    new_backend: BackendFactory, strategy: str, timeout: float
) -> None:
    """Every function is safe to run twice for the same token: a pick run again finds the slot
    its first run took, instead of taking a second one on another number of the pool (a lease
    that nobody would hold, renew or release)."""
    async with (
        Throttle(
            _SentTwice(new_backend()), config=pools(), default_limit=2, close_backend=True
        ) as throttle,
        Throttle(new_backend(), config=pools(), close_backend=True) as observer,
    ):
        callee = "+8613800138000"
        leases = [
            await throttle.acquire_from(
                "a", token=f"call-{i}", timeout=timeout, strategy=strategy, callee=callee
            )
            for i in range(3)
        ]
        in_use = {number: (await observer.usage(number)).in_use for number in NUMBERS}
        assert sum(in_use.values()) == 3
        for lease in leases:
            tokens = [h.token for h in await observer.holders(lease.number)]
            assert lease.token in tokens
        for lease in leases:
            assert await throttle.release(lease) is True
        assert sum([(await observer.usage(n)).in_use for n in NUMBERS]) == 0


async def test_a_token_holding_a_slot_of_the_pool_conflicts_for_another_owner(
    new_throttle: ThrottleFactory,
) -> None:
    async with (
        new_throttle(config=pools()) as first,
        new_throttle(config=pools()) as second,
    ):
        held = await first.acquire_from("a", token="call-1", timeout=0)
        with pytest.raises(LeaseConflict) as caught:
            await second.acquire_from("a", token="call-1", timeout=0)
        assert held.number in str(caught.value)
        assert sum([(await first.usage(n)).in_use for n in NUMBERS]) == 1
        assert await first.release(held) is True
        # Released, the token is free again, for anyone.
        again = await second.acquire_from("a", token="call-1", timeout=0)
        assert await second.release(again) is True


async def test_a_try_once_pick_while_others_wait_is_refused(new_backend: BackendFactory) -> None:
    """The backend contract: while callers wait on a pool, anyone but the first in line gets
    QUEUED (``wait``: now in line behind them) or, trying once, REFUSED (never in line)."""
    config = Config.from_dict({"pools": {"one": {"numbers": NUMBERS[:1]}}})
    backend = new_backend()
    backend.use_layout(config)
    await backend.open()

    async def pick(token: str, owner: str, wait: bool) -> PickResult:
        return await backend.pick(
            PickRequest("one", token, owner, 30.0, None, "least-loaded", 16, NO_RATES), wait=wait
        )

    try:
        await backend.pool_update("one", {NUMBERS[0]: config.member_spec(NUMBERS[0], 1)}, ())
        assert (await pick("held", "o1", False)).outcome is Outcome.GRANTED
        assert (await pick("first", "o2", True)).outcome is Outcome.REFUSED  # now first in line
        assert (await pick("behind", "o3", True)) == PickResult(Outcome.QUEUED)
        assert (await pick("once", "o3", False)) == PickResult(Outcome.REFUSED)
    finally:
        await backend.aclose()


async def test_release_owner_frees_a_dead_callers_place_in_a_pools_line(
    new_backend: BackendFactory, new_throttle: ThrottleFactory
) -> None:
    """A dead process waited on a pool, first in line: once its owner is released, a slot of
    the pool that frees goes to the next caller at once, not after the place lapses (60 s)."""
    config = {"pools": {"one": {"numbers": NUMBERS[:1]}}}
    dead = new_backend()
    await dead.open()
    async with new_throttle(config=config, default_limit=1, lease_ttl=60) as survivor:
        held = await survivor.acquire_from("one", timeout=0)
        place = await dead.pick(
            PickRequest("one", "dead-call", "dead-owner", 60, None, "least-loaded", 3, NO_RATES),
            wait=True,
        )
        assert place.outcome is Outcome.REFUSED  # kept in line
        await survivor.release(held)
        with pytest.raises(PoolExhausted):  # the slot is kept for the caller first in line
            await survivor.acquire_from("one", timeout=0)
        assert await survivor.release_owner("dead-owner") == 1
        lease = await survivor.acquire_from("one", timeout=0)
        assert lease.number == NUMBERS[0]
    await dead.aclose()


async def test_two_pools_whose_numbers_share_a_tenant_keep_their_own_numbers(
    new_throttle: ThrottleFactory,
) -> None:
    """On a Cluster such pools share a hash tag: each still has its own members and line."""
    cfg = {
        "tenants": {"acme": {}},
        "numbers": {n: {"tenant": "acme"} for n in NUMBERS},
        "pools": {"a": {"numbers": NUMBERS[:2]}, "b": {"numbers": NUMBERS[2:4]}},
    }
    async with new_throttle(config=cfg, default_limit=1) as throttle:
        assert await throttle.pool_members("a") == NUMBERS[:2]
        assert await throttle.pool_members("b") == NUMBERS[2:4]
        picked = {(await throttle.acquire_from("a", timeout=0)).number for _ in range(2)}
        assert picked == set(NUMBERS[:2])
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("a", timeout=0)
        assert (await throttle.acquire_from("b", timeout=0)).number in NUMBERS[2:4]


async def test_a_caller_held_back_by_its_callees_window_keeps_no_place_in_line(
    new_throttle: ThrottleFactory,
) -> None:
    """A caller waits on the pool only because its callee was called a moment ago (a window
    that has room in an hour): no number that frees would serve it sooner, so it does not
    stand first in the pool's line, and a call to someone else takes a free number at once."""
    config = pools()
    config["callee"] = {"rates": "1/hour"}
    async with new_throttle(config=config) as throttle:
        await throttle.release(await throttle.acquire_from("a", callee="+8613800138000", timeout=0))

        async def held_back() -> None:
            with pytest.raises(PoolExhausted):
                await throttle.acquire_from("a", callee="+8613800138000", timeout=1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(held_back)
            await anyio.sleep(0.3)  # it has picked, and been refused, at least once
            lease = await throttle.acquire_from("a", callee="+8613800138001", timeout=0)
            await throttle.release(lease)


async def test_least_loaded_takes_the_number_longest_at_its_load(
    new_throttle: ThrottleFactory,
) -> None:
    """Among numbers equally loaded, the one whose load last changed (picked, released or
    added) longest ago goes first: a release puts its number behind the others of its load."""
    settings = {"pools": {"a": {"numbers": NUMBERS[:3]}}}
    async with new_throttle(config=settings, default_limit=2, lease_ttl=30) as throttle:
        first = await throttle.acquire_from("a", timeout=0)
        second = await throttle.acquire_from("a", timeout=0)
        assert [first.number, second.number] == NUMBERS[:2]
        await throttle.release(second)
        await throttle.release(first)  # both at 0 calls again: the second's number first
        third = await throttle.acquire_from("a", timeout=0)
        fourth = await throttle.acquire_from("a", timeout=0)
        assert [third.number, fourth.number] == [NUMBERS[2], NUMBERS[1]]
        for lease in (third, fourth):
            await throttle.release(lease)


@pytest.mark.direct_only("drives the throttle's backend directly, on the test's event loop")
async def test_a_pick_that_will_not_wait_is_refused_while_others_wait(
    new_throttle: ThrottleFactory,
) -> None:
    settings = {"pools": {"a": {"numbers": NUMBERS[:1]}}}
    async with new_throttle(config=settings, default_limit=1, lease_ttl=30) as throttle:
        backend = throttle.backend
        held = await throttle.acquire_from("a", timeout=0)
        ask = partial(PickRequest, "a", ttl=30, max_hold=None, strategy="least-loaded")
        waiting = await backend.pick(ask(token="w", owner="o1", tries=3, call=NO_RATES), wait=True)
        assert waiting.outcome is Outcome.REFUSED  # nothing free: it joined the line
        once = await backend.pick(ask(token="x", owner="o2", tries=3, call=NO_RATES), wait=False)
        assert once == PickResult(Outcome.REFUSED)  # behind a waiter, and not in line
        queued = await backend.pick(ask(token="y", owner="o2", tries=3, call=NO_RATES), wait=True)
        assert queued == PickResult(Outcome.QUEUED)
        for token, owner in (("w", "o1"), ("y", "o2")):
            await backend.pool_leave("a", token, owner)
        await throttle.release(held)


@pytest.mark.parametrize("strategy", ["least-loaded", "round-robin"])
async def test_a_caller_waiting_on_an_empty_pool_keeps_no_place_in_its_line(
    new_backend: BackendFactory, strategy: str
) -> None:
    """No number of an empty pool was full, so a caller that would wait takes no place in the
    pool's line (with any strategy): once numbers join, nobody stands ahead of a new caller."""
    config = Config.from_dict({"pools": {"one": {"numbers": NUMBERS[:1]}}})
    backend = new_backend()
    backend.use_layout(config)
    await backend.open()

    async def pick(token: str, wait: bool) -> PickResult:
        return await backend.pick(
            PickRequest("one", token, "o1", 30.0, None, strategy, 16, NO_RATES), wait=wait
        )

    spec = {NUMBERS[0]: config.member_spec(NUMBERS[0], 1)}
    try:
        await backend.pool_update("one", spec, ())
        await backend.pool_update("one", {}, NUMBERS[:1])
        assert (await pick("early", True)).outcome is Outcome.REFUSED
        await backend.pool_update("one", spec, ())
        assert await pick("later", False) == PickResult(Outcome.GRANTED, NUMBERS[0])
    finally:
        await backend.aclose()
