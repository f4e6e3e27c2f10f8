"""Rate windows: how many calls a number may start per second, hour or day."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse_many

from ._errors import InvalidArgument
from ._validate import check_amount, check_seconds

__all__ = (
    "NO_RATES",
    "WEEK",
    "RatePlan",
    "Window",
    "check_timezone",
    "parse_windows",
    "utc_offset",
)

DAY = 86400.0
_UNITS = (("day", DAY), ("hour", 3600.0), ("minute", 60.0), ("second", 1.0))


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``amount`` calls started in any ``seconds``-long stretch of time.

    With ``calendar`` (only for one-day windows), the day runs from local midnight to midnight
    in the configured time zone instead of rolling.
    """

    amount: int
    seconds: float
    calendar: bool = False

    def __str__(self) -> str:
        span = "day (from local midnight)" if self.calendar else f"{self.seconds:g} s"
        return f"{self.amount} per {span}"

    @property
    def written(self) -> str:
        """The window in ``limits``' notation, as a configuration writes it: ``100/hour``,
        ``5/10 second`` (whether a day starts at midnight is the profile's ``daily_reset``)."""
        for unit, length in _UNITS:
            count = self.seconds / length
            if count == int(count):
                count = int(count)
                return f"{self.amount}/{unit}" if count == 1 else f"{self.amount}/{count} {unit}"
        return f"{self.amount}/{self.seconds:g} second"  # pragma: no cover - whole seconds only


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """A trunk's or tenant's limits, taken together with the number's in one decision.

    :ivar group: ``"trunk:<name>"`` or ``"tenant:<name>"``
    :ivar cap: concurrent calls across all its numbers (None: no cap)
    :ivar reserve: slots of the cap kept for calls of priority 1 or more
    :ivar windows: rate windows across all its numbers
    """

    group: str
    cap: int | None = None
    reserve: int = 0
    windows: tuple[Window, ...] = ()


@dataclass(frozen=True, slots=True)
class RatePlan:
    """Everything a backend needs to apply a number's rate windows in one decision.

    :ivar windows: the configured windows (a window set at run time replaces them)
    :ivar warmup: daily caps by week while the number is ``warming`` (e.g. 10, 20, 30)
    :ivar midnight: one-day windows (the warm-up's too) count from local midnight
    :ivar tz_offset: the time zone's offset from UTC in seconds, now
    :ivar callee: the number called (E.164), when callee windows apply
    :ivar callee_windows: calls to one callee from every number of the same tenant
    :ivar groups: the limits of the number's trunk and tenant
    :ivar priority: the call's priority class (0: campaign calls; 1 and up may use reserves)
    """

    windows: tuple[Window, ...] = ()
    warmup: tuple[int, ...] = ()
    midnight: bool = False
    tz_offset: float = 0.0
    callee: str | None = None
    callee_windows: tuple[Window, ...] = ()
    groups: tuple[GroupPlan, ...] = ()
    priority: int = 0

    def warmup_window(self, weeks_warming: float) -> Window | None:
        """The warm-up's daily window ``weeks_warming`` weeks after warming began, or None."""
        week = int(weeks_warming)
        if week < 0 or week >= len(self.warmup):
            return None
        return Window(self.warmup[week], DAY, calendar=self.midnight)


NO_RATES = RatePlan()
WEEK = 7 * DAY

_NOTATION = "rate limits such as '5/second;100/hour;500/day'"


def parse_windows(
    text: object, midnight: bool = False, argument: str = "rates"
) -> tuple[Window, ...]:
    """Parse rate windows in ``limits``' notation: ``"5/second;100/hour;500/day"``.

    :param midnight: one-day windows reset at local midnight instead of rolling
    :raises InvalidArgument: if ``text`` is not valid notation
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(argument, text, _NOTATION)
    windows = _parse(text, midnight)
    if windows is None:
        raise InvalidArgument(argument, text, _NOTATION)
    for window in windows:
        check_amount(window.amount, f"{argument} (calls per window)")
        check_seconds(window.seconds, f"{argument} (window length)")
    return windows


@lru_cache(maxsize=1024)
def _parse(text: str, midnight: bool) -> tuple[Window, ...] | None:
    try:
        items = parse_many(text)
    except ValueError:
        return None
    windows = []
    for item in items:
        seconds = float(item.get_expiry())
        if item.amount < 1:
            return None
        windows.append(Window(item.amount, seconds, calendar=midnight and seconds == DAY))
    return tuple(windows)


def check_timezone(name: object, argument: str = "timezone") -> ZoneInfo | None:
    """An IANA time zone name such as ``Asia/Shanghai`` (None: UTC)."""
    if name is None:
        return None
    rule = "an IANA time zone such as 'Asia/Shanghai'"
    if not isinstance(name, str):
        raise InvalidArgument(argument, name, rule)
    try:
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise InvalidArgument(argument, name, rule) from None


def utc_offset(zone: ZoneInfo | None) -> float:
    """The zone's offset from UTC in seconds, now (DST included)."""
    if zone is None:
        return 0.0
    offset = dt.datetime.now(zone).utcoffset()
    return 0.0 if offset is None else offset.total_seconds()
