"""What a backend answers: the outcome of an acquire, a pick, a release, a renewal, a restore.

Every backend returns these same types (see :class:`~callthrottle.backends.Backend`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._rates import Window

__all__ = (
    "AcquireResult", "Outcome", "PickResult", "ReleaseState", "RenewState", "RestoreOutcome",
)  # fmt: skip


class Outcome(enum.IntEnum):
    """What :meth:`Backend.acquire` did."""

    GRANTED = 1  #: the token now holds a slot (or already held it, for the same owner)
    QUEUED = 0  #: the token waits in the number's FIFO line
    REFUSED = 2  #: no slot and ``enqueue`` was false: nothing was written
    #: the number's state admits no calls: nothing was written (but a place the token had in a
    #: group's line goes: it is refused for good)
    UNAVAILABLE = 3
    RATE_LIMITED = 4  #: a rate window is full: nothing was written (and the token left the line)
    #: a trunk or tenant is at its cap, or its free slots are kept for callers ahead in its
    #: line: the caller waits in the group's line (when ``enqueue``)
    GROUP_FULL = 5
    CONFLICT = -1  #: the token holds or waits on the number for another owner
    #: a newer policy than the caller's is published: nothing was written (the caller loads it
    #: and asks again)
    STALE = 6


class RenewState(enum.IntEnum):
    """The state of one token after :meth:`Backend.renew`."""

    HELD = 1  #: holds a slot; its lease was extended
    FINAL = 2  #: holds a slot; its lease was extended up to its max_hold deadline, no further
    QUEUED = 0  #: waits in line; its place was kept alive
    GONE = -1  #: neither: expired, released or reclaimed
    #: gone while the server may have lost it (a Redis restart, failover or flush: the fence
    #: holds new grants): its holder should count it again (:meth:`Backend.restore`)
    LOST = -2


class ReleaseState(enum.IntEnum):
    """What :meth:`Backend.release` found (a backend returning a bool says 1 or 0)."""

    RELEASED = 1  #: a live lease was released
    EXPIRED = 2  #: the lease had lapsed (not renewed in time, or its session died)
    UNKNOWN = 0  #: no such lease, or already released


class RestoreOutcome(enum.IntEnum):
    """What :meth:`Backend.restore` did."""

    RESTORED = 1  #: the owner holds the token now (counted again, or it was still held)
    TAKEN = 0  #: the token holds or waits on the number for another owner: nothing was written
    ENDED = -1  #: the lease was ended for good (released, reset, released with its owner)


@dataclass(frozen=True, slots=True)
class AcquireResult:
    """:ivar outcome: see :class:`Outcome`
    :ivar retry_in: when not granted, seconds until the number's earliest lease expires by the
        backend's clock (a slot may free then without any release), or None if none is held;
        when unavailable, seconds until its cool-down ends (None: no end set)
    :ivar state: when unavailable, the number's state (``"disabled"``, ``"cooling"``, ...)
    :ivar reason: when unavailable, why (as given when the state was set)
    :ivar window: when rate limited, the full window (``retry_in`` then says when it admits a
        call again)
    :ivar for_callee: when rate limited, whether the full window is the callee's
    :ivar group: when a group refused (its cap, or when rate limited, its window), its name
    :ivar fenced: when queued or refused, whether the backend holds every new grant because it
        may have lost leases of calls still up (a Redis restart, failover or flush): its
        holders are counting them again, and ``retry_in`` says when grants resume
    """

    outcome: Outcome
    retry_in: float | None = None
    state: str | None = None
    reason: str | None = None
    window: Window | None = None
    for_callee: bool = False
    group: str | None = None
    fenced: bool = False


@dataclass(frozen=True, slots=True)
class PickResult:
    """:ivar outcome: GRANTED (on ``number``), REFUSED (no number tried could admit) or
        CONFLICT (the token holds a slot on ``number`` for another owner)
    :ivar number: the number granted (or in conflict)
    :ivar retry_in: when refused, seconds until the earliest of the tried numbers may admit,
        when known
    :ivar fenced: when refused, whether the backend holds every new grant because it may have
        lost its data (see :attr:`AcquireResult.fenced`): it may have lost the pool's numbers
    :ivar lapsed: when refused, whether every number of the pool lapsed (its paid period ended,
        by the caller's calendar): none was tried
    """

    outcome: Outcome
    number: str | None = None
    retry_in: float | None = None
    fenced: bool = False
    lapsed: bool = False
