"""A throttle's options, validated once: every part reads them from here."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from ._config import Config, ConfigError
from ._errors import InvalidArgument
from ._health import DEFAULT_FEEDBACK
from ._numbers import check_region
from ._terms import Calendar, system_calendar
from ._validate import (
    MAX_KEY_LENGTH,
    check_feedback,
    check_flag,
    check_limit,
    check_max_hold,
    check_owner,
    check_session,
    check_ttl,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

#: What the in-process fallback of degraded mode adds to the throttle's owner id.
DEGRADED_SUFFIX = ":degraded"

__all__ = ("Settings", "check_session_options", "listed", "load_config")


class Settings:
    """The validated options of one throttle (see :class:`~callthrottle.Throttle`), read only
    (but for the configuration, replaced by a published policy's: see :meth:`adopt`).

    Built before anything else so that bad input is refused before anything is made.
    """

    __slots__ = (
        "_own_feedback",
        "calendar",
        "config",
        "default_limit",
        "degraded_share",
        "feedback",
        "final",
        "keepalive",
        "lease_ttl",
        "max_hold",
        "owner_id",
        "region",
        "renew_interval",
        "restore_leases",
        "session",
    )

    def __init__(
        self,
        *,
        default_limit: object,
        lease_ttl: object,
        max_hold: object,
        owner_id: object,
        renew_interval: object,
        default_region: object,
        feedback: object,
        config: object,
        degraded_share: object,
        restore_leases: object,
        session: object,
        keepalive: object,
        calendar: object = None,
    ) -> None:
        self.calendar = check_calendar(calendar)
        self.session, self.keepalive = check_session_options(session, owner_id, keepalive)
        if self.session is not None:
            owner_id = self.session
        self.config = load_config(config)
        self.default_limit = check_limit(default_limit, "default_limit")
        self.region = check_region(default_region) or self.config.default_region
        self._own_feedback = check_feedback(feedback)
        self.feedback = {**DEFAULT_FEEDBACK, **self.config.feedback, **self._own_feedback}
        self.lease_ttl = check_ttl(lease_ttl)
        self.max_hold = check_max_hold(max_hold)
        self.owner_id = default_owner_id() if owner_id is None else check_owner(owner_id)
        if renew_interval is None:
            self.renew_interval = self.lease_ttl / 3
        else:
            self.renew_interval = check_ttl(renew_interval, "renew_interval")
            if self.renew_interval >= self.lease_ttl:
                raise InvalidArgument(
                    "renew_interval", renew_interval, f"shorter than lease_ttl ({lease_ttl})"
                )
        self.degraded_share = check_share(degraded_share)
        if (
            self.degraded_share is not None
            and len(self.owner_id) + len(DEGRADED_SUFFIX) > MAX_KEY_LENGTH
        ):
            # The in-process fallback's owner id is this one with the suffix.
            raise InvalidArgument(
                "owner_id",
                self.owner_id,
                f"at most {MAX_KEY_LENGTH - len(DEGRADED_SUFFIX)} characters with degraded_share "
                f"(the fallback's owner id adds {DEGRADED_SUFFIX!r})",
            )
        self.restore_leases = check_flag(restore_leases, "restore_leases")
        # Every lease's max_hold ends it before its first renewal.
        self.final = self.max_hold is not None and self.max_hold <= self.lease_ttl

    def adopt(self, config: Config) -> None:
        """The configuration is now a published policy's: its reactions to carrier answers
        apply (the ``feedback=`` given to the throttle still overrides them)."""
        self.config = config
        self.feedback = {**DEFAULT_FEEDBACK, **config.feedback, **self._own_feedback}


def check_session_options(
    session: object, owner_id: object, keepalive: object
) -> tuple[str | None, bool]:
    """The session's name (None: no session) and whether the heartbeat keeps it alive."""
    name = None if session is None else check_session(session)
    if name is not None and owner_id is not None and owner_id != name:
        raise InvalidArgument(
            "owner_id", owner_id, f"None or the session's name ({name!r}): it is the owner id"
        )
    if not check_flag(keepalive, "keepalive") and name is None:
        raise InvalidArgument("keepalive", keepalive, "True unless a session is given")
    return name, bool(keepalive)


def check_calendar(calendar: object) -> Calendar:
    """The clock that says which day it is (paid periods): ``time.time`` if None."""
    if calendar is None:
        return system_calendar
    rule = "None or a callable returning seconds since the epoch (a float, as time.time)"
    if not callable(calendar):
        raise InvalidArgument("calendar", calendar, rule)
    # Read once now: a clock that answers a datetime or text would fail only on the first
    # number with a paid period, deep in a call.
    try:
        now = calendar()
    except Exception as exc:
        raise InvalidArgument("calendar", calendar, f"{rule}; it raised {exc!r}") from exc
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
        raise InvalidArgument("calendar", calendar, f"{rule}; it returned {now!r}")
    return cast("Calendar", calendar)


def default_owner_id() -> str:
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-._") or "host"
    return f"{host}:{os.getpid()}:{os.urandom(4).hex()}"


def check_share(share: object) -> float | None:
    if share is None:
        return None
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise InvalidArgument("degraded_share", share, "None or a fraction in (0, 1]")
    return float(share)


def listed(
    argument: str, values: object, rule: str = "a list (or other collection) of numbers"
) -> list[object]:
    """A collection of values (not a lone string, which would be read letter by letter)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InvalidArgument(argument, values, rule)
    return list(cast("Iterable[object]", values))


def load_config(config: object) -> Config:
    if config is None:
        return Config()
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return Config.from_dict(config)
    if isinstance(config, (str, os.PathLike)):
        return Config.from_toml(config)
    raise ConfigError("config", config, "a Config, a dict, or the path of a TOML file")
