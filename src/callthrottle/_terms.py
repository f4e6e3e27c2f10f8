"""Paid periods: the rent of a caller-ID number, and what the calendar makes of it.

A number's rent is paid up to a day (``paid_until``, the last day paid for). The day after it
the number is ``expired``: the carrier still keeps it for ``grace_days`` days, but it admits no
calls. Then it is ``released``: given back to the carrier. Days are calendar days in the
configured time zone (UTC if none), so a number lapses at local midnight, whatever a
daylight-saving change does to the length of that day. A renewal is a later ``paid_until``,
published like any policy change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ._errors import InvalidArgument
from ._health import NumberState, NumberStatus

__all__ = (
    "DEFAULT_GRACE_DAYS", "DEFAULT_WARN_DAYS", "Calendar", "Term", "check_days",
    "check_paid_until",
)  # fmt: skip

#: Days a lapsed number is kept by its carrier before it is released (one carrier's rule).
DEFAULT_GRACE_DAYS = 7
#: Days before a number lapses that warnings begin.
DEFAULT_WARN_DAYS = 7
_MAX_DAYS = 3650

#: Seconds since the epoch: the clock that says which day it is (``time.time`` unless a test
#: or the simulator passes its own).
Calendar = Callable[[], float]


_FIRST_DAY, _LAST_DAY = dt.date(1970, 1, 1), dt.date(9000, 12, 31)
#: A calendar date as people write it (not the week dates or the basic form ISO also allows).
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def check_paid_until(value: object, argument: str = "paid_until") -> dt.date:
    """A date (``datetime.date``, or ISO text ``"2027-01-31"``), the last day paid for, from
    1970 to 9000."""
    day = None
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        with contextlib.suppress(ValueError):  # 2027-02-30
            day = dt.date.fromisoformat(value)
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        day = value
    if day is None or not _FIRST_DAY <= day <= _LAST_DAY:
        raise InvalidArgument(
            argument, value, "a date from 1970 to 9000, such as 2027-01-31 (the last day paid for)"
        )
    return day


def check_days(value: object, argument: str) -> int:
    """A whole number of days from 0 to 3650."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_DAYS:
        raise InvalidArgument(argument, value, f"a whole number of days from 0 to {_MAX_DAYS}")
    return value


def _midnight(day: dt.date, zone: dt.tzinfo) -> float:
    """The first instant of ``day`` in ``zone`` (seconds since the epoch). A midnight that a
    daylight-saving change skips is read with the offset before the change: the day's first
    instant all the same."""
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).timestamp()


@dataclass(frozen=True, slots=True)
class Term:
    """A number's paid period and the instants it sets (seconds since the epoch).

    :ivar paid_until: the last day paid for
    :ivar grace_days: days the carrier keeps the number after it lapses
    :ivar warn_days: days before it lapses that warnings begin
    :ivar zone: the time zone the days are in
    :ivar warn_at: the first instant of the warning window
    :ivar lapses_at: the first instant of the day after ``paid_until``: the number is
        ``expired`` from then
    :ivar released_at: the first instant after the grace period: ``released`` from then
    """

    paid_until: dt.date
    grace_days: int
    warn_days: int
    zone: dt.tzinfo
    warn_at: float
    lapses_at: float
    released_at: float

    @classmethod
    def of(
        cls, paid_until: dt.date, grace_days: int, warn_days: int, zone: dt.tzinfo | None
    ) -> Term:
        zone = dt.timezone.utc if zone is None else zone
        lapse = paid_until + dt.timedelta(days=1)
        return cls(
            paid_until,
            grace_days,
            warn_days,
            zone,
            _midnight(lapse - dt.timedelta(days=warn_days), zone),
            _midnight(lapse, zone),
            _midnight(lapse + dt.timedelta(days=grace_days), zone),
        )

    @property
    def lapse_day(self) -> dt.date:
        """The first day the number is no longer paid for."""
        return self.paid_until + dt.timedelta(days=1)

    @property
    def release_day(self) -> dt.date:
        """The day the carrier releases it, unless it is renewed before."""
        return self.paid_until + dt.timedelta(days=1 + self.grace_days)

    def state_at(self, now: float) -> NumberState | None:
        """``EXPIRED`` or ``RELEASED`` at ``now``; None while the number is paid for."""
        if now < self.lapses_at:
            return None
        return NumberState.EXPIRED if now < self.released_at else NumberState.RELEASED

    def warns_at(self, now: float) -> bool:
        """Whether ``now`` is inside the warning window (paid for, but not for long)."""
        return self.warn_at <= now < self.lapses_at

    def today(self, now: float) -> dt.date:
        """The day it is at ``now`` in the term's time zone."""
        return dt.datetime.fromtimestamp(now, self.zone).date()

    def days_left(self, now: float) -> int:
        """Days paid for from ``now``'s day on, that day included: 1 on the last day paid for,
        0 on the first day lapsed, -1 the day after, and so on."""
        return (self.paid_until - self.today(now)).days + 1

    def reason(self, state: NumberState) -> str:
        """Why the number admits no calls, naming the dates."""
        if state is NumberState.RELEASED:
            return (
                f"paid until {self.paid_until.isoformat()}; released to the carrier on "
                f"{self.release_day.isoformat()}"
            )
        return (
            f"paid until {self.paid_until.isoformat()}; the carrier releases it on "
            f"{self.release_day.isoformat()} unless it is renewed"
        )

    def describe(self, now: float) -> str:
        """For people: ``expires in 3 days`` (the days of :meth:`days_left`: ``in 1 day`` on the
        last day paid for), ``expired 2 days ago; released on ...``, ``released on ...``."""
        left = self.days_left(now)
        if left > 0:
            return f"expires in {left} day{'s' if left > 1 else ''}"
        if self.state_at(now) is NumberState.RELEASED:
            return f"released on {self.release_day.isoformat()}"
        ago = -left
        since = "today" if ago == 0 else "yesterday" if ago == 1 else f"{ago} days ago"
        return f"expired {since}; released on {self.release_day.isoformat()}"


def on_calendar(status: NumberStatus, term: Term, now: float) -> NumberStatus:
    """A number's status once the calendar is heard: its ``paid_until`` and ``days_left``,
    and, once its paid period lapsed, ``expired`` or ``released`` (the reason naming the dates)
    whatever its run-time state says, but for ``released``: an operator's release stays (a
    renewal does not bring such a number back)."""
    status = replace(status, paid_until=term.paid_until, days_left=term.days_left(now))
    lapsed = term.state_at(now)
    if lapsed is None or status.state is NumberState.RELEASED:
        return status
    return replace(
        status, state=lapsed, reason=term.reason(lapsed), remaining=None, warming_for=None
    )


def system_calendar() -> float:
    """The wall clock: seconds since the epoch."""
    return time.time()
