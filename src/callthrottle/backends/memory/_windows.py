"""Rate windows: the log of the calls a number (a callee, a group) admitted, and whether one
more fits. Twin of ``window_start``, ``rate_refusal`` and ``rate_hit`` in ``_common.lua``."""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING

from ..._rates import DAY

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..._rates import Window


def _window_start(window: Window, now: float, tz_offset: float, wall: float) -> float:
    """Where a window starts now, on the backend clock: a calendar day started at local midnight
    by the wall clock. Twin of ``window_start`` in ``_common.lua``."""
    if window.calendar:
        return now - (wall + tz_offset) % DAY
    return now - window.seconds


class _RateLog:
    """When the number's admitted calls started, oldest first, as long as its longest window.

    The whole log lapses a second after the longest window in force at its last call has run
    out (as its key does on Redis): a longer window set later does not count older calls. Twin
    of the keys R, C and GR described in ``_common.lua``."""

    __slots__ = ("hits", "lapses")

    def __init__(self) -> None:
        self.hits: list[float] = []
        self.lapses = math.inf

    def seen(self, now: float) -> list[float]:
        """The hits :meth:`current` would keep, without dropping a lapsed log (read only)."""
        return self.hits if now < self.lapses else []

    def current(self, now: float) -> list[float]:
        if now >= self.lapses:
            self.hits.clear()
            self.lapses = math.inf
        return self.hits

    def refusal(
        self, windows: Sequence[Window], now: float, tz_offset: float, wall: float
    ) -> tuple[float, Window] | None:
        """None if every window has room; else (seconds until it has, the full window). Twin of
        ``rate_refusal`` in ``_common.lua``."""
        hits = self.current(now)
        for window in windows:
            start = _window_start(window, now, tz_offset, wall)
            first = bisect.bisect_left(hits, start)
            count = len(hits) - first
            if count >= window.amount:
                if window.calendar:
                    return start + DAY - now, window
                oldest = hits[first + count - window.amount]
                return oldest + window.seconds + 1e-3 - now, window
        return None

    def hit(self, windows: Sequence[Window], now: float) -> None:
        """Count an admitted call. Twin of ``rate_hit`` in ``_common.lua``."""
        longest = max(DAY if w.calendar else w.seconds for w in windows)
        hits = self.current(now)
        hits.append(now)
        del hits[: bisect.bisect_left(hits, now - longest)]
        self.lapses = now + longest + 1.0


_EMPTY_LOG = _RateLog()  # read only: stands for a callee nobody has called yet
