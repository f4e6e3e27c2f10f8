"""What a throttle tells the hooks installed on it (``Throttle(hooks=[...])``, :meth:`add_hook`).

Every event is a small frozen snapshot. Hooks are plain callables, called synchronously in the
task that caused the event (on :class:`~callthrottle.sync.SyncThrottle`, in its event loop's
thread), so they must be quick and must not block: count, record, hand off to a queue.

The events::

    Event
    ├── Admitted     a slot was granted (acquire, acquire_from)
    ├── Queued       a caller found the number full and joined its line
    ├── Refused      no slot: timeout, full window or group, unavailable number, exhausted pool
    ├── Cancelled    the caller was cancelled while it waited
    ├── Released     a slot was given back (by this throttle, or one of its leases by another)
    ├── LeaseLost    a lease of this throttle ended although nobody released it
    ├── Restored     a lease the backend lost (restart, failover) was counted again
    ├── Reclaimed    release_owner freed a (dead) throttle's leases and places in line
    └── Expiring     a number's paid period ends soon, or ended (once a day per number)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._errors import AcquireTimeout, NumberUnavailable

__all__ = (
    "Admitted",
    "Cancelled",
    "Event",
    "Expiring",
    "LeaseLost",
    "Queued",
    "Reclaimed",
    "Refused",
    "Released",
    "Restored",
)


class Event:
    """Base class of every event a throttle hands to its hooks."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Admitted(Event):
    """A slot was granted.

    :ivar number: the number the slot is on (E.164)
    :ivar token: the lease's token
    :ivar owner: ``owner_id`` of the throttle that took it
    :ivar waited: seconds from the call to :meth:`~Throttle.acquire` to the grant
    :ivar pool: the pool the number was picked from, or None
    :ivar degraded: True if taken from this process's share while the backend was unreachable
    """

    number: str
    token: str
    owner: str
    waited: float
    pool: str | None = None
    degraded: bool = False


@dataclass(frozen=True, slots=True)
class Queued(Event):
    """A caller found the number (or every number of a pool) full and joined its line.

    :ivar number: the number (E.164), or ``"pool:<name>"`` for :meth:`~Throttle.acquire_from`
    :ivar token: the caller's token
    """

    number: str
    token: str


@dataclass(frozen=True, slots=True)
class Refused(Event):
    """No slot was granted: the acquire raised ``error``.

    :ivar number: the number (E.164), or ``"pool:<name>"`` for :meth:`~Throttle.acquire_from`
    :ivar reason: what refused, one of a few words: ``"cap"`` (the number was full),
        ``"trunk"``, ``"tenant"`` (a group's cap), ``"window"`` (a rate window of the number
        or of its trunk or tenant), ``"callee"`` (a callee window), ``"state"`` (the number
        admits no calls), ``"pool"`` (no number of the pool could take the call)
    :ivar limit: which one, without the callee's number: ``"cap"``, ``"trunk:<name>"``, a
        window such as ``"5 per 1 s"`` or ``"100 per 1 h of trunk:<name>"``, a state such as
        ``"cooling"``, ``"pool"``
    :ivar waited: seconds from the call to the refusal
    :ivar error: the exception raised to the caller
    """

    number: str
    reason: str
    limit: str
    waited: float
    error: AcquireTimeout | NumberUnavailable


@dataclass(frozen=True, slots=True)
class Cancelled(Event):
    """The caller was cancelled (or timed out by its own cancel scope) while it waited; it
    holds no slot and left the line.

    :ivar number: the number (E.164), or ``"pool:<name>"``
    :ivar waited: seconds from the call to the cancellation
    """

    number: str
    waited: float


@dataclass(frozen=True, slots=True)
class Released(Event):
    """A slot was given back.

    Reported by the throttle that released it, and also by the throttle that held it when that
    was another one (``elsewhere``): sum only the events with ``elsewhere`` False to count
    releases across processes.

    :ivar number: the number (E.164)
    :ivar token: the lease's token
    :ivar held_for: seconds the lease was held, when it was one of this throttle's leases; None
        for another throttle's lease released here
    :ivar elsewhere: True when another throttle (or an operator) released a lease of this one
    """

    number: str
    token: str
    held_for: float | None
    elsewhere: bool = False


@dataclass(frozen=True, slots=True)
class LeaseLost(Event):
    """A lease of this throttle ended although nobody released it (see ``Lease.lost``).

    :ivar number: the number (E.164)
    :ivar token: the lease's token
    :ivar reason: ``"expired"``, ``"max_hold"`` or ``"backend"`` (as ``Lease.lost_reason``)
    """

    number: str
    token: str
    reason: str


@dataclass(frozen=True, slots=True)
class Restored(Event):
    """A lease of this throttle that the backend had lost (a Redis restart without
    persistence, a failover to a replica that lacked it) was counted again (see
    ``restore_leases``): the number may have carried calls over its cap meanwhile.

    :ivar number: the number (E.164)
    :ivar token: the lease's token
    """

    number: str
    token: str


@dataclass(frozen=True, slots=True)
class Reclaimed(Event):
    """:meth:`~Throttle.release_owner` freed the leases and places in line of a throttle.

    :ivar owner: the ``owner_id`` whose leases were freed
    :ivar count: how many leases and places in line were removed
    """

    owner: str
    count: int


@dataclass(frozen=True, slots=True)
class Expiring(Event):
    """A number this throttle was asked for is inside its warning window, or lapsed (see
    ``paid_until`` in :class:`~callthrottle.Config`). Told once a day per number (a day in the
    configured time zone), with a log warning.

    :ivar number: the number (E.164)
    :ivar paid_until: the last day it is paid for (ISO date: ``"2027-01-31"``)
    :ivar days_left: days paid for from today on, today included (1 on the last day; 0 or less
        once lapsed)
    :ivar state: ``"active"`` while it is paid for, else ``"expired"`` or ``"released"``
    :ivar release_day: the day the carrier releases it unless it is renewed (ISO date)
    """

    number: str
    paid_until: str
    days_left: int
    state: str
    release_day: str


def refusal(number: str, error: AcquireTimeout | NumberUnavailable, waited: float) -> Refused:
    """The :class:`Refused` event for ``error``, its reason sorted into one of a few words."""
    refused_by = getattr(error, "refused_by", None)
    if refused_by is None:  # NumberUnavailable
        state = str(getattr(error, "state", "unavailable"))
        return Refused(number, "state", state, waited, error)
    if refused_by.startswith("rate window "):
        window = refused_by.removeprefix("rate window ")
        if " for callee " in window:
            return Refused(number, "callee", window.partition(" for callee ")[0], waited, error)
        return Refused(number, "window", window, waited, error)
    kind = refused_by.partition(":")[0]
    if kind in ("cap", "trunk", "tenant", "pool"):
        return Refused(number, kind, refused_by, waited, error)
    return Refused(number, "other", refused_by, waited, error)
