"""Numbers follow their paid period: active until it ends, then expired through the grace
period, then released, by a calendar the test moves; a renewal brings a number back at once."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import anyio
import pytest

from callthrottle import Event, Expiring, NumberState, NumberUnavailable, Throttle, Usage

from .test_fifo import NUMBER

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

SHANGHAI = ZoneInfo("Asia/Shanghai")
PAID_UNTIL = dt.date(2027, 1, 31)


class Calendar:
    """A wall clock the test sets: seconds since the epoch."""

    def __init__(self, when: dt.datetime) -> None:
        self.now = when.timestamp()

    def set(self, when: dt.datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now


def at(day: dt.date, hour: int = 0, minute: int = 0, zone: dt.tzinfo = SHANGHAI) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=zone)


def config(
    paid_until: dt.date | str = PAID_UNTIL, timezone: str = "Asia/Shanghai", **term: Any
) -> dict[str, Any]:
    return {
        "timezone": timezone,
        "numbers": {NUMBER: {"paid_until": paid_until, **term}},
    }


async def refused(throttle: Throttle, state: str) -> NumberUnavailable:
    with pytest.raises(NumberUnavailable) as caught:
        await throttle.acquire(NUMBER, timeout=0)
    assert (caught.value.number, caught.value.state) == (NUMBER, state)
    assert caught.value.retry_after is None  # it takes a renewal, not time
    return caught.value


@pytest.mark.parametrize(
    ("when", "state", "days_left"),
    [
        (at(dt.date(2027, 1, 30), 12), None, 2),  # the day before the last day paid for
        (at(PAID_UNTIL, 23, 59), None, 1),  # the last day paid for, a minute before midnight
        (at(dt.date(2027, 2, 1)), "expired", 0),  # midnight: the first day unpaid
        (at(dt.date(2027, 2, 7), 23, 59), "expired", -6),  # the grace period's last minute
        (at(dt.date(2027, 2, 8)), "released", -7),  # after the grace period
        (at(dt.date(2027, 6, 1)), "released", -120),
    ],
    ids=["day-before", "last-day", "lapse", "grace-end", "released", "months-later"],
)
async def test_the_state_follows_the_calendar(
    new_throttle: ThrottleFactory, when: dt.datetime, state: str | None, days_left: int
) -> None:
    calendar = Calendar(when)
    async with new_throttle(config=config(), calendar=calendar) as throttle:
        status = await throttle.status(NUMBER)
        assert (status.paid_until, status.days_left) == (PAID_UNTIL, days_left)
        if state is None:
            await throttle.acquire(NUMBER, timeout=0)
            assert status.state is NumberState.ACTIVE
            return
        error = await refused(throttle, state)
        assert status.state is NumberState(state)
        assert error.reason == status.reason
        assert "paid until 2027-01-31" in str(error)
        assert "2027-02-08" in str(error)  # the release day
        with pytest.raises(NumberUnavailable):
            await throttle.acquire(NUMBER, timeout=5)  # refused at once, not after waiting
        assert await throttle.usage(NUMBER) == Usage(in_use=0, limit=20, waiting=0)


async def test_calls_up_when_it_lapses_run_out(new_throttle: ThrottleFactory) -> None:
    calendar = Calendar(at(PAID_UNTIL, 23, 59))
    async with new_throttle(config=config(), calendar=calendar) as throttle:
        held = await throttle.acquire(NUMBER, timeout=0)
        calendar.set(at(dt.date(2027, 2, 1)))
        await refused(throttle, "expired")
        assert (await throttle.usage(NUMBER)).in_use == 1
        assert await throttle.release(held) is True


async def test_a_caller_waiting_across_the_lapse_is_refused(
    new_throttle: ThrottleFactory,
) -> None:
    calendar = Calendar(at(PAID_UNTIL, 23, 59))
    async with new_throttle(config=config(), calendar=calendar) as throttle:
        held = await throttle.acquire(NUMBER, timeout=0, limit=1)
        outcome: list[BaseException] = []

        async def waiter() -> None:
            try:
                await throttle.acquire(NUMBER, timeout=10, limit=1)
            except NumberUnavailable as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            with anyio.fail_after(5):
                while (await throttle.usage(NUMBER, limit=1)).waiting == 0:
                    await anyio.sleep(0.01)
            calendar.set(at(dt.date(2027, 2, 1)))  # midnight passes while it waits
            await throttle.release(held)
        assert [type(e) for e in outcome] == [NumberUnavailable]
        assert (await throttle.usage(NUMBER, limit=1)).in_use == 0  # the slot it got is back


async def test_a_renewal_inside_the_grace_period_brings_it_back_in_every_process(
    new_throttle: ThrottleFactory,
) -> None:
    calendar = Calendar(at(dt.date(2027, 2, 3), 10))
    async with (
        new_throttle(config=config(), calendar=calendar) as operator,
        new_throttle(calendar=calendar) as dialer,
    ):
        await operator.publish_policy(comment="January's rent")
        await refused(dialer, "expired")
        await operator.publish_policy(config=config(dt.date(2027, 2, 28)), comment="renewed")
        await dialer.acquire(NUMBER, timeout=0)  # at once: no restart, no wait
        assert dialer.calendar is calendar
        term = dialer.config.term_for(NUMBER)  # the published policy it follows now
        assert term is not None
        assert term.paid_until == dt.date(2027, 2, 28)
        status = await dialer.status(NUMBER)
        assert (status.state, status.paid_until, status.days_left) == (
            NumberState.ACTIVE,
            dt.date(2027, 2, 28),
            26,
        )


async def test_a_policy_that_ends_the_period_binds_a_waiting_throttle_too(
    new_throttle: ThrottleFactory,
) -> None:
    calendar = Calendar(at(dt.date(2027, 2, 3), 10))
    async with (
        new_throttle(config=config(dt.date(2027, 2, 28)), calendar=calendar) as operator,
        new_throttle(calendar=calendar) as dialer,
    ):
        await operator.publish_policy()
        await dialer.acquire(NUMBER, timeout=0)
        await operator.publish_policy(config=config(dt.date(2027, 2, 1)), comment="not renewed")
        await refused(dialer, "expired")


async def test_a_run_time_state_still_applies_to_a_paid_number(
    new_throttle: ThrottleFactory,
) -> None:
    calendar = Calendar(at(dt.date(2027, 1, 10)))
    async with new_throttle(config=config(), calendar=calendar) as throttle:
        await throttle.set_state(NUMBER, "flagged", reason="spam label")
        await refused(throttle, "flagged")
        calendar.set(at(dt.date(2027, 2, 2)))
        assert (await throttle.status(NUMBER)).state is NumberState.EXPIRED
        await throttle.set_state(NUMBER, "released", reason="given back early")
        status = await throttle.status(NUMBER)
        assert (status.state, status.reason) == (NumberState.RELEASED, "given back early")


@pytest.mark.parametrize(
    ("timezone", "lapses_utc"),
    [
        ("Asia/Shanghai", dt.datetime(2027, 1, 31, 16, 0)),  # UTC+8
        ("America/Los_Angeles", dt.datetime(2027, 2, 1, 8, 0)),  # UTC-8
        ("Pacific/Kiritimati", dt.datetime(2027, 1, 31, 10, 0)),  # UTC+14
        ("UTC", dt.datetime(2027, 2, 1, 0, 0)),
    ],
)
async def test_it_lapses_at_midnight_in_the_configured_time_zone(
    new_throttle: ThrottleFactory, timezone: str, lapses_utc: dt.datetime
) -> None:
    lapse = lapses_utc.replace(tzinfo=dt.timezone.utc)
    calendar = Calendar(lapse - dt.timedelta(seconds=1))
    async with new_throttle(config=config(timezone=timezone), calendar=calendar) as throttle:
        lease = await throttle.acquire(NUMBER, timeout=0)
        await throttle.release(lease)
        calendar.set(lapse)
        await refused(throttle, "expired")


@pytest.mark.parametrize(
    ("paid_until", "lapse", "released", "grace_hours"),
    [
        # New York springs forward on 2027-03-14: that day has 23 hours.
        (dt.date(2027, 3, 12), "2027-03-13T05:00", "2027-03-15T04:00", 47),
        # ... and falls back on 2027-11-07: 25 hours.
        (dt.date(2027, 11, 5), "2027-11-06T04:00", "2027-11-08T05:00", 49),
    ],
    ids=["spring-forward", "fall-back"],
)
async def test_days_are_calendar_days_across_a_daylight_saving_change(
    new_throttle: ThrottleFactory,
    paid_until: dt.date,
    lapse: str,
    released: str,
    grace_hours: int,
) -> None:
    utc = dt.timezone.utc
    lapse_at = dt.datetime.fromisoformat(lapse).replace(tzinfo=utc)
    released_at = dt.datetime.fromisoformat(released).replace(tzinfo=utc)
    assert released_at - lapse_at == dt.timedelta(hours=grace_hours)
    calendar = Calendar(lapse_at - dt.timedelta(seconds=1))
    settings = config(paid_until, timezone="America/New_York", grace_days=2)
    async with new_throttle(config=settings, calendar=calendar) as throttle:
        await throttle.release(await throttle.acquire(NUMBER, timeout=0))
        calendar.set(lapse_at)
        await refused(throttle, "expired")
        calendar.set(released_at - dt.timedelta(seconds=1))
        await refused(throttle, "expired")
        calendar.set(released_at)
        await refused(throttle, "released")


async def test_a_profile_sets_the_period_its_numbers_do_not(
    new_throttle: ThrottleFactory,
) -> None:
    other = "+8657188880077"
    settings = {
        "timezone": "Asia/Shanghai",
        "default_profile": "rented",
        "profiles": {"rented": {"paid_until": "2027-01-31", "grace_days": 3}},
        "numbers": {other: {"paid_until": "2027-03-31"}},
    }
    calendar = Calendar(at(dt.date(2027, 2, 4)))
    async with new_throttle(config=settings, calendar=calendar) as throttle:
        await refused(throttle, "released")  # 3 days' grace: released on Feb 4th
        await throttle.acquire(other, timeout=0)


async def test_warnings_are_told_once_a_day_per_number(
    new_throttle: ThrottleFactory, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[Event] = []
    calendar = Calendar(at(dt.date(2027, 1, 20), 9))
    settings = config(warn_days=10)  # the warnings begin on Jan 22nd
    caplog.set_level(logging.WARNING, logger="callthrottle")
    async with new_throttle(config=settings, calendar=calendar, hooks=[events.append]) as throttle:

        def warnings() -> list[Expiring]:
            return [e for e in events if isinstance(e, Expiring)]

        await throttle.release(await throttle.acquire(NUMBER, timeout=0))
        assert warnings() == []
        calendar.set(at(dt.date(2027, 1, 22), 9))
        for _ in range(3):
            await throttle.release(await throttle.acquire(NUMBER, timeout=0))
        calendar.set(at(dt.date(2027, 1, 22), 23, 59))
        await throttle.release(await throttle.acquire(NUMBER, timeout=0))
        assert warnings() == [Expiring(NUMBER, "2027-01-31", 10, "active", "2027-02-08")]
        calendar.set(at(dt.date(2027, 1, 23), 0))  # a new day
        await throttle.release(await throttle.acquire(NUMBER, timeout=0))
        calendar.set(at(dt.date(2027, 2, 1), 8))
        await refused(throttle, "expired")
        await refused(throttle, "expired")
        assert warnings()[1:] == [
            Expiring(NUMBER, "2027-01-31", 9, "active", "2027-02-08"),
            Expiring(NUMBER, "2027-01-31", 0, "expired", "2027-02-08"),
        ]
    logged = [r.getMessage() for r in caplog.records if "paid until" in r.getMessage()]
    assert logged == [
        f"{NUMBER} expires in 10 days (paid until 2027-01-31)",
        f"{NUMBER} expires in 9 days (paid until 2027-01-31)",
        f"{NUMBER} expired today; released on 2027-02-08 (paid until 2027-01-31)",
    ]
