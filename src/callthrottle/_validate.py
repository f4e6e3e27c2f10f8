"""Pure argument checks. No I/O: every check runs before anything is written."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from ._errors import InvalidArgument
from ._health import NumberState, Reaction

__all__ = (
    "check_feedback",
    "check_flag",
    "check_limit",
    "check_max_hold",
    "check_outcome",
    "check_owner",
    "check_priority",
    "check_reason",
    "check_state",
    "check_timeout",
    "check_token",
    "check_ttl",
)

_MAX_KEY_LENGTH = 256
_WHITESPACE = re.compile(r"\s")


def _check_key(argument: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(argument, value, "a non-empty str")
    if not value:
        raise InvalidArgument(argument, value, "a non-empty str")
    if len(value) > _MAX_KEY_LENGTH:
        raise InvalidArgument(argument, value, f"at most {_MAX_KEY_LENGTH} characters long")
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
    """A pool's name: a non-empty printable string without whitespace."""
    return _check_key("pool", pool)


def check_owner(owner_id: object) -> str:
    """An owner id (one per throttle instance)."""
    return _check_key("owner_id", owner_id)


def check_priority(priority: object) -> int:
    """A call's priority class: an int >= 0 (0: campaign calls)."""
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
        raise InvalidArgument("priority", priority, "an int >= 0")
    return priority


def check_limit(limit: object, argument: str = "limit") -> int:
    """A concurrency cap: an int >= 1 (bool is refused)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidArgument(argument, limit, "an int >= 1")
    return limit


def _as_float(argument: str, value: object, rule: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(argument, value, rule)
    return float(value)


def check_ttl(ttl: object, argument: str = "lease_ttl") -> float:
    """A lease time to live in seconds: a finite number > 0."""
    rule = "a finite number of seconds > 0"
    seconds = _as_float(argument, ttl, rule)
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgument(argument, ttl, rule)
    return seconds


def check_max_hold(max_hold: object) -> float | None:
    """The longest a lease may live in seconds (None: no bound), a finite number > 0."""
    if max_hold is None:
        return None
    return check_ttl(max_hold, "max_hold")


def check_timeout(timeout: object) -> float | None:
    """A wait in seconds: None (wait forever), 0 (try once) or a number > 0."""
    if timeout is None:
        return None
    if (timeout.__class__ is float or timeout.__class__ is int) and 0 <= timeout < math.inf:
        return float(timeout)  # the common case, decided as below
    rule = "None or a number of seconds >= 0"
    seconds = _as_float("timeout", timeout, rule)
    if math.isnan(seconds) or seconds < 0:
        raise InvalidArgument("timeout", timeout, rule)
    return None if math.isinf(seconds) else seconds


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
        elif reaction.factor is None or not 0 < reaction.factor < 1:
            raise InvalidArgument(
                f"{argument}.factor", reaction.factor, "a number between 0 and 1 (or set cap)"
            )
    return reaction


def check_feedback(feedback: object) -> dict[str, Reaction]:
    """Reactions by carrier code (see :meth:`Throttle.report`)."""
    if feedback is None:
        return {}
    if not isinstance(feedback, Mapping):
        raise InvalidArgument("feedback", feedback, "a mapping of carrier codes to Reactions")
    return {check_outcome(code): check_reaction(str(code), r) for code, r in feedback.items()}
