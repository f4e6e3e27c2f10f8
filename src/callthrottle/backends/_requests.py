"""What a caller asks a backend for: one slot on a number (:class:`AcquireRequest`, also the
lease to count again), or one slot from a pool (:class:`PickRequest`).

A throttle builds a request once per call of :meth:`~callthrottle.Throttle.acquire` (or
``acquire_from``) and sends the same object with every ask of its wait: the backend reads it,
never keeps it. A request is a named tuple: immutable, and built on every acquire at a third of
the cost of a frozen dataclass (whose ``__init__`` sets each field through
``object.__setattr__``), so that the hot path pays nothing for it.
"""

from __future__ import annotations

from typing import NamedTuple

from .._pools import STICKY_TTL
from .._rates import NO_RATES, RatePlan

__all__ = ("AcquireRequest", "PickRequest")


class AcquireRequest(NamedTuple):
    """A slot asked for on one number (:meth:`Backend.acquire`), or a lease to count again
    (:meth:`Backend.restore`).

    :ivar number: the number (E.164)
    :ivar token: the lease's token: the call's ID, unique on the number
    :ivar owner: who holds the lease: the throttle's owner id, or with ``session`` the
        session's name
    :ivar limit: the caller's own cap: a runtime cap replaces it, and a lowered cap lowers it
        while it lasts, both judged when a slot frees (a waiter keeps ``limit``, not the cap in
        force when it queued)
    :ivar ttl: seconds the lease (or the place in line) lives unless renewed
    :ivar max_hold: seconds past which the lease is never extended (None: no bound); for a
        restore, what is left of it
    :ivar rates: the number's rate windows (windows set at run time replace its ``windows``; a
        warming number adds its warm-up's daily cap), its groups, and the call's callee and
        priority
    :ivar session: ``owner`` is a session's name and the lease a *session lease*: it lives
        while the session is alive (see :meth:`Backend.keepalive`) and never past its deadline,
        ``max_hold`` or :data:`SESSION_HOLD_MAX` from its grant; it is not renewed by
        :meth:`Backend.renew`
    :ivar policy: the version of the published policy that ``limit`` and ``rates`` come from
        (0: none is published): a backend refuses the request (:attr:`Outcome.STALE`) when a
        newer one is
    """

    number: str
    token: str
    owner: str
    limit: int
    ttl: float
    max_hold: float | None
    rates: RatePlan = NO_RATES
    session: bool = False
    policy: int = 0


class PickRequest(NamedTuple):
    """A slot asked for on any suitable number of a pool (:meth:`Backend.pick`).

    :ivar pool: the pool's name
    :ivar token: as :attr:`AcquireRequest.token`
    :ivar owner: as :attr:`AcquireRequest.owner`
    :ivar ttl: as :attr:`AcquireRequest.ttl` (a place in the pool's line lives as long)
    :ivar max_hold: as :attr:`AcquireRequest.max_hold`
    :ivar strategy: the order the pool's numbers are tried in (see
        :data:`callthrottle._pools.STRATEGIES`)
    :ivar tries: at most this many numbers are tried: the cost grows with it, not with the
        pool's size
    :ivar call: the per-call parts of the plan: callee, callee windows, priority, time zone
        offset (each number's own windows and groups are in its member spec)
    :ivar near: the callee's area and region (for the ``local`` strategy)
    :ivar sticky_ttl: how long a callee keeps its number (for the ``sticky`` strategy)
    :ivar session: as :attr:`AcquireRequest.session`
    :ivar policy: as :attr:`AcquireRequest.policy` (the pool's member specs were published with
        it)
    :ivar calendar: the caller's calendar now (seconds since the epoch; see
        ``Settings.calendar``): numbers whose paid period lapsed by then are passed over, and
        those inside their warning window come after their equals (0: no calendar, no number
        lapsed)
    """

    pool: str
    token: str
    owner: str
    ttl: float
    max_hold: float | None
    strategy: str
    tries: int
    call: RatePlan
    near: tuple[str, str] = ("", "")
    sticky_ttl: float = STICKY_TTL
    session: bool = False
    policy: int = 0
    calendar: float = 0.0
