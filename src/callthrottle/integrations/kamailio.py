"""The handler that Kamailio's ``app_python3`` module loads: one slot per outbound call.

The routing script (``examples/kamailio/kamailio.cfg``) loads a two-line script that imports
:func:`mod_init` from here, and calls the handler's methods by name::

    modparam("app_python3", "load", "/etc/kamailio/callthrottle_handler.py")
    ...
    python_exec("acquire")    # initial INVITE, after t_newtran(): true admitted, false refused
    python_exec("release")    # BYE, CANCEL, and failure_route: the call is over
    python_exec("keepalive")  # from rtimer, every second

Settings come from environment variables, which every Kamailio process inherits from the
command that starts it (see :meth:`Settings.from_env`).

Only :class:`Slots` talks to the throttle: :meth:`Slots.acquire`, :meth:`Slots.release` and
:meth:`Slots.keepalive`. :class:`Handler` reads the SIP message (``KSR``) and turns answers into
return codes; changing the client behind the slots changes :class:`Slots` alone.

``KSR`` exists only inside Kamailio, so it is imported inside the methods that need it: the
module imports anywhere (type checks, tests).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import (
    AcquireTimeout,
    BackendUnavailable,
    InvalidArgument,
    LeaseConflict,
    NumberUnavailable,
)
from .._models import Lease
from ..sync import SyncThrottle

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


@dataclass(frozen=True)
class Settings:
    """How the handler reaches and applies the throttle.

    :ivar url: the backend (``CALLTHROTTLE_URL``), as :meth:`Throttle.from_url` takes it
    :ivar config: path of a TOML configuration with per-number caps (``CALLTHROTTLE_CONFIG``)
    :ivar cap: the cap of a number the configuration does not name (``CALLTHROTTLE_CAP``)
    :ivar lease_ttl: seconds a slot lives without renewal (``CALLTHROTTLE_LEASE_TTL``)
    :ivar on_backend_down: ``"refuse"`` (fail closed: reply 503) or ``"admit"`` (fail open:
        the call goes out uncounted) when the backend cannot be reached
        (``CALLTHROTTLE_ON_BACKEND_DOWN``)
    :ivar region: region of national numbers in From, e.g. ``CN`` (``CALLTHROTTLE_REGION``)
    :ivar instance: names this proxy instance in every lease owner
        (``CALLTHROTTLE_INSTANCE``); defaults to the host name and the pid of Kamailio's main
        process, so all its workers share it
    """

    url: str = "redis://127.0.0.1:6379/0"
    config: str | None = None
    cap: int = 20
    lease_ttl: float = 30.0
    on_backend_down: str = "refuse"
    region: str | None = None
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

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
            on_backend_down=on_down,
            region=get("REGION"),
            instance=get("INSTANCE") or defaults.instance,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Validate the settings as the throttle will (nothing connects).

        :raises InvalidArgument: naming the environment variable whose value is wrong
        """
        try:
            SyncThrottle.from_url(self.url, owner_id=self.instance, **self.throttle_options())
        except InvalidArgument as exc:
            name = exc.argument.partition(".")[0]  # a configuration key: config.numbers...
            variable = _VARIABLES.get(name, name.upper())
            detail = "" if name == exc.argument else f" ({exc.argument})"
            raise InvalidArgument(ENV_PREFIX + variable, exc.value, exc.rule + detail) from exc

    def throttle_options(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`SyncThrottle.from_url` besides the URL."""
        return {
            "default_limit": self.cap,
            "lease_ttl": self.lease_ttl,
            "config": self.config,
            "default_region": self.region,
        }


# The variable that sets each throttle argument.
_VARIABLES = {
    "url": "URL",
    "config": "CONFIG",
    "default_limit": "CAP",
    "lease_ttl": "LEASE_TTL",
    "default_region": "REGION",
    "owner_id": "INSTANCE",
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

    Today each process opens its own :class:`~callthrottle.sync.SyncThrottle` on first use (after
    Kamailio forked it: a thread started before the fork would not exist in the child), whose
    background thread renews the leases it took.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Validate everything now, in Kamailio's main process, so that a wrong setting stops
        # Kamailio at start-up instead of refusing every call later; nothing connects yet.
        settings.check()
        self._throttle: SyncThrottle | None = None
        self._pid = 0

    def _open(self) -> SyncThrottle:
        if self._throttle is None or self._pid != os.getpid():
            self._throttle = None  # one inherited through a fork has no thread behind it
            owner = f"{self.settings.instance}:{os.getpid()}"
            throttle = SyncThrottle.from_url(
                self.settings.url, owner_id=owner, **self.settings.throttle_options()
            )
            throttle.__enter__()
            self._throttle, self._pid = throttle, os.getpid()
        return self._throttle

    def acquire(self, number: str, call_id: str) -> bool:
        """Take a slot on ``number`` for the call ``call_id`` without waiting; False: refused."""
        try:
            self._open().acquire(number, token=call_id, timeout=0)
        except (AcquireTimeout, NumberUnavailable) as exc:  # full, rate-limited, or paused
            logger.info("refused %s on %s: %s", call_id, number, exc)
            return False
        except LeaseConflict:
            return True  # this call already holds its slot (an INVITE seen again)
        except BackendUnavailable as exc:
            admit = self.settings.on_backend_down == "admit"
            logger.error(
                "backend unavailable (%s): %s %s on %s",
                exc,
                "admitting, uncounted," if admit else "refusing",
                call_id,
                number,
            )
            return admit
        except InvalidArgument as exc:  # From carries no phone number: nothing to count it on
            logger.warning("refused %s: %s", call_id, exc)
            return False
        return True

    def release(self, number: str, call_id: str) -> None:
        """Give back the slot of the call ``call_id`` on ``number`` (taken by any process);
        nothing happens if it holds none."""
        try:
            self._open().release(Lease(number, call_id))
        except InvalidArgument:
            pass  # no phone number, so no slot was ever taken for it
        except BackendUnavailable as exc:
            logger.error(
                "backend unavailable (%s): the slot of %s on %s is freed when its lease expires",
                exc,
                call_id,
                number,
            )

    def keepalive(self) -> None:
        """Called every second from Kamailio's timer process (``rtimer``).

        Nothing to do yet: each worker's throttle renews its own leases from its own thread.
        """

    def close(self) -> None:
        """Stop this process's throttle, giving back the slots it holds.

        Kamailio never calls it: its calls outlive a restart of the proxy, so their slots must
        not be given back when a process stops (they lapse, unrenewed, after ``lease_ttl``).
        """
        throttle, self._throttle = self._throttle, None
        if throttle is not None and self._pid == os.getpid():
            throttle.__exit__(None, None, None)


class Handler:
    """What ``app_python3`` calls: ``python_exec("acquire")`` and so on.

    Each method takes the SIP message (app_python3 passes it; the values are read through
    ``KSR``) and returns :data:`TRUE` or :data:`FALSE` for the routing script.
    """

    def __init__(self, slots: Slots) -> None:
        self.slots = slots

    def child_init(self, rank: int) -> int:
        """Kamailio forked a process; it opens its throttle when it first needs one."""
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
