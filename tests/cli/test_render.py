"""How ``status`` and ``top`` write what they show: rate windows as rate notation writes
them, durations for a person."""

from __future__ import annotations

import pytest

from callthrottle._rates import Window, parse_windows
from callthrottle._survey import written
from callthrottle.cli._render import span


@pytest.mark.parametrize(
    "text", ["5/second", "100/hour", "30/minute", "500/day", "10/2 minutes", "40/6 hours"]
)
def test_a_window_reads_as_it_was_written(text: str) -> None:
    [window] = parse_windows(text)
    assert written(window) == text
    assert parse_windows(written(window)) == (window,)  # the notation reads it back


def test_a_calendar_day_and_an_odd_length() -> None:
    [day] = parse_windows("500/day", midnight=True)
    assert written(day) == "500/day (from local midnight)"
    assert written(Window(3, 0.5)) == "3 per 0.5 s"  # no notation for it


def test_spans() -> None:
    assert [span(s) for s in (0.42, 42.9, 185, 7440)] == [
        "0.4 s",
        "42 s",
        "3 min 05 s",
        "2 h 04 min",
    ]
