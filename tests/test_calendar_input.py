"""The calendar a throttle is given: a clock of seconds since the epoch, checked when given."""

from __future__ import annotations

import datetime as dt

import pytest

from callthrottle import InvalidArgument, Throttle


@pytest.mark.parametrize("calendar", [dt.datetime.now, dt.date.today, lambda: "2027-01-31"])
def test_a_calendar_that_does_not_give_seconds_is_refused_when_given(calendar: object) -> None:
    """Not at the first call on a number with a paid period, as a TypeError from inside."""
    with pytest.raises(InvalidArgument) as caught:
        Throttle.from_url("memory://", calendar=calendar)  # type: ignore[arg-type]
    assert caught.value.argument == "calendar"
