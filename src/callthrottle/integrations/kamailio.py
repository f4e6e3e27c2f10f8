"""The handler that Kamailio's ``app_python3`` module loads: one slot per outbound call.

The routing script (``examples/kamailio/kamailio.cfg``) loads a two-line script that imports
:func:`mod_init` from here, and calls the handler's methods by name::

    modparam("app_python3", "load", "/etc/kamailio/callthrottle_handler.py")
    ...
    python_exec("acquire")    # initial INVITE, after t_newtran(): true admitted, false refused
    python_exec("release")    # BYE, CANCEL, and failure_route: the call is over
    python_exec("keepalive")  # from rtimer, every second, in a process of its own

Settings come from environment variables, which every Kamailio process inherits from the
command that starts it (see :meth:`Settings.from_env`).

**The session.** Every slot the proxy takes belongs to one named session, the proxy instance
(``CALLTHROTTLE_INSTANCE``, by default ``kamailio@<host name>``), not to the Kamailio process
that took it: any process of the proxy gives it back on the call's BYE, CANCEL or failure.
Python runs inside Kamailio only while a message is handled, so nothing renews slots one by
one; instead the timer process sends one keep-alive a second for the whole session, whatever
it holds. Slots live while the session is kept alive; once no keep-alive (nor acquire) reached
Redis for ``CALLTHROTTLE_LEASE_TTL`` seconds, the session's life ends and every slot it held
stops counting for good (the proxy is taken for dead: its calls' slots must not stay taken).

**A restart of the proxy** (or a crashed worker, after which Kamailio stops and is started
again) keeps the session: the name does not change with the processes. Calls that are up keep
their slots, and their BYEs, relayed by the new processes, give them back, provided the proxy
is back (its timer keeping the session alive) within ``CALLTHROTTLE_LEASE_TTL``: choose it
longer than a restart takes. Two proxies must not share an instance name.

**Redis unreachable.** ``CALLTHROTTLE_ON_BACKEND_DOWN=refuse`` (the default: fail closed)
replies 503 to the calls that cannot be counted; ``admit`` (fail open) lets them out uncounted,
so the carrier may then see more calls than the cap. A slot that could not be given back
(a BYE while Redis was down, or a refused call whose request may have reached Redis) is given
back by the same process when it next handles a message; until then it stays taken. Keep-alives
that fail are logged; the slots outlive them by ``CALLTHROTTLE_LEASE_TTL``.

Only :class:`Slots` talks to the throttle: :meth:`Slots.acquire`, :meth:`Slots.release` and
:meth:`Slots.keepalive`. :class:`Handler` reads the SIP message (``KSR``) and turns answers into
return codes.

``KSR`` exists only inside Kamailio, so it is imported inside the methods that need it: the
module imports anywhere (type checks, tests).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .._config import Config
from .._errors import (
    AcquireTimeout,
    BackendUnavailable,
    InvalidArgument,
    LeaseConflict,
    NumberUnavailable,
)
from .._models import Lease, ReleaseOutcome
from .._numbers import check_region
from ..blocking import SessionClient

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import ModuleType

__all__ = ("Handler", "Settings", "Slots", "mod_init")

logger = logging.getLogger("callthrottle.kamailio")

ENV_PREFIX = "CALLTHROTTLE_"
ON_BACKEND_DOWN = ("refuse", "admit")

# What app_python3 makes of a method's return value: > 0 is true in the routing script, < 0
# false; 0 would end the script, so it is never returned.
TRUE, FALSE = 1, -1

# Slots a process could not give back (Redis was down) and tries again, at most: past that,
# the oldest are forgotten (they stay taken until ``max_hold``).
UNRELEASED_MAX = 10_000


def _default_instance() -> str:
    # Stable across restarts of the proxy: its calls keep their slots while it restarts.
    return f"kamailio@{socket.gethostname()}"


@dataclass(frozen=True)
class Settings:
    """How the handler reaches and applies the throttle.

    :ivar url: the Redis server (``CALLTHROTTLE_URL``): ``redis://``, ``rediss://`` or
        ``unix://``
    :ivar config: path of a TOML configuration with per-number caps (``CALLTHROTTLE_CONFIG``)
    :ivar cap: the cap of a number the configuration does not name (``CALLTHROTTLE_CAP``)
    :ivar lease_ttl: seconds the proxy's slots outlive its last keep-alive
        (``CALLTHROTTLE_LEASE_TTL``): longer than a restart of the proxy takes
    :ivar max_hold: if set, seconds after which a slot lapses whatever happens: the longest
        call counted, and the longest a slot nobody gave back stays taken
        (``CALLTHROTTLE_MAX_HOLD``; unset: one day)
    :ivar on_backend_down: ``"refuse"`` (fail closed: reply 503) or ``"admit"`` (fail open:
        the call goes out uncounted) when the backend cannot be reached
        (``CALLTHROTTLE_ON_BACKEND_DOWN``)
    :ivar region: region of national numbers in From, e.g. ``CN`` (``CALLTHROTTLE_REGION``)
    :ivar instance: the session every slot of this proxy belongs to
        (``CALLTHROTTLE_INSTANCE``); defaults to ``kamailio@<host name>``, the same after a
        restart, so that calls up across a restart keep their slots
    """

    url: str = "redis://127.0.0.1:6379/0"
    config: str | None = None
    cap: int = 20
    lease_ttl: float = 30.0
    max_hold: float | None = None
    on_backend_down: str = "refuse"
    region: str | None = None
    instance: str = field(default_factory=_default_instance)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``CALLTHROTTLE_*`` variables; unset or empty ones keep their defaults.

        :raises InvalidArgument: naming the variable whose value is wrong
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        defaults = cls()
        cap = _parsed(get("CAP"), "CAP", int, "an integer >= 1", defaults.cap)
        ttl = _parsed(get("LEASE_TTL"), "LEASE_TTL", float, "seconds > 0", defaults.lease_ttl)
        hold = _parsed(get("MAX_HOLD"), "MAX_HOLD", float, "seconds > 0", defaults.max_hold)
        on_down = (get("ON_BACKEND_DOWN") or defaults.on_backend_down).lower()
        if on_down not in ON_BACKEND_DOWN:
            raise InvalidArgument(
                ENV_PREFIX + "ON_BACKEND_DOWN", on_down, "one of " + ", ".join(ON_BACKEND_DOWN)
            )
        settings = cls(
            url=get("URL") or defaults.url,
            config=get("CONFIG"),
            cap=cap,
            lease_ttl=ttl,
            max_hold=hold,
            on_backend_down=on_down,
            region=get("REGION"),
            instance=get("INSTANCE") or defaults.instance,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Validate the settings as the client will (nothing connects).

        :raises InvalidArgument: naming the environment variable whose value is wrong
        """
        self.client().close()

    def client(self) -> SessionClient:
        """A client of the proxy's session; it connects when first used.

        :raises InvalidArgument: naming the environment variable whose value is wrong
        """
        try:
            config = Config() if self.config is None else Config.from_toml(self.config)
            if self.region is not None:  # the setting wins over the configuration's
                config = replace(config, default_region=check_region(self.region))
            return SessionClient.from_url(
                self.url,
                session=self.instance,
                config=config,
                default_limit=self.cap,
                lease_ttl=self.lease_ttl,
                max_hold=self.max_hold,
            )
        except InvalidArgument as exc:
            name = exc.argument.partition(".")[0]  # a configuration key: config.numbers...
            variable = _VARIABLES.get(name, name.upper())
            detail = "" if name == exc.argument else f" ({exc.argument})"
            raise InvalidArgument(ENV_PREFIX + variable, exc.value, exc.rule + detail) from exc


# The variable that sets each client argument.
_VARIABLES = {
    "url": "URL",
    "config": "CONFIG",
    "default_limit": "CAP",
    "lease_ttl": "LEASE_TTL",
    "max_hold": "MAX_HOLD",
    "default_region": "REGION",
    "session": "INSTANCE",
}


def _parsed(raw: str | None, name: str, kind: type[Any], rule: str, default: Any) -> Any:
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise InvalidArgument(ENV_PREFIX + name, raw, rule) from None


class Slots:
    """Every interaction with the throttle, for one Kamailio process.

    Each process opens its own :class:`~callthrottle.blocking.SessionClient` on first use, after
    Kamailio forked it (a connection opened before the fork would be shared by every child).
    The client has no thread: it talks to Redis only while Kamailio runs the handler.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Validate everything now, in Kamailio's main process, so that a wrong setting stops
        # Kamailio at start-up instead of refusing every call later; nothing connects yet.
        settings.check()
        self._client: SessionClient | None = None
        self._pid = 0
        # Call-ID -> number: slots this process could not give back, tried again first thing
        # each time it is called (oldest first).
        self._unreleased: dict[str, str] = {}

    def _open(self) -> SessionClient:
        if self._client is None or self._pid != os.getpid():
            # One inherited through a fork is dropped unclosed: its socket is the parent's.
            self._client, self._pid = self.settings.client(), os.getpid()
            self._unreleased = {}
        return self._client

    def acquire(self, number: str, call_id: str) -> bool:
        """Take a slot on ``number`` for the call ``call_id`` without waiting; False: refused."""
        client = self._open()
        self._unreleased.pop(call_id, None)  # taken again: that slot is this call's once more
        self._release_pending(client)
        try:
            client.acquire(number, token=call_id, timeout=0)
        except (AcquireTimeout, NumberUnavailable) as exc:  # full, rate-limited, or paused
            logger.info("refused %s on %s: %s", call_id, number, exc)
            return False
        except LeaseConflict:
            return True  # another proxy instance counts this call already
        except BackendUnavailable as exc:
            admit = self.settings.on_backend_down == "admit"
            logger.error(
                "backend unavailable (%s): %s %s on %s",
                exc,
                "admitting, uncounted," if admit else "refusing",
                call_id,
                number,
            )
            if not admit:  # the request may have taken a slot before the answer was lost
                self._remember(number, call_id)
            return admit
        except InvalidArgument as exc:  # From carries no phone number: nothing to count it on
            logger.warning("refused %s: %s", call_id, exc)
            return False
        return True

    def release(self, number: str, call_id: str) -> None:
        """Give back the slot of the call ``call_id`` on ``number`` (taken by any process of
        the proxy); nothing happens if it holds none."""
        client = self._open()
        self._release_pending(client)
        try:
            outcome = client.end_call(Lease(number, call_id))
        except InvalidArgument:
            return  # no phone number, so no slot was ever taken for it
        except BackendUnavailable as exc:
            logger.error(
                "backend unavailable (%s): the slot of %s on %s is given back later", exc,
                call_id, number,
            )  # fmt: skip
            self._remember(number, call_id)
            return
        if outcome is ReleaseOutcome.EXPIRED:
            logger.warning(
                "the slot of %s on %s had lapsed before the call ended: the call ran uncounted "
                "for a while (session %s not kept alive for %g s)",
                call_id,
                number,
                self.settings.instance,
                self.settings.lease_ttl,
            )

    def _remember(self, number: str, call_id: str) -> None:
        self._unreleased[call_id] = number
        if len(self._unreleased) > UNRELEASED_MAX:
            forgotten = next(iter(self._unreleased))
            del self._unreleased[forgotten]
            logger.error("too many slots not given back: %s stays taken until it lapses", forgotten)

    def _release_pending(self, client: SessionClient) -> None:
        """Give back the slots a failure kept; stop at the first failure (Redis still down)."""
        while self._unreleased:
            call_id, number = next(iter(self._unreleased.items()))
            try:
                outcome = client.end_call(Lease(number, call_id))
            except BackendUnavailable:
                return
            del self._unreleased[call_id]
            if outcome is not ReleaseOutcome.UNKNOWN:  # UNKNOWN: a refused call took none
                logger.warning(
                    "gave back the slot of %s on %s once Redis was back (%s)",
                    call_id,
                    number,
                    outcome.value,
                )

    def keepalive(self) -> None:
        """Called every second from Kamailio's timer process (``rtimer``): one keep-alive for
        every slot of the proxy. A failure is logged: the slots outlive the last keep-alive
        that succeeded by ``lease_ttl``."""
        try:
            self._open().keepalive()
        except BackendUnavailable as exc:
            logger.error(
                "keep-alive of session %s failed (%s): its slots lapse %g s after the last one "
                "that succeeded",
                self.settings.instance,
                exc,
                self.settings.lease_ttl,
            )

    def close(self) -> None:
        """Close this process's connection. The session's slots stay taken: the calls outlive
        the process; their hang-ups, or the session's end, give them back."""
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()


class Handler:
    """What ``app_python3`` calls: ``python_exec("acquire")`` and so on.

    Each method takes the SIP message (app_python3 passes it; the values are read through
    ``KSR``) and returns :data:`TRUE` or :data:`FALSE` for the routing script.
    """

    def __init__(self, slots: Slots) -> None:
        self.slots = slots

    def child_init(self, rank: int) -> int:
        """Kamailio forked a process; it opens its client when it first needs one."""
        return 0

    def acquire(self, msg: object) -> int:
        """Initial INVITE: true if the call may go out, false if the routing script must
        refuse it (503)."""
        ksr = _ksr()
        number, call_id = _value(ksr, "$fU"), _value(ksr, "$ci")
        return TRUE if self.slots.acquire(number, call_id) else FALSE

    def release(self, msg: object) -> int:
        """BYE, CANCEL or failure_route: the call is over (once or more: releasing is
        idempotent)."""
        ksr = _ksr()
        self.slots.release(_caller(ksr), _value(ksr, "$ci"))
        return TRUE

    def keepalive(self, msg: object) -> int:
        """The rtimer's tick."""
        self.slots.keepalive()
        return TRUE


def _ksr() -> ModuleType:
    return importlib.import_module("KSR")


def _value(ksr: ModuleType, name: str) -> str:
    value = ksr.pv.get(name)
    return value if isinstance(value, str) else ""


def _caller(ksr: ModuleType) -> str:
    """The caller-ID number of the message's call: From's user, except on an in-dialog request
    the callee sent (a BYE from the carrier), where the caller is in To."""
    if _value(ksr, "$tt") and ksr.rr.is_direction("upstream") > 0:
        return _value(ksr, "$tU")
    return _value(ksr, "$fU")


class _KamailioLog(logging.Handler):
    """Send log records to Kamailio's log (its own destination and level)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            ksr = _ksr()
        except ImportError:
            sys.stderr.write(self.format(record) + "\n")
            return
        text = self.format(record) + "\n"
        if record.levelno >= logging.ERROR:
            ksr.err(text)
        elif record.levelno >= logging.WARNING:
            ksr.warn(text)
        else:
            ksr.info(text)


def mod_init() -> Handler:
    """app_python3's entry point, run once in Kamailio's main process before it forks."""
    root = logging.getLogger("callthrottle")
    if not root.handlers:
        log = _KamailioLog()
        log.setFormatter(logging.Formatter("callthrottle: %(message)s"))
        root.addHandler(log)
        root.setLevel(logging.WARNING)
    return Handler(Slots(Settings.from_env()))
