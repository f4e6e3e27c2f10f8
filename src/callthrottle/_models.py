"""The values callthrottle hands out: leases, usage snapshots, and who holds a number's slots."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._rates import Window

__all__ = ("Holder", "Lease", "ReleaseOutcome", "Usage", "WindowUsage")


class Lease:
    """A slot held on a caller-ID number, identified by ``(number, token)``.

    :meth:`Throttle.acquire` returns one; the throttle that took it renews it in the background
    until it is released. ``Lease(number=..., token=...)`` built anywhere (say, in a hang-up
    handler in another process) names the same slot and can be passed to
    :meth:`Throttle.release`. Two leases are equal when number and token are equal.

    :ivar number: the caller-ID number the slot is on
    :ivar token: the lease's token (the call ID when the dialer passed one)
    :ivar owner: ``owner_id`` of the throttle that took the lease, or None for a bare handle
    :ivar pool: the pool the number was picked from (:meth:`Throttle.acquire_from`), or None
    :ivar degraded: True if taken from this process's share while the backend was unreachable
        (see ``degraded_share``): it is counted in this process only
    """

    __slots__ = (
        "_lost", "_lost_reason", "_released", "degraded", "number", "owner", "pool", "token",
    )  # fmt: skip

    def __init__(self, number: str, token: str, owner: str | None = None) -> None:
        self.number = number
        self.token = token
        self.owner = owner
        self.pool: str | None = None
        self.degraded = False
        self._lost = False
        self._lost_reason: str | None = None
        self._released = False

    @property
    def lost(self) -> bool:
        """True once the throttle found the lease gone although nobody released it.

        That happens when renewal failed for longer than the lease TTL (a stalled process, a
        long backend outage) or when ``max_hold`` ran out. The call may still be up, but the slot
        is no longer counted: the number may now carry one call more than its cap.
        """
        return self._lost

    @property
    def lost_reason(self) -> str | None:
        """Why the lease was lost, or None: ``"expired"`` (not renewed in time), ``"max_hold"``,
        or ``"backend"`` (the backend no longer had it after its connection was replaced: a
        Redis restart without persistence or a failover to a replica that lacked it)."""
        return self._lost_reason

    @property
    def released(self) -> bool:
        """True once the lease was released, by this throttle or by anyone else."""
        return self._released

    def _mark_lost(self, reason: str) -> None:
        self._lost = True
        self._lost_reason = reason

    def _mark_released(self) -> None:
        self._released = True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Lease):
            return NotImplemented
        return self.number == other.number and self.token == other.token

    def __hash__(self) -> int:
        return hash((self.number, self.token))

    def __repr__(self) -> str:
        state = "lost" if self._lost else "released" if self._released else "held"
        owner = f", owner={self.owner!r}" if self.owner is not None else ""
        return f"Lease(number={self.number!r}, token={self.token!r}{owner}) <{state}>"


class ReleaseOutcome(enum.Enum):
    """What :meth:`Throttle.end_call` found when it gave a slot back."""

    #: a live lease was released: the call was counted until now
    RELEASED = "released"
    #: the lease had lapsed before the release (not renewed in time, or its session was no
    #: longer kept alive): for a while the call was up without being counted, and the number
    #: may have carried one call more than its cap
    EXPIRED = "expired"
    #: no such lease: never taken, already released, or lapsed so long ago that nothing
    #: remembers it (four lease TTLs)
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Usage:
    """A snapshot of one number's slots, as the backend saw them at one instant.

    :ivar in_use: live leases on the number (expired ones are not counted)
    :ivar limit: the cap the asking throttle applies to the number
    :ivar waiting: callers queued for a slot on the number, across every process
    """

    in_use: int
    limit: int
    waiting: int

    @property
    def free(self) -> int:
        """Slots that could be taken now (never negative, even when a cap was lowered)."""
        return max(self.limit - self.in_use, 0)


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """How much of one rate window a number has used (:meth:`Throttle.window_usage`).

    :ivar window: the window in force (configured, set at run time, or the warm-up's)
    :ivar used: calls it counts now
    """

    window: Window
    used: int

    @property
    def remaining(self) -> int:
        """Calls the window still admits now."""
        return max(self.window.amount - self.used, 0)

    def __str__(self) -> str:
        return f"{self.used}/{self.window}"


@dataclass(frozen=True, slots=True)
class Holder:
    """One live lease on a number, as an operator sees it (:meth:`Throttle.holders`).

    :ivar number: the caller-ID number
    :ivar token: the lease's token (the call ID when the dialer passed one)
    :ivar owner: ``owner_id`` of the throttle that took it (``host:pid:random`` by default)
    :ivar expires_in: seconds until the lease expires unless its owner renews it
    :ivar ttl: the lease's TTL in seconds, as its owner asked
    :ivar hold_left: seconds until its ``max_hold`` ends it, renewed or not (None: no bound)
    :ivar age: seconds since the slot was granted (the call's time on the number so far), by
        the backend's clock; for a lease counted again after the backend lost it, as its
        holder reported
    """

    number: str
    token: str
    owner: str
    expires_in: float
    ttl: float
    hold_left: float | None = None
    age: float = 0.0

    @property
    def renewed_ago(self) -> float:
        """Seconds since the lease was granted or last renewed."""
        return max(self.ttl - self.expires_in, 0.0)
