"""The campaign's calendar: simulated time laid over dates, so that a campaign of a few simulated
days crosses the day a number's paid period ends (``paid_until``).

The calendar starts at a date and time (``--start``, in the configured time zone) and advances
with simulated time: at ``speed=8640`` a simulated day passes in 10 real seconds. The throttle
is given it as its ``calendar`` clock, so it finds a number expired at the simulated midnight
its paid period ends. Rate windows, the lease TTL and a Redis fence still count real time."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

from .._errors import InvalidArgument

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

__all__ = ("SimulatedCalendar", "check_start", "local_text", "zone_name")

_START_RULE = (
    "a date and time such as 2027-01-30T09:00 (in the configured time zone, or with an "
    "offset such as +08:00), or a date such as 2027-01-30 (its midnight)"
)


def zone_name(zone: dt.tzinfo | None) -> str:
    """``Asia/Shanghai``; ``UTC`` when no time zone is configured."""
    return "UTC" if zone is None else str(getattr(zone, "key", None) or zone)


def local_text(epoch: float, zone: dt.tzinfo | None) -> str:
    """``2027-02-01 00:00``: the instant in ``zone`` (UTC if None), to the minute."""
    return dt.datetime.fromtimestamp(epoch, zone or dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def check_start(value: object, zone: ZoneInfo | None, duration: float = 0.0) -> float:
    """The campaign's first instant, in seconds since the epoch: ISO text (``2027-01-30T09:00``,
    ``2027-01-30 09:00``, ``2027-01-30``; without an offset it is in ``zone``, UTC if None), a
    ``datetime`` (naive: in ``zone``) or seconds since the epoch. The campaign's last instant
    (``duration`` simulated seconds later) must still be a date of the calendar."""
    moment: dt.datetime | None = None
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    elif isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            moment = dt.datetime.fromtimestamp(value, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            moment = None
    if moment is None:
        raise InvalidArgument("start", value, _START_RULE)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone or dt.timezone.utc)
    try:
        epoch = moment.timestamp()
        # The report names the dates the campaign runs through: its end must have one too.
        dt.datetime.fromtimestamp(epoch + duration, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise InvalidArgument(
            "start", value, f"{_START_RULE}, early enough that the campaign ends by the year 9999"
        ) from None
    return epoch


class SimulatedCalendar:
    """A clock for :class:`~callthrottle.Throttle`'s ``calendar``: seconds since the epoch on
    the campaign's calendar. It reads ``start`` until :meth:`begin`, then ``start`` plus the
    simulated seconds since (real seconds times ``speed``)."""

    __slots__ = ("_origin", "speed", "start", "zone")

    def __init__(self, start: float, speed: float, zone: ZoneInfo | None) -> None:
        self.start = start
        self.speed = speed
        self.zone = zone
        self._origin: float | None = None

    def begin(self) -> None:
        """The campaign starts now: simulated time runs from here."""
        self._origin = time.monotonic()

    def at(self, elapsed: float) -> float:
        """The instant ``elapsed`` simulated seconds into the campaign (seconds since the
        epoch)."""
        return self.start + elapsed

    def __call__(self) -> float:
        if self._origin is None:
            return self.start
        return self.start + (time.monotonic() - self._origin) * self.speed
