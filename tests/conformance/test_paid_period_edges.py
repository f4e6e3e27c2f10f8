"""Paid periods at their edges: a renewal or an end of the period published while a caller
waits in the number's line."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import (
    Admitted,
    Event,
    Expiring,
    InvalidArgument,
    Lease,
    NumberState,
    NumberUnavailable,
    Released,
    Throttle,
)

from .test_fifo import NUMBER
from .test_paid_periods import PAID_UNTIL, Calendar, at, config

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory


def capped(paid_until: dt.date) -> dict[str, Any]:
    settings = config(paid_until)
    settings["numbers"][NUMBER]["cap"] = 1
    return settings


async def _wait_in_line(throttle: Throttle, outcome: list[object]) -> None:
    try:
        outcome.append(await throttle.acquire(NUMBER, timeout=10))
    except NumberUnavailable as exc:
        outcome.append(exc)


async def _until_waiting(throttle: Throttle) -> None:
    with anyio.fail_after(5):
        while (await throttle.usage(NUMBER)).waiting == 0:
            await anyio.sleep(0.01)


async def test_a_renewal_published_while_a_caller_waits_across_the_lapse_admits_it(
    new_throttle: ThrottleFactory,
) -> None:
    """The caller's turn comes after the lapse, but a renewal is published by then: the
    published policy is read before refusing, as for any caller finding the number lapsed."""
    calendar = Calendar(at(PAID_UNTIL, 23, 59))
    async with (
        new_throttle(config=capped(PAID_UNTIL), calendar=calendar) as operator,
        new_throttle(calendar=calendar, lease_ttl=120) as dialer,
    ):
        await operator.publish_policy()
        held = await dialer.acquire(NUMBER, timeout=0)
        outcome: list[object] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wait_in_line, dialer, outcome)
            await _until_waiting(dialer)
            calendar.set(at(dt.date(2027, 2, 1), 0, 5))  # midnight passes while it waits
            await operator.publish_policy(config=capped(dt.date(2027, 2, 28)), comment="renewed")
            await dialer.release(held)
        assert [type(o) for o in outcome] == [Lease]


async def test_an_end_of_the_period_published_while_a_caller_waits_refuses_it(
    new_throttle: ThrottleFactory,
) -> None:
    """A policy ending the period is published while the caller waits: its turn comes on a
    lapsed number, which it must not be given."""
    calendar = Calendar(at(dt.date(2027, 2, 3), 10))
    async with (
        new_throttle(config=capped(dt.date(2027, 2, 28)), calendar=calendar) as operator,
        new_throttle(calendar=calendar, lease_ttl=120) as dialer,
    ):
        await operator.publish_policy()
        held = await dialer.acquire(NUMBER, timeout=0)
        outcome: list[object] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wait_in_line, dialer, outcome)
            await _until_waiting(dialer)
            await operator.publish_policy(config=capped(dt.date(2027, 2, 1)), comment="ended")
            await dialer.release(held)
        assert [type(o) for o in outcome] == [NumberUnavailable]
        assert (await dialer.usage(NUMBER)).in_use == 0


async def test_a_period_given_while_a_caller_waits_binds_it_across_the_lapse(
    new_throttle: ThrottleFactory,
) -> None:
    """The number had no paid period when the caller began to wait; a policy giving it one,
    ending that day, is published and taken while it waits; midnight passes before its turn:
    it is refused, as a caller waiting across the lapse of a period known from the start."""
    calendar = Calendar(at(PAID_UNTIL, 23, 50))
    untracked: dict[str, Any] = {
        "timezone": "Asia/Shanghai",
        "numbers": {NUMBER: {"cap": 1}},
    }
    async with (
        new_throttle(config=untracked, calendar=calendar) as operator,
        new_throttle(calendar=calendar, lease_ttl=1.5) as dialer,
    ):
        await operator.publish_policy()
        held = await dialer.acquire(NUMBER, timeout=0)
        outcome: list[object] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wait_in_line, dialer, outcome)
            await _until_waiting(dialer)
            await operator.publish_policy(config=capped(PAID_UNTIL), comment="rent tracked")
            with anyio.fail_after(5):  # the waiting dialer takes it (and asks again with it)
                while dialer.policy_version != 2:
                    await anyio.sleep(0.05)
            await anyio.sleep(0.3)
            calendar.set(at(dt.date(2027, 2, 1), 0, 5))  # midnight passes while it waits
            await dialer.release(held)
        assert [type(o) for o in outcome] == [NumberUnavailable]
        assert (await dialer.usage(NUMBER)).in_use == 0


@pytest.mark.parametrize(
    ("options", "argument"),
    [({"limit": 0}, "limit"), ({"priority": "high"}, "priority"), ({"callee": "x"}, "callee")],
)
async def test_bad_input_on_a_lapsed_number_is_refused_as_bad_input(
    new_throttle: ThrottleFactory, options: dict[str, Any], argument: str
) -> None:
    """What was wrong with the call is said whatever the calendar says of the number."""
    calendar = Calendar(at(dt.date(2027, 2, 3), 10))
    async with new_throttle(config=config(), calendar=calendar) as throttle:
        with pytest.raises(InvalidArgument) as caught:
            await throttle.acquire(NUMBER, timeout=0, **options)
        assert caught.value.argument == argument


async def test_the_status_of_a_renewed_number_is_active_before_any_call(
    new_throttle: ThrottleFactory,
) -> None:
    """A renewal is published: the dialer's status of the number says it is paid for again
    (as its next acquire would find), not the lapse of the policy it last decided with."""
    calendar = Calendar(at(dt.date(2027, 2, 3), 10))
    async with (
        new_throttle(config=config(), calendar=calendar) as operator,
        new_throttle(calendar=calendar) as dialer,
    ):
        await operator.publish_policy(comment="January's rent")
        with pytest.raises(NumberUnavailable):
            await dialer.acquire(NUMBER, timeout=0)  # it decides with that policy now
        assert (await dialer.status(NUMBER)).state is NumberState.EXPIRED
        await operator.publish_policy(config=config(dt.date(2027, 2, 28)), comment="renewed")
        status = await dialer.status(NUMBER)
        assert (status.state, status.paid_until) == (NumberState.ACTIVE, dt.date(2027, 2, 28))


async def test_a_caller_refused_across_the_lapse_is_told_to_hooks_as_refused_only(
    new_throttle: ThrottleFactory,
) -> None:
    """The slot its turn brought goes back unseen: hooks hear of a refusal, not of a release
    of a lease nobody was admitted to (admissions and releases would no longer pair up)."""
    events: list[Event] = []
    calendar = Calendar(at(PAID_UNTIL, 23, 59))
    async with new_throttle(
        config=capped(PAID_UNTIL), calendar=calendar, hooks=[events.append]
    ) as throttle:
        held = await throttle.acquire(NUMBER, timeout=0)
        outcome: list[object] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wait_in_line, throttle, outcome)
            await _until_waiting(throttle)
            calendar.set(at(dt.date(2027, 2, 1)))
            await throttle.release(held)
        assert [type(o) for o in outcome] == [NumberUnavailable]
        admitted = [e.token for e in events if isinstance(e, Admitted)]
        released = [e.token for e in events if isinstance(e, Released)]
        assert released == admitted == [held.token]


async def test_a_renewed_number_is_not_warned_of_as_expired(
    new_throttle: ThrottleFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The dialer last knew the lapsed period; the next day the renewal is published before
    its first call, which is admitted: that day's warning is the renewed period's, not
    "expired 3 days ago"."""
    events: list[Event] = []
    calendar = Calendar(at(dt.date(2027, 2, 3), 10))
    renewed = config(dt.date(2027, 2, 28), warn_days=30)
    async with (
        new_throttle(config=config(), calendar=calendar) as operator,
        new_throttle(calendar=calendar, hooks=[events.append]) as dialer,
    ):
        await operator.publish_policy(comment="January's rent")
        with pytest.raises(NumberUnavailable):
            await dialer.acquire(NUMBER, timeout=0)  # warned of as expired: it is
        calendar.set(at(dt.date(2027, 2, 4), 10))  # the next day
        await operator.publish_policy(config=renewed, comment="renewed")
        await dialer.release(await dialer.acquire(NUMBER, timeout=0))
    told = [e for e in events if isinstance(e, Expiring)]
    assert told == [
        Expiring(NUMBER, "2027-01-31", -2, "expired", "2027-02-08"),
        Expiring(NUMBER, "2027-02-28", 25, "active", "2027-03-08"),
    ]


async def test_a_number_released_at_run_time_is_refused_as_released_in_its_grace_period(
    new_throttle: ThrottleFactory,
) -> None:
    """Its status says released (an operator's release stays, whatever the calendar): the
    refusal of a call says the same state, with the same reason."""
    calendar = Calendar(at(dt.date(2027, 2, 3), 10))  # inside the grace period
    async with new_throttle(config=config(), calendar=calendar) as throttle:
        await throttle.set_state(NUMBER, "released", reason="given back early")
        status = await throttle.status(NUMBER)
        assert (status.state, status.reason) == (NumberState.RELEASED, "given back early")
        with pytest.raises(NumberUnavailable) as caught:
            await throttle.acquire(NUMBER, timeout=0)
        assert (caught.value.state, caught.value.reason) == ("released", "given back early")
