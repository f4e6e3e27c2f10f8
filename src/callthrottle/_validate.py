"""Pure argument checks. No I/O: every check runs before anything is written."""

from __future__ import annotations

import math

from ._errors import InvalidArgument

__all__ = (
    "check_limit",
    "check_max_hold",
    "check_owner",
    "check_timeout",
    "check_token",
    "check_ttl",
)

_MAX_KEY_LENGTH = 256


def _check_key(argument: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(argument, value, "a non-empty str")
    if not value:
        raise InvalidArgument(argument, value, "a non-empty str")
    if len(value) > _MAX_KEY_LENGTH:
        raise InvalidArgument(argument, value, f"at most {_MAX_KEY_LENGTH} characters long")
    if not value.isprintable() or any(c.isspace() for c in value):
        raise InvalidArgument(argument, value, "free of whitespace and control characters")
    return value


def check_token(token: object) -> str:
    """A lease token (e.g. the call ID): a non-empty printable string without whitespace."""
    return _check_key("token", token)


def check_owner(owner_id: object) -> str:
    """An owner id (one per throttle instance)."""
    return _check_key("owner_id", owner_id)


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
    rule = "None or a number of seconds >= 0"
    seconds = _as_float("timeout", timeout, rule)
    if math.isnan(seconds) or seconds < 0:
        raise InvalidArgument("timeout", timeout, rule)
    return None if math.isinf(seconds) else seconds
