"""Waiting in line for a slot: try once, wait (woken by the backend's word or at the earliest
expiry), give up a place; the shielded clean-up of a withdrawn request is written once here."""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING

import anyio

from ._errors import (
    AcquireTimeout,
    LeaseConflict,
    NumberUnavailable,
    PolicyMismatch,
    RateLimited,
    ThrottleError,
)
from ._events import Queued
from ._expiry import lapse_refusal, refusal_if_lapsed
from ._health import NumberState
from ._keeper import CLEANUP_TIMEOUT
from ._loop import OnLoop
from ._models import Lease
from ._numbers import normalize_number
from ._rates import NO_RATES
from ._validate import MAX_CAP, check_limit, check_priority, check_timeout, check_token
from .backends import AcquireRequest, AcquireResult, Outcome

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._expiry import ExpiryWatch
    from ._hooks import Hooks
    from ._keeper import Keeper, Key
    from ._loop import Signal
    from ._plans import Configured, Plans
    from ._settings import Settings
    from .backends import RuntimePolicy, SlotStore

__all__ = ("Line", "Waiter", "new_token", "no_newer_policy")

logger = logging.getLogger("callthrottle")

_RESTORE_GRACE = 1.0  # seconds new acquires may wait for lost leases to be counted again
_new_tuple = tuple.__new__
# The outcomes the hot path tests, found once (an enum member read from its class is slow).
_GRANTED, _STALE, _RATE_LIMITED, _GROUP_FULL, _CONFLICT, _UNAVAILABLE = (
    Outcome.GRANTED, Outcome.STALE, Outcome.RATE_LIMITED, Outcome.GROUP_FULL, Outcome.CONFLICT,
    Outcome.UNAVAILABLE,
)  # fmt: skip


def no_newer_policy(version: int) -> PolicyMismatch:
    """The backend refused a request as made with an older policy than its newest, and no
    newer one than ``version`` is published: the backend lost the policy it published (and
    processes raised the stamps since)."""
    return PolicyMismatch(
        "the backend refuses requests as made with an older carrier policy than the newest it "
        f"saw, but publishes none newer than version {version}: it lost the published policy "
        "(a restart without persistence?); publish it again (`callthrottle policy apply`)",
        version,
        "",
    )


class _Stale(Exception):
    """The backend refused a request as made with an older carrier policy than the newest
    published (nothing was written): it is made again with the newest."""


def new_token() -> str:
    return os.urandom(12).hex()


class Waiter:
    """One caller in line (or a pool's caller), woken by the backend's word."""

    __slots__ = ("event", "fenced", "granted", "group_refusal", "queued", "rate_refusal")

    def __init__(self) -> None:
        self.granted = False
        self.queued = False
        self.fenced = False  # last told that the backend's fence holds every grant
        self.event: Signal | None = None
        # The last rate window that refused it: (the window, when it admits again, local time).
        self.rate_refusal: tuple[str, float] | None = None
        self.group_refusal: str | None = None  # the group whose cap it last waited for

    def is_granted(self) -> bool:
        return self.granted

    def wake(self, granted: bool) -> None:
        self.granted = self.granted or granted
        if self.event is not None:
            self.event.set()


def _window_name(result: AcquireResult, request: AcquireRequest) -> str:
    if result.for_callee:
        return f"{result.window} for callee {request.rates.callee}"
    if result.group is not None:
        return f"{result.window} of {result.group}"
    return str(result.window)


def _raise_if_refused_for_good(number: str, token: str, result: AcquireResult) -> None:
    if result.outcome is _CONFLICT:
        raise LeaseConflict(number, token, "already holds or waits for a slot of another owner")
    if result.outcome is _UNAVAILABLE:
        raise NumberUnavailable(
            number, result.state or "unavailable", result.reason, result.retry_in
        )


class Line(OnLoop):
    """This throttle's callers waiting for a slot: ``waiting`` maps (number, token), or
    (``pool:name``, token) for a pool's caller, to each :class:`Waiter`.

    :meth:`acquire` is the whole of :meth:`Throttle.acquire` on the backend (the facade only
    adds events and the degraded fallback); a granted lease is handed to the keeper.
    """

    __slots__ = (
        "_backend",
        "_check_open",
        "_drained",
        "_expiry",
        "_fence_noted",
        "_held",
        "_hooks",
        "_keeper",
        "_known",
        "_lease_ttl",
        "_max_hold",
        "_owner_id",
        "_plans",
        "_refresh",
        "_region",
        "_runtime",
        "_session",
        "waiting",
    )

    def __init__(
        self,
        backend: SlotStore,
        settings: Settings,
        plans: Plans,
        hooks: Hooks,
        keeper: Keeper,
        check_open: Callable[[], None],
        refresh: Callable[[], Awaitable[None]],
        expiry: ExpiryWatch,
        runtime: Callable[[str], Awaitable[RuntimePolicy]],
    ) -> None:
        super().__init__()
        self._backend = backend
        self._expiry = expiry
        self._runtime = runtime  # a number's run-time policy (the backend's get_policy)
        self._refresh = refresh  # take the newest published policy (PolicySource.refresh)
        # The settings the hot path reads, copied (they never change).
        self._owner_id = settings.owner_id
        self._lease_ttl = settings.lease_ttl
        self._max_hold = settings.max_hold
        self._session = settings.session is not None  # the leases are the session's
        self._region = settings.region
        self._plans = plans
        self._known = plans.known  # the plan book's cache, read first
        self._hooks = hooks
        self._keeper = keeper
        self._held = keeper.held  # read only: a token holding a slot may not queue again
        self._check_open = check_open
        self.waiting: dict[Key, Waiter] = {}
        self._drained: anyio.Event | None = None  # set once the line is empty, at close
        self._fence_noted = -math.inf  # when a fence was last logged (note_fence)

    # -- the line as others see it ----------------------------------------------------------

    async def refresh_policy(self) -> None:
        """Take the newest published carrier policy (a request was refused as stale)."""
        await self._refresh()

    def queued(self) -> list[Key]:
        """The places in line the backend keeps (renewed with the leases)."""
        return [key for key, waiter in self.waiting.items() if waiter.queued]

    def wake(self, key: Key, granted: bool) -> None:
        """The backend's word for one waiter: granted, or ask again."""
        waiter = self.waiting.get(key)
        if waiter is not None:
            waiter.wake(granted)

    def wake_all(self) -> None:
        """Events may have been missed: every waiter asks again."""
        for each in self.waiting.values():
            each.wake(granted=False)

    def join(self, key: Key) -> Waiter:
        waiter = self.waiting[key] = Waiter()
        return waiter

    def forget(self, key: Key) -> None:
        del self.waiting[key]
        if self._drained is not None and not self.waiting:
            self._drained.set()

    async def stop(self) -> None:
        """At close: wake every waiter (it finds the throttle closed) and let it withdraw."""
        if self._alarms is not None:
            self._alarms.clear()
        if not self.waiting:
            return
        self._drained = anyio.Event()
        self.wake_all()
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
            await self._drained.wait()
        self._drained = None

    # -- acquiring --------------------------------------------------------------------------
    async def acquire(
        self,
        number: str,
        token: str | None,
        timeout: float | None,
        limit: int | None,
        callee: str | None,
        priority: int,
    ) -> Lease:
        """See :meth:`Throttle.acquire`: wait in line, give the place up if it fails."""
        number = normalize_number(number, self._region)
        token = new_token() if token is None else check_token(token)
        wait = check_timeout(timeout)
        configured = self._known.get(number)
        if configured is None:
            configured = self._plans.configured(number)
        if limit is None:
            cap = configured[0]
        elif limit.__class__ is int and 0 < limit <= MAX_CAP:
            cap = limit  # (as check_limit decides it)
        else:
            cap = check_limit(limit)
        callee_e164 = None if callee is None else normalize_number(callee, self._region, "callee")
        if priority != 0 or priority.__class__ is not int:
            priority = check_priority(priority)
        self._check_open()
        key = (number, token)
        if key in self._held or key in self.waiting:
            raise LeaseConflict(number, token, "already holds or waits for a slot of this throttle")
        if configured[2] is not None:  # its paid period is tracked
            paid = await self._paid_for(number, configured)
            if paid is not configured:  # the policy renewed it: decided with that one
                configured = paid
                cap = configured[0] if limit is None else cap
        rates = configured[1]
        if priority or callee_e164 is not None or rates is not NO_RATES:
            rates = self._plans.for_call(rates, callee_e164, priority)
        if self._keeper.restoring is not None and wait != 0:
            wait = await self._let_restore(wait)
        # One request for every ask of this call (the backend reads it, never keeps it), built
        # as AcquireRequest(...) would, without the Python-level __new__ of a named tuple.
        request: AcquireRequest = _new_tuple(
            AcquireRequest,
            (number, token, self._owner_id, cap, self._lease_ttl, self._max_hold, rates,
             self._session, self._plans.stamp),
        )  # fmt: skip
        waiter = self.waiting[key] = Waiter()
        try:
            deadline = None if not wait else self._now() + wait
            while True:
                try:
                    if wait == 0:
                        result = await self._backend.acquire(request, enqueue=False)
                        granted = result.outcome is _GRANTED or self._refused_once(request, result)
                    elif deadline is None:  # no deadline: no cancel scope needed
                        granted = await self._wait_in_line(request, waiter)
                    else:
                        granted = False
                        with self._cancel_scope(deadline=deadline):
                            granted = await self._wait_in_line(request, waiter)
                        if not granted:
                            await self.abandon(number, token)
                    break
                except _Stale:
                    request = await self._replanned(request, limit, callee_e164, priority)
        except (LeaseConflict, NumberUnavailable, RateLimited) as exc:
            if isinstance(exc, NumberUnavailable) and waiter.queued:
                await self.abandon(number, token)
            self.forget(key)  # nothing else was written
            raise
        except BaseException:
            await self.abandon(number, token)
            self.forget(key)
            raise
        del self.waiting[key]  # self.forget(key), inlined: the hot path
        if self._drained is not None and not self.waiting:
            self._drained.set()
        if not granted:
            if waiter.rate_refusal is not None:
                window, admits_at = waiter.rate_refusal
                retry_after = max(admits_at - self._now(), 0.0)
                raise RateLimited(number, wait, window, retry_after)
            refused_by = "fence" if waiter.fenced else waiter.group_refusal or "cap"
            raise AcquireTimeout(number, wait, refused_by)
        if wait != 0 and (self._known.get(number) or self._plans.configured(number))[2] is not None:
            # The number's paid period is tracked: it may have lapsed while the caller waited.
            await self._lapsed_while_waiting(number, token)
        lease = Lease(number, token, self._owner_id)
        self._keeper.take(key, lease)
        return lease

    async def _paid_for(self, number: str, configured: Configured) -> Configured:
        """The number's plans, if the calendar says its paid period has not lapsed; once it
        has, those of a policy published since that renewed it (so a renewal admits calls at
        once, in every process: one read of the published policy per refused call).

        :raises NumberUnavailable: the period lapsed and no renewal is published
        """
        term = configured[2]
        assert term is not None
        if self._expiry.has_lapsed(term):
            await self._refresh()
            configured = self._plans.configured(number)
            term = configured[2]
        # Warned (once a day) of the period in force: a renewal's, not the one it replaced.
        state = None if term is None else self._expiry.lapsed(number, term)
        if term is None or state is None:
            return configured
        # Inside the grace period, an operator may have released it already (one more read).
        runtime = await self._runtime(number) if state is NumberState.EXPIRED else None
        raise lapse_refusal(number, term, state, runtime)

    async def _lapsed_while_waiting(self, number: str, token: str) -> None:
        """A caller granted a slot after its number lapsed (it waited across the lapse, or a
        policy published while it waited gave the number a period that lapsed since) gives
        the slot back at once, as a caller that gave up waiting does, and is refused as a
        caller arriving then would be."""
        term = (self._known.get(number) or self._plans.configured(number))[2]
        if term is None:  # not tracked: the calendar is not read
            return
        refused = refusal_if_lapsed(number, term, self._expiry.calendar())
        if refused is not None:
            await self.abandon(number, token)
            raise refused

    async def _replanned(
        self,
        request: AcquireRequest,
        limit: int | None,
        callee: str | None,
        priority: int,
    ) -> AcquireRequest:
        """The request made again with the policy now published (the backend refused it as
        made with an older one: nothing was written). As many times as policies are published
        while the call waits; but a refusal with no newer policy to take is an error."""
        await self._refresh()
        if self._plans.stamp <= request.policy:
            raise no_newer_policy(self._plans.version)
        number = request.number
        configured = self._plans.configured(number)
        term = configured[2]
        state = None if term is None else self._expiry.lapsed(number, term)
        if term is not None and state is not None:  # the newer policy ended its paid period
            raise lapse_refusal(number, term, state)
        rates = configured[1]
        if priority or callee is not None or rates is not NO_RATES:
            rates = self._plans.for_call(rates, callee, priority)
        cap = configured[0] if limit is None else request.limit
        return request._replace(limit=cap, rates=rates, policy=self._plans.stamp)

    async def _let_restore(self, wait: float | None) -> float | None:
        """Wait (within the caller's ``wait``, at most ``_RESTORE_GRACE`` seconds) while this
        throttle counts again the leases a replaced backend connection may have lost, so its
        own new calls do not take their slots first; return what is left of ``wait``."""
        restoring = self._keeper.restoring
        assert restoring is not None
        started = self._now()
        bound = _RESTORE_GRACE if wait is None else min(wait, _RESTORE_GRACE)
        with anyio.move_on_after(bound):
            await restoring.wait()
        return None if wait is None else max(wait - (self._now() - started), 0.0)

    def _refused_once(self, request: AcquireRequest, result: AcquireResult) -> bool:
        """The answer to a single try (``timeout=0``) that was not granted: False (no slot), or
        the refusal raised."""
        outcome = result.outcome
        if outcome is _STALE:
            raise _Stale
        number, token = request.number, request.token
        if result.fenced:
            self.note_fence(result)
            refused = AcquireTimeout(number, 0, "fence")
            refused.retry_after = result.retry_in
            raise refused
        _raise_if_refused_for_good(number, token, result)
        if outcome is _RATE_LIMITED:
            window = _window_name(result, request)
            raise RateLimited(number, 0, window, result.retry_in or 0.0)
        if outcome is _GROUP_FULL:
            raise AcquireTimeout(number, 0, result.group or "group")
        return False

    async def _wait_in_line(self, request: AcquireRequest, waiter: Waiter) -> bool:
        while True:
            # Armed before asking: a word that arrives while the ask is on its way back (the
            # reply, decided earlier, still says "queued") wakes the sleep below at once.
            waiter.event = event = self._new_signal()
            result = await self._backend.acquire(request, enqueue=True)
            self._check_open()  # closed meanwhile: give up (the caller withdraws the request)
            outcome = result.outcome
            if outcome is _GRANTED:
                return True
            if outcome is _STALE:
                raise _Stale
            _raise_if_refused_for_good(request.number, request.token, result)
            waiter.fenced = result.fenced
            if outcome is _RATE_LIMITED:
                # Out of the line (nothing counted): ask again when the window has room.
                waiter.queued = False
                delay = result.retry_in or 0.0
                waiter.rate_refusal = (_window_name(result, request), self._now() + delay)
            elif outcome is _GROUP_FULL:
                # Registered as a waiter of the group (not in the number's line): woken when a
                # slot of the group frees, or at its earliest lease expiry; asking again keeps
                # the registration alive.
                waiter.queued = False
                waiter.rate_refusal = None
                waiter.group_refusal = result.group
                retry_in = self._lease_ttl / 2 if result.retry_in is None else result.retry_in
                delay = min(retry_in + 0.001, self._lease_ttl / 2)
            else:
                if result.fenced:
                    self.note_fence(result)
                if not waiter.queued and self._hooks.installed:
                    self._hooks.emit(Queued(request.number, request.token))
                waiter.queued = True
                waiter.rate_refusal = None
                if waiter.is_granted():
                    return True
                # Sleep until notified, or until the earliest lease could expire (a crashed
                # holder's slot frees without any release); then ask again, which also settles
                # expiries.
                delay = math.inf if result.retry_in is None else result.retry_in + 0.001
            if delay == math.inf:
                await event.wait()
            elif self._alarms is not None:  # on asyncio: a timed wake, cheaper than a scope
                self._alarms.at(self._now() + delay, event)
                await event.wait()
            else:
                with self._cancel_scope(deadline=self._now() + delay):
                    await event.wait()
            # Woken at close (or granted as it began): give up, and withdraw the request (a
            # slot granted meanwhile with it), rather than take a lease nobody would renew.
            self._check_open()
            if waiter.is_granted():
                return True

    def note_fence(self, result: AcquireResult) -> None:
        """Say once per fence (at most once a lease TTL) why new calls wait."""
        now = self._now()
        if now - self._fence_noted < self._lease_ttl:
            return
        self._fence_noted = now
        logger.warning(
            "the backend admits no new call for %.1f s: it may have lost the calls in progress "
            "(a Redis restart, failover or flush), and waits until their holders have counted "
            "them again",
            result.retry_in or 0.0,
            extra={"owner": self._owner_id},
        )

    async def abandon(self, number: str, token: str) -> None:
        """Leave the line and give back any slot granted meanwhile; never raises."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT) as scope:
            try:
                await self._backend.abandon(number, token, self._owner_id)
            except ThrottleError as exc:
                logger.warning(
                    "could not withdraw request %s on %s (%s); it lapses within %s s",
                    token,
                    number,
                    exc,
                    self._lease_ttl,
                    extra={"number": number, "token": token, "owner": self._owner_id},
                )
        if scope.cancelled_caught:
            logger.warning(
                "withdrawing request %s on %s timed out; it lapses within %s s",
                token,
                number,
                self._lease_ttl,
                extra={"number": number, "token": token, "owner": self._owner_id},
            )
