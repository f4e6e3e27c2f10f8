"""Pure argument checks. No I/O: every check runs before anything is written.

Every numeric input has a range, set here and nowhere else (README's "Ranges" table repeats
it): within it, both backends store the value and read it back exactly (on Redis, Lua numbers
are doubles, exact for integers below 2**53, and durations are kept in whole milliseconds);
beyond it, :class:`InvalidArgument` names the argument and the range.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from ._errors import InvalidArgument
from ._health import NumberState, Reaction

__all__ = (
    "MAX_AMOUNT",
    "MAX_CAP",
    "MAX_KEY_LENGTH",
    "MAX_PRIORITY",
    "MAX_SECONDS",
    "MIN_SECONDS",
    "check_amount",
    "check_feedback",
    "check_flag",
    "check_int",
    "check_limit",
    "check_max_hold",
    "check_outcome",
    "check_owner",
    "check_priority",
    "check_reason",
    "check_reserve",
    "check_seconds",
    "check_session",
    "check_state",
    "check_timeout",
    "check_token",
    "check_ttl",
)

MAX_KEY_LENGTH = 256

#: Concurrency caps and limits (a number's, a trunk's or tenant's, a lowered cap): 1 to this.
#: A reserve is 0 to this (and less than its cap).
MAX_CAP = 100_000
#: A call's priority class: 0 to this.
MAX_PRIORITY = 1_000_000
#: Calls a rate window admits, and a warm-up's daily caps: 1 to this.
MAX_AMOUNT = 1_000_000_000
#: Durations in seconds (lease_ttl, renew_interval, max_hold, a cool-down, a lowered cap's
#: time, sticky_ttl, a rate window's length): from one millisecond to 366 days, kept to the
#: millisecond (rounded up). A timeout may also be 0 (try once) or None/inf (wait for ever).
MIN_SECONDS = 0.001
MAX_SECONDS = 366 * 86400.0

_SECONDS_RULE = f"a number of seconds from {MIN_SECONDS:g} to {MAX_SECONDS:.0f} (366 days)"
_WHITESPACE = re.compile(r"\s")


def _check_key(argument: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(argument, value, "a non-empty str")
    if not value:
        raise InvalidArgument(argument, value, "a non-empty str")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidArgument(argument, value, f"at most {MAX_KEY_LENGTH} characters long")
    if not value.isprintable() or _WHITESPACE.search(value):
        raise InvalidArgument(argument, value, "free of whitespace and control characters")
    return value


def check_flag(value: object, argument: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(argument, value, "True or False")
    return value


def check_token(token: object) -> str:
    """A lease token (e.g. the call ID): a non-empty printable string without whitespace."""
    return _check_key("token", token)


def check_pool(pool: object) -> str:
    """A pool's name: a non-empty printable string without whitespace or ``:`` (its keys are
    ``...:pool:<name>:<part>``, with parts such as ``t:<token>``: a name with a colon could
    name another pool's key)."""
    name = _check_key("pool", pool)
    if ":" in name:
        raise InvalidArgument("pool", pool, "free of ':'")
    return name


def check_owner(owner_id: object) -> str:
    """An owner id (one per throttle instance)."""
    return _check_key("owner_id", owner_id)


def check_session(session: object) -> str:
    """A session's name: an owner id that several throttles (processes) share."""
    return _check_key("session", session)


def check_int(value: object, argument: str, low: int, high: int) -> int:
    """An int from ``low`` to ``high`` (bool is refused: ``True`` is no count)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(argument, value, f"an int from {low} to {high}")
    return int(value)


def check_priority(priority: object) -> int:
    """A call's priority class: an int from 0 (campaign calls) to MAX_PRIORITY."""
    return check_int(priority, "priority", 0, MAX_PRIORITY)


def check_limit(limit: object, argument: str = "limit") -> int:
    """A concurrency cap: an int from 1 to MAX_CAP."""
    return check_int(limit, argument, 1, MAX_CAP)


def check_reserve(reserve: object, argument: str = "reserve") -> int:
    """Slots of a group's cap kept for priority calls: an int from 0 to MAX_CAP."""
    return check_int(reserve, argument, 0, MAX_CAP)


def check_amount(amount: object, argument: str) -> int:
    """Calls a rate window admits (or a warm-up's daily cap): an int from 1 to MAX_AMOUNT."""
    return check_int(amount, argument, 1, MAX_AMOUNT)


def _as_float(argument: str, value: object, rule: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(argument, value, rule)
    return float(value)


def check_seconds(value: object, argument: str) -> float:
    """A duration in seconds, from MIN_SECONDS to MAX_SECONDS (NaN and inf refused), to the
    millisecond (rounded up)."""
    seconds = _as_float(argument, value, _SECONDS_RULE)
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:  # False for NaN too
        raise InvalidArgument(argument, value, _SECONDS_RULE)
    # To the millisecond, rounded up, as Redis keeps it: both backends then hold the same value
    # (rounded to a millionth of a millisecond first, so that 2.007 stays 2.007).
    return math.ceil(round(seconds * 1000, 6)) / 1000


def check_ttl(ttl: object, argument: str = "lease_ttl") -> float:
    """A lease time to live (or another duration) in seconds: see :func:`check_seconds`."""
    return check_seconds(ttl, argument)


def check_max_hold(max_hold: object) -> float | None:
    """The longest a lease may live in seconds (None: no bound), a finite number > 0."""
    if max_hold is None:
        return None
    return check_ttl(max_hold, "max_hold")


def check_timeout(timeout: object) -> float | None:
    """A wait in seconds: None or inf (wait forever), 0 (try once) or up to MAX_SECONDS."""
    if timeout is None:
        return None
    if (timeout.__class__ is float or timeout.__class__ is int) and 0 <= timeout <= MAX_SECONDS:
        return timeout + 0.0  # the common case, decided as below (+ 0.0: -0.0 becomes 0.0)
    rule = f"None, 0 (try once), inf or a number of seconds up to {MAX_SECONDS:.0f} (366 days)"
    seconds = _as_float("timeout", timeout, rule)
    if seconds == 0:
        return 0.0  # -0.0 too
    if math.isinf(seconds) and seconds > 0:
        return None
    if not 0 < seconds <= MAX_SECONDS:  # False for NaN too
        raise InvalidArgument("timeout", timeout, rule)
    return seconds


def check_state(state: object) -> NumberState:
    """A number state: a :class:`NumberState` or its value (``"cooling"``, ...)."""
    try:
        return NumberState(state)
    except ValueError:
        names = ", ".join(repr(s.value) for s in NumberState)
        raise InvalidArgument("state", state, f"one of {names}") from None


def check_reason(reason: object) -> str | None:
    """Why a state was set: None or a printable str of at most 200 characters."""
    if reason is None:
        return None
    if not isinstance(reason, str) or not reason.isprintable() or len(reason) > 200:
        raise InvalidArgument("reason", reason, "None or a printable str of at most 200 characters")
    return reason


def check_outcome(outcome: object) -> str:
    """A carrier's answer: a SIP status or carrier code, as an int or a str of digits."""
    text = str(outcome) if isinstance(outcome, int) and not isinstance(outcome, bool) else outcome
    if not isinstance(text, str) or not text.isdigit() or len(text) > 6:
        raise InvalidArgument(
            "outcome", outcome, "a SIP status or carrier code such as 607 or '477'"
        )
    return text


_ACTIONS = ("cooldown", "flag", "lower_cap", "none")


def check_reaction(code: str, reaction: object, where: str = "feedback") -> Reaction:
    """A :class:`Reaction` whose fields fit its action."""
    argument = f"{where}[{code!r}]"
    if not isinstance(reaction, Reaction):
        raise InvalidArgument(argument, reaction, "a Reaction")
    if reaction.action not in _ACTIONS:
        raise InvalidArgument(
            f"{argument}.action", reaction.action, "one of " + ", ".join(_ACTIONS)
        )
    if reaction.action in ("cooldown", "lower_cap"):
        check_ttl(reaction.seconds, f"{argument}.seconds")
    if reaction.action == "lower_cap":
        if reaction.cap is not None:
            check_limit(reaction.cap, f"{argument}.cap")
        else:
            rule = "a number between 0 and 1 (or set cap)"
            factor = reaction.factor
            if factor is None or not 0 < _as_float(f"{argument}.factor", factor, rule) < 1:
                raise InvalidArgument(f"{argument}.factor", factor, rule)
    return reaction


def check_feedback(feedback: object) -> dict[str, Reaction]:
    """Reactions by carrier code (see :meth:`Throttle.report`)."""
    if feedback is None:
        return {}
    if not isinstance(feedback, Mapping):
        raise InvalidArgument("feedback", feedback, "a mapping of carrier codes to Reactions")
    return {check_outcome(code): check_reaction(str(code), r) for code, r in feedback.items()}
