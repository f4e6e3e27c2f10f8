"""Number health: the states a caller-ID number goes through, and reactions to carrier feedback."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime as dt

    from ._rates import Window

__all__ = ("DEFAULT_FEEDBACK", "NumberState", "NumberStatus", "Reaction")


class NumberState(str, enum.Enum):
    """Where a number is in its life. Only ``ACTIVE`` and ``WARMING`` numbers admit calls."""

    ACTIVE = "active"  #: in service
    WARMING = "warming"  #: new, in service while its daily volume ramps up
    COOLING = "cooling"  #: resting until a set time (e.g. after carrier feedback), then active
    FLAGGED = "flagged"  #: labelled as spam or reported by callees; out until an operator acts
    DISABLED = "disabled"  #: taken out of service by an operator
    EXPIRED = "expired"  #: the rental expired; the carrier keeps it for a few days
    RELEASED = "released"  #: given back to the carrier; must be recovered and re-imported

    @property
    def admits_calls(self) -> bool:
        return self in (NumberState.ACTIVE, NumberState.WARMING)


@dataclass(frozen=True, slots=True)
class NumberStatus:
    """A number's runtime policy, as every process sees it.

    :ivar state: its state (``COOLING`` that has run out reads ``ACTIVE``, with no reason)
    :ivar reason: why it is in that state, as given when it was set
    :ivar remaining: seconds until a cool-down ends (None: none running)
    :ivar cap: the cap set at run time, overriding configured and per-call caps (None: none)
    :ivar lowered_cap: a cap lowered for a while (e.g. after carrier feedback), or None
    :ivar lowered_remaining: seconds until the lowered cap lapses, or None
    :ivar rates: rate windows set at run time, replacing the configured ones (None: none)
    :ivar warming_for: seconds since the number began warming up (None unless ``WARMING``)
    :ivar paid_until: the last day the number is paid for (None: its paid period is not
        tracked). Once it lapsed, ``state`` is ``EXPIRED`` (then ``RELEASED``) whatever the
        run-time state, with the dates as ``reason``; a run-time ``RELEASED`` stays.
    :ivar days_left: days paid for from today on, today included (1 on the last day paid for,
        0 or less once lapsed), or None
    """

    state: NumberState
    reason: str | None = None
    remaining: float | None = None
    cap: int | None = None
    lowered_cap: int | None = None
    lowered_remaining: float | None = None
    rates: tuple[Window, ...] | None = None
    warming_for: float | None = None
    paid_until: dt.date | None = None
    days_left: int | None = None


@dataclass(frozen=True, slots=True)
class Reaction:
    """What :meth:`Throttle.report` does with a carrier's answer.

    :ivar action: ``"cooldown"`` (rest the number for ``seconds``), ``"flag"`` (take it out
        until an operator acts), ``"lower_cap"`` (cap it at ``cap``, or at ``factor`` times its
        cap, for ``seconds``) or ``"none"``
    """

    action: str
    seconds: float | None = None
    cap: int | None = None
    factor: float | None = None
    reason: str | None = None


#: Reactions to carrier answers when the configuration names none (``[feedback]`` overrides
#: them code by code). SIP codes, and one operator's own over-frequency codes.
DEFAULT_FEEDBACK: dict[str, Reaction] = {
    "403": Reaction("lower_cap", seconds=300, factor=0.5, reason="403 Forbidden from the trunk"),
    "429": Reaction("lower_cap", seconds=120, factor=0.5, reason="429 Too Many Requests"),
    "503": Reaction("lower_cap", seconds=60, factor=0.5, reason="503 Service Unavailable"),
    "607": Reaction("cooldown", seconds=24 * 3600, reason="607 Unwanted: callee marked the call"),
    "608": Reaction("flag", reason="608 Rejected by an analytics service"),
    "475": Reaction("lower_cap", seconds=60, factor=0.5, reason="475 over calls per second"),
    "477": Reaction("cooldown", seconds=3600, reason="477 caller number over-frequency"),
}
