"""Taking a slot from a pool of numbers: a pick on the pool, then its fallbacks, then waiting
on the pool's line (the throttle's line, keyed ``pool:name``) until a number frees up."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from ._errors import LeaseConflict, PoolExhausted, ThrottleError
from ._events import Cancelled, Queued, refusal
from ._keeper import CLEANUP_TIMEOUT
from ._line import new_token, no_newer_policy
from ._loop import OnLoop
from ._models import Lease
from ._numbers import locality, normalize_number
from ._pools import check_strategy
from ._settings import listed
from ._validate import check_pool, check_priority, check_timeout, check_token
from .backends import Outcome, PickRequest, PickResult

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._expiry import ExpiryWatch
    from ._hooks import Hooks
    from ._keeper import Keeper
    from ._line import Line
    from ._plans import Plans
    from ._rates import RatePlan
    from ._settings import Settings
    from .backends import PoolStore

__all__ = ("Pools",)

logger = logging.getLogger("callthrottle")

_PICK_TRIES = 16  # numbers a pick looks at, at most: its cost does not grow with the pool
_POOL_POLL = 0.25  # a caller waiting on a pool looks again at least this often (seconds)


class Pools(OnLoop):
    """What :class:`~callthrottle.Throttle`'s pool methods do (their docstrings are there)."""

    __slots__ = (
        "_backend",
        "_calendar",
        "_check_open",
        "_expiry",
        "_hooks",
        "_keeper",
        "_lease_ttl",
        "_line",
        "_max_hold",
        "_owner_id",
        "_plans",
        "_region",
        "_seen",
        "_session",
    )

    def __init__(
        self,
        backend: PoolStore,
        settings: Settings,
        plans: Plans,
        hooks: Hooks,
        line: Line,
        keeper: Keeper,
        check_open: Callable[[], None],
        expiry: ExpiryWatch,
    ) -> None:
        super().__init__()
        self._backend = backend
        self._expiry = expiry  # warnings of a number picked that lapses soon
        # Pools made at run time that this throttle found with numbers: known from then on,
        # so a refused pick of theirs costs no second round trip.
        self._seen: set[str] = set()
        self._owner_id = settings.owner_id
        self._lease_ttl = settings.lease_ttl
        self._max_hold = settings.max_hold
        self._session = settings.session is not None  # the leases are the session's
        self._region = settings.region
        self._calendar = settings.calendar  # which day it is: lapsed numbers are passed over
        self._plans = plans
        self._hooks = hooks
        self._line = line
        self._keeper = keeper
        self._check_open = check_open

    async def publish(self) -> None:
        """At open: publish the configured pools' numbers."""
        for name, numbers in self._plans.configured_pools():
            await self._update(name, numbers, ())

    async def add(self, pool: str, numbers: Iterable[str]) -> int:
        pool = check_pool(pool)
        checked = [normalize_number(n, self._region) for n in listed("numbers", numbers)]
        self._check_open()
        return await self._update(pool, checked, ())

    async def remove(self, pool: str, numbers: Iterable[str]) -> int:
        pool = check_pool(pool)
        checked = [normalize_number(n, self._region) for n in listed("numbers", numbers)]
        self._check_open()
        return await self._update(pool, (), checked)

    async def _update(self, pool: str, add: Iterable[str], remove: Iterable[str]) -> int:
        """Add numbers to the pool, with what the policy in force says of each (their caps,
        windows, groups), and take others out. Refused (nothing written) when made with an
        older policy than the newest published: made again with the newest."""
        add, remove = list(add), list(remove)
        while True:
            stamp = self._plans.stamp
            specs = self._plans.specs(add)
            count = await self._backend.pool_update(pool, specs, remove, stamp)
            if count >= 0:
                return count
            await self._line.refresh_policy()
            if self._plans.stamp <= stamp:
                raise no_newer_policy(self._plans.version)

    async def members(self, pool: str) -> list[str]:
        pool = check_pool(pool)
        self._check_open()
        return await self._backend.pool_members(pool)

    async def acquire_from(
        self,
        pool: str,
        token: str | None,
        timeout: float | None,
        callee: str | None,
        priority: int,
        strategy: str | None,
    ) -> Lease:
        """See :meth:`Throttle.acquire_from`."""
        pool = check_pool(pool)
        token = new_token() if token is None else check_token(token)
        wait = check_timeout(timeout)
        callee_e164 = None if callee is None else normalize_number(callee, self._region, "callee")
        priority = check_priority(priority)
        chosen = None if strategy is None else check_strategy(strategy)
        self._check_open()
        chain = self._plans.pool_chain(pool)
        # Else asked once, when a pick is refused (and remembered once it has numbers).
        known = pool in self._seen or self._plans.is_configured_pool(pool)
        call = self._plans.for_pick(callee_e164, priority)
        near = ("", "") if callee_e164 is None else locality(callee_e164)
        started = self._now()
        deadline = None if wait is None else started + wait
        key = (f"pool:{pool}", token)
        if key in self._line.waiting:
            raise LeaseConflict(pool, token, "already waits for a slot of this pool")
        # One request per pool of the chain, for every pick of this call.
        requests = [self._request(name, token, chosen, call, near) for name in chain]
        waiter = self._line.join(key)
        in_line = False
        try:
            while True:
                earliest: float | None = None
                lapsed = True  # every number of every pool of the chain lapsed (so far)
                # Armed before picking: a nudge that comes while a pick is on its way back
                # wakes the wait below at once.
                waiter.event = event = self._new_event()
                calendar = self._calendar()  # each pass: a number may lapse while one waits
                for index, request in enumerate(requests):
                    if request.policy != self._plans.stamp:  # a newer policy came
                        requests[index] = request = self._replanned(request)
                    if request.calendar != calendar:
                        requests[index] = request = request._replace(calendar=calendar)
                    name = request.pool
                    # Only the pool asked for keeps a line; its fallbacks are tried in passing.
                    queue = wait != 0 and index == 0
                    picked = await self._pick(request, queue)
                    if isinstance(picked, Lease):
                        in_line = in_line and index != 0  # a slot of the pool took it out
                        if self._hooks.installed:
                            self._hooks.admitted(picked, self._now() - started)
                        return picked
                    # Noted before anything else is awaited: a caller cancelled (or failed)
                    # from here on leaves the line below, else its place would keep every
                    # other caller of the pool waiting until it lapses.
                    queued_now = queue and not in_line
                    in_line = in_line or queue
                    if not known:  # made at run time, or a typo: a pool without numbers is none
                        known = bool(await self._backend.pool_members(pool))
                        if not known:
                            raise self._plans.unknown_pool(pool)
                        self._seen.add(pool)
                    if queued_now and self._hooks.installed:
                        self._hooks.emit(Queued(f"pool:{name}", token))
                    self._check_open()  # closed meanwhile: give up (leaving the line below)
                    lapsed = lapsed and picked.lapsed
                    retry = picked.retry_in
                    if retry is not None and (earliest is None or retry < earliest):
                        earliest = retry
                now = self._now()
                if wait == 0 or (deadline is not None and now >= deadline):
                    exhausted = PoolExhausted(pool, wait, tuple(chain), earliest, lapsed=lapsed)
                    if self._hooks.installed:
                        self._hooks.emit(refusal(key[0], exhausted, now - started))
                    raise exhausted
                # Woken (first in line) when a lease picked from the pool is released or the
                # line moves, in any process; looks again at the earliest expiry reported, and
                # every _POOL_POLL seconds anyway (leases given back otherwise, or expired).
                delay = _POOL_POLL if earliest is None else min(earliest + 0.001, _POOL_POLL)
                if deadline is not None:
                    delay = min(delay, deadline - now)
                with self._cancel_scope(deadline=now + delay):
                    await event.wait()
                self._check_open()  # woken at close: give up, as a number's waiter does
        except anyio.get_cancelled_exc_class():
            if self._hooks.installed:
                self._hooks.emit(Cancelled(key[0], self._now() - started))
            raise
        finally:
            try:
                if in_line:
                    await self._leave(pool, token)
            finally:
                # Once out of the pool's line: closing waits for every waiter to be gone
                # before it gives the slots back and closes the backend.
                self._line.forget(key)

    def _request(
        self,
        pool: str,
        token: str,
        strategy: str | None,
        call: RatePlan,
        near: tuple[str, str],
    ) -> PickRequest:
        """The pick on ``pool``: in the strategy asked for, else the pool's own."""
        settings = self._plans.pool(pool)
        return PickRequest(
            pool, token, self._owner_id, self._lease_ttl, self._max_hold,
            strategy or settings.strategy, _PICK_TRIES, call, near, settings.sticky_ttl,
            self._session, self._plans.stamp,
        )  # fmt: skip

    def _replanned(self, request: PickRequest) -> PickRequest:
        """The pick made again with the policy the plans now hold."""
        call = self._plans.for_pick(request.call.callee, request.call.priority)
        return request._replace(call=call, policy=self._plans.stamp)

    async def _pick(self, request: PickRequest, queue: bool) -> Lease | PickResult:
        """One pick on one pool: the lease, else the refusal (its earliest retry, if known)."""
        pool, token = request.pool, request.token
        while True:
            with self._cancel_scope(shield=True):  # a slot granted meanwhile must not be lost
                result = await self._backend.pick(request, wait=queue)
            if result.outcome is not Outcome.STALE:
                break
            # Made with an older carrier policy than the newest published: nothing was
            # written; made again with the newest.
            await self._line.refresh_policy()
            if self._plans.stamp <= request.policy:
                raise no_newer_policy(self._plans.version)
            request = self._replanned(request)
        if result.outcome is Outcome.CONFLICT:
            raise LeaseConflict(
                result.number or "", token, "already holds a slot (on a number of the pool)"
            )
        if result.outcome is not Outcome.GRANTED or result.number is None:
            if result.fenced:  # the server may have lost the pool's numbers with its data
                await self._publish_lost_pool(pool)
            return result
        lease = Lease(result.number, token, self._owner_id)
        lease.pool = pool
        self._keeper.take((result.number, token), lease)
        term = (self._plans.known.get(lease.number) or self._plans.configured(lease.number))[2]
        if term is not None:  # inside its warning window: told once a day, as an acquire does
            self._expiry.lapsed(lease.number, term)
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
            self._check_open()  # closed as the slot came: no lease is taken once closing
        except BaseException:
            # Cancelled or closed as the slot came: give it back (also when closed).
            await self._keeper.release(lease, closing=True)
            raise
        return lease

    async def _leave(self, pool: str, token: str) -> None:
        """Leave the line of ``pool``; never raises."""
        with self._cancel_scope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
            try:
                await self._backend.pool_leave(pool, token, self._owner_id)
            except ThrottleError as exc:
                logger.warning(
                    "could not leave the line of pool %s (%s); it lapses within %s s",
                    pool,
                    exc,
                    self._lease_ttl,
                    extra={"pool": pool, "token": token, "owner": self._owner_id},
                )

    async def _publish_lost_pool(self, pool: str) -> None:
        """Publish again ``pool``'s configured numbers if the backend has none of them, once it
        said it may have lost its data (a Redis restart, failover or flush: a pick refused by
        the fence). (A pool emptied on purpose just before such a loss is filled again from
        the configuration.)"""
        numbers = self._plans.pool_numbers(pool)
        if not numbers or await self._backend.pool_members(pool):
            return
        await self._update(pool, numbers, ())
        logger.warning(
            "pool %s had no number left on the backend (it lost its data?): its configured "
            "numbers were published again",
            pool,
            extra={"owner": self._owner_id},
        )
