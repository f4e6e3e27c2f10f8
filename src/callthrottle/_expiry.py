"""What the calendar says of a number this throttle is asked for: whether its paid period
lapsed (it is then refused), and the warning, once a day per number, that it ends soon."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._errors import NumberUnavailable
from ._events import Expiring
from ._health import NumberState

if TYPE_CHECKING:
    import datetime as dt

    from ._hooks import Hooks
    from ._terms import Calendar, Term
    from .backends import RuntimePolicy

__all__ = ("ExpiryWatch",)

logger = logging.getLogger("callthrottle")

#: Numbers remembered as warned today, until this many (then forgotten: warned again).
_WARNED_SIZE = 65536


class ExpiryWatch:
    """Reads the throttle's calendar for numbers whose paid period is tracked.

    :meth:`lapsed` is asked on each call for such a number: it says whether the number lapsed
    and, inside the warning window or after it lapsed, tells the hooks (:class:`Expiring`) and
    the log once a day per number (a day in the number's time zone).
    """

    __slots__ = ("_hooks", "_owner_id", "_warned", "calendar")

    def __init__(self, calendar: Calendar, hooks: Hooks, owner_id: str) -> None:
        self.calendar = calendar
        self._hooks = hooks
        self._owner_id = owner_id
        self._warned: dict[str, dt.date] = {}  # number -> the day it was last warned of

    def has_lapsed(self, term: Term) -> bool:
        """Whether the number's paid period lapsed (no warning is told)."""
        return self.calendar() >= term.lapses_at

    def lapsed(self, number: str, term: Term) -> NumberState | None:
        """``EXPIRED`` or ``RELEASED`` if the number's paid period lapsed, else None."""
        now = self.calendar()
        if now < term.warn_at:
            return None
        self._warn(number, term, now)
        return term.state_at(now)

    def _warn(self, number: str, term: Term, now: float) -> None:
        today = term.today(now)
        if self._warned.get(number) == today:
            return
        if len(self._warned) >= _WARNED_SIZE:
            self._warned.clear()
        self._warned[number] = today
        state = term.state_at(now)
        left = term.days_left(now)
        logger.warning(
            "%s %s (paid until %s)",
            number,
            term.describe(now),
            term.paid_until.isoformat(),
            extra={"owner": self._owner_id, "number": number, "days_left": left},
        )
        if self._hooks.installed:
            self._hooks.emit(
                Expiring(
                    number,
                    term.paid_until.isoformat(),
                    left,
                    (state or NumberState.ACTIVE).value,
                    term.release_day.isoformat(),
                )
            )


def refusal_if_lapsed(number: str, term: Term | None, now: float) -> NumberUnavailable | None:
    """The error for a call on ``number`` at ``now`` if its paid period (``term``; None: not
    tracked) lapsed, else None."""
    state = None if term is None else term.state_at(now)
    return None if term is None or state is None else lapse_refusal(number, term, state)


def lapse_refusal(
    number: str, term: Term, state: NumberState, runtime: RuntimePolicy | None = None
) -> NumberUnavailable:
    """The error for a call on a number whose paid period lapsed (the reason names the dates;
    no retry time: it takes a renewal). A number released at run time (``runtime``: its
    run-time policy, read when the calendar says only ``expired``) is refused as released,
    with the operator's reason, as its status says: a renewal would not bring it back."""
    if runtime is not None and runtime.state == NumberState.RELEASED.value:
        return NumberUnavailable(number, runtime.state, runtime.reason, None)
    return NumberUnavailable(number, state.value, term.reason(state), None)
