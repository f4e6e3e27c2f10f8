"""Pools and paid periods: a pick passes over the numbers whose paid period lapsed (expired or
released, by the throttle's calendar) and, among equally loaded numbers, takes those inside
their warning window last; a renewal, published, brings a number back at once."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pytest

from callthrottle import PoolExhausted

if TYPE_CHECKING:
    from callthrottle import Lease, Throttle

    from ..conftest import ThrottleFactory

N1, N2, N3, N4 = (f"+86571888{i:05d}" for i in range(1, 5))
CALLEE = "+8657100000001"  # in the numbers' area (the local strategy)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """Seconds since the epoch of a moment in UTC."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.timezone.utc).timestamp()


class Calendar:
    """A test calendar: it says the day is whatever ``now`` is set to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(
    numbers: list[str], paid: dict[str, str], *, cap: int = 1, **extra: Any
) -> dict[str, Any]:
    """A pool ``p`` of ``numbers`` at ``cap``; ``paid``: number -> its last day paid for (UTC,
    7 days' grace, warnings 7 days ahead)."""
    return {
        "default_profile": "fixed",
        "profiles": {"fixed": {"cap": cap}},
        "numbers": {number: {"paid_until": day} for number, day in paid.items()},
        "pools": {"p": {"numbers": numbers}},
        **extra,
    }


async def picks(throttle: Throttle, count: int, **options: Any) -> list[str]:
    """The numbers of ``count`` picks from ``p`` (each lease kept)."""
    leases: list[Lease] = [
        await throttle.acquire_from("p", timeout=0, **options) for _ in range(count)
    ]
    return [lease.number for lease in leases]


STRATEGIES = [
    ("least-loaded", {}),
    ("round-robin", {}),
    ("local", {"callee": CALLEE}),
    ("sticky", {"callee": CALLEE}),
]


@pytest.mark.parametrize(("strategy", "options"), STRATEGIES)
async def test_a_lapsed_number_is_never_picked(
    new_throttle: ThrottleFactory, strategy: str, options: dict[str, Any]
) -> None:
    """N1 comes first in every order, but its paid period ended yesterday: the pick takes N2,
    and once N2 is full the caller is refused (or waits), never handed N1."""
    calendar = Calendar(at(2027, 2, 1, 9))
    paid = {N1: "2027-01-31", N2: "2027-12-31"}
    async with new_throttle(config=config([N1, N2], paid), calendar=calendar) as throttle:
        assert await picks(throttle, 1, strategy=strategy, **options) == [N2]
        with pytest.raises(PoolExhausted) as refused:
            await throttle.acquire_from("p", timeout=0, strategy=strategy, **options)
        assert refused.value.retry_after is not None  # N2's lease: N1 gave no time
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("p", timeout=0.3, strategy=strategy, **options)
        assert (await throttle.usage(N1)).in_use == 0


async def test_a_number_lapses_at_the_midnight_after_its_last_paid_day(
    new_throttle: ThrottleFactory,
) -> None:
    """Picked up to the last instant of its last paid day, passed over from the next one on:
    through its grace period (expired) and after it (released)."""
    calendar = Calendar(at(2027, 1, 31, 23, 59, 59))
    paid = {N1: "2027-01-31"}
    async with new_throttle(
        config=config([N1], paid, cap=100), calendar=calendar, lease_ttl=600
    ) as throttle:
        assert await picks(throttle, 1) == [N1]
        for now in (at(2027, 2, 1), at(2027, 2, 7, 23, 59, 59), at(2027, 2, 8), at(2028, 1, 1)):
            calendar.now = now
            with pytest.raises(PoolExhausted):
                await throttle.acquire_from("p", timeout=0)
        assert (await throttle.usage(N1)).in_use == 1


async def test_expired_and_released_numbers_are_both_passed_over(
    new_throttle: ThrottleFactory,
) -> None:
    calendar = Calendar(at(2027, 2, 3, 12))
    paid = {
        N1: "2027-02-01",  # expired on Feb 2nd, released on the 9th
        N2: "2027-01-01",  # released on Jan 9th
        N3: "2027-12-31",
    }
    async with new_throttle(config=config([N1, N2, N3], paid), calendar=calendar) as throttle:
        assert await picks(throttle, 1) == [N3]
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("p", timeout=0)
        for number in (N1, N2):
            assert (await throttle.usage(number)).in_use == 0


@pytest.mark.parametrize("strategy", ["least-loaded", "round-robin", "local", "sticky"])
async def test_every_number_lapsed_refuses_the_pool_saying_so(
    new_throttle: ThrottleFactory, strategy: str
) -> None:
    """No number to try: refused at once (timeout=0), or when the timeout is up, with no time
    to retry at, the refusal naming the reason."""
    calendar = Calendar(at(2027, 3, 1))
    paid = {N1: "2027-01-31", N2: "2027-02-20"}
    async with new_throttle(config=config([N1, N2], paid), calendar=calendar) as throttle:
        for timeout in (0, 0.3):
            with pytest.raises(PoolExhausted, match="paid period of every number lapsed") as no:
                await throttle.acquire_from("p", timeout=timeout, strategy=strategy, callee=CALLEE)
            assert no.value.lapsed
            assert no.value.retry_after is None


async def test_a_pool_full_but_not_lapsed_does_not_say_it_lapsed(
    new_throttle: ThrottleFactory,
) -> None:
    calendar = Calendar(at(2027, 3, 1))
    paid = {N1: "2027-01-31"}  # N2: no paid period tracked
    async with new_throttle(config=config([N1, N2], paid), calendar=calendar) as throttle:
        assert await picks(throttle, 1) == [N2]
        with pytest.raises(PoolExhausted) as refused:
            await throttle.acquire_from("p", timeout=0)
        assert not refused.value.lapsed
        assert "lapsed" not in str(refused.value)


async def test_lapse_follows_the_configured_time_zone(new_throttle: ThrottleFactory) -> None:
    """In Shanghai (UTC+8) a number paid until Jan 31st lapses at 16:00 UTC that day."""
    calendar = Calendar(at(2027, 1, 31, 15, 59, 59))
    paid = {N1: "2027-01-31"}
    settings = config([N1], paid, cap=100, timezone="Asia/Shanghai")
    async with new_throttle(config=settings, calendar=calendar) as throttle:
        assert await picks(throttle, 1) == [N1]
        calendar.now = at(2027, 1, 31, 16)
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("p", timeout=0)


@pytest.mark.parametrize(("strategy", "options"), [STRATEGIES[0], STRATEGIES[2]])
async def test_a_number_about_to_lapse_is_picked_after_its_equals(
    new_throttle: ThrottleFactory, strategy: str, options: dict[str, Any]
) -> None:
    """N1 is inside its warning window (its paid period ends in 3 days): among numbers of
    equal load it comes last, but it is not passed over: a lesser load still goes first."""
    calendar = Calendar(at(2027, 1, 28, 10))
    paid = {N1: "2027-01-31", N2: "2027-12-31"}  # N3: no paid period tracked
    async with new_throttle(
        config=config([N1, N2, N3], paid, cap=2), calendar=calendar
    ) as throttle:
        assert await picks(throttle, 6, strategy=strategy, **options) == [
            N2, N3, N1, N2, N3, N1,
        ]  # fmt: skip


async def test_round_robin_gives_a_lapsed_numbers_turn_to_the_next(
    new_throttle: ThrottleFactory,
) -> None:
    """The turn goes on in order, the lapsed number out of it (each number once per round);
    a number about to lapse keeps its turn."""
    calendar = Calendar(at(2027, 1, 28, 10))
    paid = {N2: "2027-01-27", N3: "2027-01-31"}  # N2 lapsed, N3 warned
    settings = config([N1, N2, N3, N4], paid, cap=10)
    async with new_throttle(config=settings, calendar=calendar) as throttle:
        assert await picks(throttle, 6, strategy="round-robin") == [N1, N3, N4, N1, N3, N4]


async def test_sticky_keeps_the_callees_number_until_it_lapses(
    new_throttle: ThrottleFactory,
) -> None:
    """A callee keeps its number while it is paid for, about to lapse or not; then it is
    given another."""
    calendar = Calendar(at(2027, 1, 28, 10))
    paid = {N1: "2027-01-31", N2: "2027-12-31"}  # N1 warned from Jan 25th
    sticky = {"strategy": "sticky", "callee": CALLEE}
    async with new_throttle(config=config([N1, N2], paid, cap=10), calendar=calendar) as throttle:
        assert await picks(throttle, 1) == [N2]  # N1 comes after its equal of load
        assert await picks(throttle, 3, **sticky) == [N1, N1, N1]  # N1 was the least loaded
        calendar.now = at(2027, 2, 1)
        assert await picks(throttle, 2, **sticky) == [N2, N2]


async def test_a_renewal_brings_a_lapsed_number_back_at_once(
    new_throttle: ThrottleFactory,
) -> None:
    """Renewed (a later paid_until, published like any policy change), the lapsed number is
    picked at once, at its own load: first, since it holds no call."""
    calendar = Calendar(at(2027, 2, 3, 12))
    lapsed = config([N1, N2], {N1: "2027-02-01", N2: "2027-12-31"}, cap=2)
    renewed = config([N1, N2], {N1: "2027-03-31", N2: "2027-12-31"}, cap=2)
    async with (
        new_throttle(config=lapsed, policy="follow", calendar=calendar) as publisher,
        new_throttle(config=lapsed, policy="follow", calendar=calendar) as picker,
    ):
        await publisher.publish_policy()
        assert await picks(picker, 1) == [N2]
        await publisher.publish_policy(renewed)
        assert await picks(picker, 3) == [N1, N2, N1]
        with pytest.raises(PoolExhausted):
            await picker.acquire_from("p", timeout=0)


async def test_a_renewal_reaches_a_pool_made_at_run_time(new_throttle: ThrottleFactory) -> None:
    """A pool made with add_to_pool is not in the policy, but its numbers are: a publish tells
    it what the policy now says of them."""
    calendar = Calendar(at(2027, 2, 3, 12))
    lapsed: dict[str, Any] = {
        "numbers": {N1: {"paid_until": "2027-02-01"}, N2: {"paid_until": "2027-12-31"}}
    }
    renewed: dict[str, Any] = {
        "numbers": {N1: {"paid_until": "2027-03-31"}, N2: {"paid_until": "2027-12-31"}}
    }
    for settings in (lapsed, renewed):
        settings["default_profile"], settings["profiles"] = "one", {"one": {"cap": 1}}
        settings["default_tenant"] = "acme"  # on a Cluster, a run-time pool's numbers share it
    async with new_throttle(config=lapsed, policy="follow", calendar=calendar) as throttle:
        await throttle.publish_policy()
        await throttle.add_to_pool("rt", [N1, N2])
        assert (await throttle.acquire_from("rt", timeout=0)).number == N2
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("rt", timeout=0)
        await throttle.publish_policy(renewed)
        assert (await throttle.acquire_from("rt", timeout=0)).number == N1


async def test_a_number_picked_inside_its_warning_window_is_warned_of_once_a_day(
    new_throttle: ThrottleFactory,
) -> None:
    from callthrottle import Event, Expiring

    events: list[Event] = []
    calendar = Calendar(at(2027, 1, 30, 12))  # N1: two days left, N2: a year
    paid = {N1: "2027-01-31", N2: "2027-12-31"}
    settings = config([N1, N2], paid, cap=5)
    async with new_throttle(config=settings, calendar=calendar, hooks=[events.append]) as throttle:
        assert sorted(await picks(throttle, 4)) == [N1, N1, N2, N2]
        warned = [e for e in events if isinstance(e, Expiring)]
        assert warned == [Expiring(N1, "2027-01-31", 2, "active", "2027-02-08")]


async def test_a_pick_and_an_acquire_agree_on_the_instant_a_number_lapses(
    new_throttle: ThrottleFactory,
) -> None:
    """A fraction of a millisecond before midnight the number is still paid for, to a pick
    as to an acquire; at midnight it lapsed for both."""
    lapse = at(2027, 2, 1)
    calendar = Calendar(lapse - 0.0004)
    async with new_throttle(config=config([N1], {N1: "2027-01-31"}, cap=5), calendar=calendar) as t:
        assert await picks(t, 1) == [N1]
        await t.acquire(N1, timeout=0)
        calendar.now = lapse
        with pytest.raises(PoolExhausted):
            await t.acquire_from("p", timeout=0)
