"""The Throttle: policy on top of a backend's atomic primitives."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio.lowlevel import current_token

from ._errors import (
    AcquireTimeout,
    BackendUnavailable,
    InvalidArgument,
    LeaseConflict,
    NumberUnavailable,
    PoolExhausted,
    RateLimited,
    ThrottleError,
)
from ._events import (
    Admitted,
    Cancelled,
    Event,
    LeaseLost,
    Queued,
    Released,
    Restored,
    refusal,
)
from ._hooks import Hooks
from ._models import Holder, Lease, ReleaseOutcome, Usage, WindowUsage
from ._numbers import locality, normalize_number
from ._operator import Operator
from ._plans import Plans
from ._pools import check_strategy
from ._rates import NO_RATES, RatePlan
from ._settings import Settings, check_session_options, listed, load_config
from ._url import backend_from_url
from ._validate import (
    check_limit,
    check_pool,
    check_priority,
    check_timeout,
    check_token,
)
from .backends import (
    AcquireResult,
    Backend,
    MemoryBackend,
    Outcome,
    ReleaseState,
    RenewState,
    RestoreOutcome,
)
from .backends._base import RESTORE_WITHIN

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
    from types import TracebackType

    from anyio.abc import TaskGroup

    from ._config import Config
    from ._health import NumberState, NumberStatus, Reaction

    #: A hook: called with each event, in the throttle's task; what it returns is ignored.
    Hook = Callable[[Event], object]

__all__ = ("Throttle",)

logger = logging.getLogger("callthrottle")

#: ``blocking.py`` reads a configuration with it.
_load_config = load_config

#: How long cleanup (giving back a slot, releasing at close) may take before it is left to
#: lease expiry.
_CLEANUP_TIMEOUT = 5.0


def _new_token() -> str:
    return os.urandom(12).hex()


_PICK_TRIES = 16  # numbers a pick looks at, at most: its cost does not grow with the pool
_POOL_POLL = 0.25  # a caller waiting on a pool looks again at least this often (seconds)
_RESTORE_GRACE = 1.0  # seconds new acquires may wait for lost leases to be counted again
_OUTCOMES: dict[int, ReleaseOutcome] = {
    ReleaseState.RELEASED: ReleaseOutcome.RELEASED,
    ReleaseState.EXPIRED: ReleaseOutcome.EXPIRED,
}


def _window_name(result: AcquireResult, request: _Request) -> str:
    if result.for_callee:
        return f"{result.window} for callee {request.rates.callee}"
    if result.group is not None:
        return f"{result.window} of {result.group}"
    return str(result.window)


def _raise_if_refused_for_good(number: str, token: str, result: AcquireResult) -> None:
    if result.outcome is Outcome.CONFLICT:
        raise LeaseConflict(number, token, "already holds or waits for a slot of another owner")
    if result.outcome is Outcome.UNAVAILABLE:
        raise NumberUnavailable(
            number, result.state or "unavailable", result.reason, result.retry_in
        )


class _Request:
    __slots__ = ("limit", "number", "rates", "token")

    def __init__(self, number: str, token: str, limit: int, rates: RatePlan) -> None:
        self.number = number
        self.token = token
        self.limit = limit
        self.rates = rates


@dataclass(slots=True)
class _Held:
    lease: Lease
    renewed_at: float  # local monotonic time just before the last successful acquire/renew
    final: bool  # the backend will not extend the lease again: max_hold ends it
    since: float  # local monotonic time just before it was taken


class _Waiter:
    __slots__ = ("event", "fenced", "granted", "group_refusal", "queued", "rate_refusal")

    def __init__(self) -> None:
        self.granted = False
        self.queued = False
        self.fenced = False  # last told that the backend's fence holds every grant
        self.event: anyio.Event | None = None
        # The last rate window that refused it: (the window, when it admits again, local time).
        self.rate_refusal: tuple[str, float] | None = None
        self.group_refusal: str | None = None  # the group whose cap it last waited for

    def is_granted(self) -> bool:
        return self.granted

    def wake(self, granted: bool) -> None:
        self.granted = self.granted or granted
        if self.event is not None:
            self.event.set()


class Throttle:
    """Caps concurrent outbound calls per caller-ID number, across processes and hosts.

    Ask for a slot before placing a call, hold it for the call's life, give it back when the call
    ends::

        async with Throttle.from_url("redis://localhost:6379/0") as throttle:
            async with throttle.slot("+8657188880001", timeout=5.0) as lease:
                ...  # place and hold the call

    Every slot is a *lease*: it expires ``lease_ttl`` seconds after it was taken or last renewed,
    by the backend's clock. The throttle renews all the leases it took in one batched heartbeat
    every ``lease_ttl / 3`` seconds until they are released (from any process), so a long call
    keeps its slot and a crashed process gives its slots back within ``lease_ttl``.

    Callers that find a number full wait in one first-come-first-served line shared by every
    process, and are woken by notification when a slot frees up.

    The throttle must be entered (``async with``) before use; leaving it gives back the leases
    it still holds (not a session's: see ``session``).

    **Sessions.** A process that cannot renew its leases (a call server's script that holds
    the interpreter between calls, a webhook or AGI script that exits once it placed the call)
    takes them in a named *session* instead: a session lease lives while its session is kept
    alive, by one call per session whatever the number of leases (the heartbeat of any open
    throttle of the session with ``keepalive=True``, or :meth:`keepalive` from a host timer),
    from any process. Once nobody keeps the session alive, every lease of it lapses within
    ``lease_ttl`` of the last keep-alive or acquire in the session, and no session lease lives
    longer than ``max_hold`` (a day when None), kept alive or not.

    :param backend: where slot state lives (see :meth:`from_url`)
    :param default_limit: the cap of a number when :meth:`acquire` is given no ``limit``
    :param lease_ttl: seconds a lease lives without renewal; a crashed holder's slot is free
        again at most this long after the crash
    :param max_hold: if set, no lease lives longer than this many seconds, renewed or not: a
        release lost by a buggy hang-up handler cannot hold a slot forever
    :param owner_id: identifies this throttle's leases (for :meth:`release_owner`); defaults to
        ``host:pid:random``
    :param renew_interval: seconds between heartbeats; defaults to ``lease_ttl / 3``
    :param feedback: reactions to carrier answers for :meth:`report`, by code; they replace the
        defaults (:data:`~callthrottle.DEFAULT_FEEDBACK`) code by code
    :param config: carrier profiles and per-number settings (see :class:`Config`): a
        ``Config``, a dict of the same shape, or the path of a TOML file
    :param default_region: region for numbers written without ``+country`` (e.g. ``"CN"``):
        every number is normalised to E.164, so ``057188880001`` and ``+8657188880001`` are
        one number
    :param close_backend: close the backend when the throttle closes (``from_url`` sets it)
    :param degraded_share: what to do when the backend cannot be reached: None (the default)
        raises :class:`BackendUnavailable`; a fraction in (0, 1] degrades instead, logged
        loudly: while the backend is unreachable, each number admits this share of its cap
        (at least 1) from an in-process backend, counting this process's calls only (size the
        share so that every process's share adds up to the cap). Degraded leases say so
        (``lease.degraded``) and are given back in-process.
    :param restore_leases: when the backend lost leases this throttle holds (a Redis restart
        without persistence, a failover to a replica that lacked them), count them again at
        the next heartbeat, even past the cap, so that new calls wait until the numbers really
        have room (the default); False reports them lost instead
    :param hooks: callables to tell what happens (see :meth:`add_hook`)
    :param session: the name of a session (e.g. ``"kamailio@sbc-1"``; the same rules as an
        ``owner_id``): every lease this throttle takes belongs to it, and the throttle's
        ``owner_id`` is the session's name (a different ``owner_id`` is refused). Throttles of
        any process opened with the same session speak for the same leases: a release from any
        of them is the owner's own, and closing one leaves the session's leases held.
    :param keepalive: with a session, whether this throttle's heartbeat keeps the session alive
        while the throttle is open (the default); False leaves that to something else (a timer
        calling :meth:`keepalive`, or another process). Only with a session.
    """

    __slots__ = (
        "_backend",
        "_cancel_scope",
        "_close_backend",
        "_config",
        "_default_limit",
        "_degraded",
        "_degraded_share",
        "_degraded_since",
        "_drained",
        "_feedback",
        "_fence_noted",
        "_final",
        "_held",
        "_hooks",
        "_keepalive",
        "_lease_ttl",
        "_max_hold",
        "_new_event",
        "_now",
        "_operator",
        "_owner_id",
        "_plans",
        "_region",
        "_renew_interval",
        "_renew_soon",
        "_restore_leases",
        "_restoring",
        "_resynced_at",
        "_session",
        "_session_kw",
        "_settings",
        "_stack",
        "_task_group",
        "_waiting",
    )

    def __init__(
        self,
        backend: Backend,
        *,
        default_limit: int = 20,
        lease_ttl: float = 30.0,
        max_hold: float | None = None,
        owner_id: str | None = None,
        renew_interval: float | None = None,
        default_region: str | None = None,
        feedback: Mapping[str | int, Reaction] | None = None,
        config: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        close_backend: bool = False,
        degraded_share: float | None = None,
        restore_leases: bool = True,
        hooks: Iterable[Hook] = (),
        session: str | None = None,
        keepalive: bool = True,
    ) -> None:
        self._settings = settings = Settings(
            default_limit=default_limit,
            lease_ttl=lease_ttl,
            max_hold=max_hold,
            owner_id=owner_id,
            renew_interval=renew_interval,
            default_region=default_region,
            feedback=feedback,
            config=config,
            degraded_share=degraded_share,
            restore_leases=restore_leases,
            session=session,
            keepalive=keepalive,
        )
        self._session, self._keepalive = settings.session, settings.keepalive
        self._session_kw = settings.session_kw
        self._fence_noted = -math.inf  # when a fence was last logged (_note_fence)
        self._config = settings.config
        self._default_limit = settings.default_limit
        self._region = settings.region
        self._lease_ttl = settings.lease_ttl
        self._max_hold = settings.max_hold
        self._owner_id = settings.owner_id
        self._renew_interval = settings.renew_interval
        self._degraded_share = settings.degraded_share
        self._restore_leases = settings.restore_leases
        self._hooks = Hooks(self._owner_id)
        for hook in listed("hooks", hooks, "a list (or other collection) of callables"):
            self.add_hook(cast("Hook", hook))
        self._degraded: Throttle | None = None
        self._degraded_since: float | None = None
        if self._degraded_share is not None:
            self._degraded = Throttle(
                MemoryBackend(),
                default_limit=self._default_limit,
                lease_ttl=self._lease_ttl,
                max_hold=self._max_hold,
                owner_id=f"{self._owner_id}:degraded",
                config=self._config,
                default_region=self._region,
                hooks=[self._lost_while_degraded],
            )
        self._backend = backend
        backend.use_layout(self._config)
        self._close_backend = close_backend
        self._held: dict[tuple[str, str], _Held] = {}
        self._waiting: dict[tuple[str, str], _Waiter] = {}
        self._resynced_at = -math.inf  # when the backend's connection was last replaced
        self._renew_soon: anyio.Event | None = None  # set: the heartbeat renews at once
        self._restoring: anyio.Event | None = None  # set once lost leases are counted again
        self._stack: AsyncExitStack | None = None
        self._task_group: TaskGroup | None = None
        self._drained: anyio.Event | None = None
        self._final = settings.final
        self._plans = Plans(self._config, self._default_limit)
        self._operator = Operator(
            backend, settings, self._plans, self._hooks, self._check_open, self._forget_all_held
        )
        # anyio's functions; once open, the running event loop's own (the same functions,
        # without finding the event loop again on every call).
        self._now: Callable[[], float] = anyio.current_time
        self._cancel_scope: Callable[..., anyio.CancelScope] = anyio.CancelScope
        self._new_event: Callable[[], anyio.Event] = anyio.Event

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        default_limit: int = 20,
        lease_ttl: float = 30.0,
        max_hold: float | None = None,
        owner_id: str | None = None,
        renew_interval: float | None = None,
        default_region: str | None = None,
        feedback: Mapping[str | int, Reaction] | None = None,
        config: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        degraded_share: float | None = None,
        restore_leases: bool = True,
        hooks: Iterable[Hook] = (),
        session: str | None = None,
        keepalive: bool = True,
        **options: Any,
    ) -> Throttle:
        """A throttle on the backend the URL names.

        - ``memory://``: the embedded backend, pure Python, one process
        - ``redis://host:port/db``, ``rediss://...`` (TLS), ``unix:///path/to/socket``: Redis
        - ``redis+sentinel://host:port[,host:port...]/service[/db]``: the master of a service
          monitored by Redis Sentinel, followed through failovers
        - ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` for TLS): a Redis
          Cluster; each number's keys live on one slot, numbers spread over the masters

        Redis options (``key_prefix``, and anything ``redis.asyncio.from_url`` takes, such as
        ``socket_timeout``) go in ``options``. Everything is validated before any connection is
        made. See :class:`Throttle` for the other parameters.

        :raises UnknownScheme: for any other URL
        """
        check_session_options(session, owner_id, keepalive)  # before the URL: nothing is made
        backend = backend_from_url(url, options)  # connects only when the throttle opens
        return cls(
            backend,
            default_limit=default_limit,
            lease_ttl=lease_ttl,
            max_hold=max_hold,
            owner_id=owner_id,
            renew_interval=renew_interval,
            default_region=default_region,
            feedback=feedback,
            config=config,
            close_backend=True,
            degraded_share=degraded_share,
            restore_leases=restore_leases,
            hooks=hooks,
            session=session,
            keepalive=keepalive,
        )

    # -- properties ------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The backend this throttle uses."""
        return self._backend

    @property
    def owner_id(self) -> str:
        """Identifies this throttle's leases; pass it to :meth:`release_owner` after a crash.
        For a session throttle, the session's name."""
        return self._owner_id

    @property
    def session(self) -> str | None:
        """The session this throttle's leases belong to, or None."""
        return self._session

    @property
    def default_limit(self) -> int:
        """The cap applied when :meth:`acquire` is given no ``limit``."""
        return self._default_limit

    @property
    def lease_ttl(self) -> float:
        """Seconds a lease lives without renewal."""
        return self._lease_ttl

    @property
    def held(self) -> tuple[Lease, ...]:
        """The leases this throttle holds and renews (degraded ones too). For a session
        throttle, the session leases it took and has not seen released (a release by another
        process of the session is told to every throttle of the session, best effort: a missed
        event leaves the lease listed until this throttle closes)."""
        held = tuple(h.lease for h in self._held.values())
        return held if self._degraded is None else held + self._degraded.held

    def __repr__(self) -> str:
        state = "open" if self._task_group is not None else "closed"
        return (
            f"<Throttle owner={self._owner_id!r} {self._backend!r} "
            f"holding {len(self._held)}, waiting {len(self._waiting)} ({state})>"
        )

    # -- hooks -------------------------------------------------------------------------------

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook`` with every :class:`~callthrottle.Event` of this throttle from now on.

        Hooks run synchronously, in the task that caused the event, in the order they were
        added: they must be quick and must not block (count, record, or hand off to a queue).
        An exception in a hook is logged (once per hook and kind of event) and never reaches the
        acquire or release that caused the event. With no hook installed, events cost nothing.
        Adding a hook already installed does nothing.

        :raises InvalidArgument: if ``hook`` is not callable
        """
        self._hooks.add(hook)

    def remove_hook(self, hook: Hook) -> None:
        """Stop calling ``hook``; does nothing if it is not installed."""
        self._hooks.remove(hook)

    def _forget_all_held(self) -> None:
        """This throttle's own owner was released: every lease it held is gone."""
        now = self._now()
        for held in self._held.values():
            held.lease._mark_released()
            if self._hooks.installed:
                lease = held.lease
                self._hooks.emit(Released(lease.number, lease.token, now - held.since))
        self._held.clear()

    def _lost_while_degraded(self, event: Event) -> None:
        """A hook of the in-process throttle behind degraded leases: it tells their losses."""
        if self._hooks.installed and isinstance(event, LeaseLost):
            self._hooks.emit(event)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Throttle:
        if self._stack is not None:
            raise ThrottleError("this Throttle is already open; enter it only once")
        loop = current_token().backend_class
        self._now = loop.current_time
        self._cancel_scope = loop.create_cancel_scope
        self._new_event = loop.create_event
        await self._backend.open()
        for name, numbers in self._plans.configured_pools():
            await self._backend.pool_update(name, self._plans.specs(numbers), ())
        async with AsyncExitStack() as stack:
            if self._close_backend:
                stack.push_async_callback(self._backend.aclose)
            if self._degraded is not None:
                await stack.enter_async_context(self._degraded)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)
            await task_group.start(self._listen)
            task_group.start_soon(self._heartbeat)
            self._stack = stack.pop_all()
            self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            await self._release_all_held()
        finally:
            self._task_group = None
            await self._stop_waiters()
            await stack.aclose()

    async def _stop_waiters(self) -> None:
        """Wake every waiter (it finds the throttle closed) and let it withdraw from the line."""
        if not self._waiting:
            return
        self._drained = anyio.Event()
        for waiter in self._waiting.values():
            waiter.wake(granted=False)
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT):
            await self._drained.wait()
        self._drained = None

    def _forget_waiter(self, key: tuple[str, str]) -> None:
        del self._waiting[key]
        if self._drained is not None and not self._waiting:
            self._drained.set()

    async def _release_all_held(self) -> None:
        held = list(self._held.values())
        if not held:
            return
        if self._session is not None:
            # The calls go on: another process of the session releases them, or they lapse
            # with the session once nobody keeps it alive.
            logger.info(
                "closing throttle of session %s: %d lease(s) it took stay with the session",
                self._session,
                len(held),
                extra={"owner": self._owner_id},
            )
            self._held.clear()
            return
        logger.warning(
            "closing throttle %s while it holds %d lease(s); giving them back",
            self._owner_id,
            len(held),
            extra={"owner": self._owner_id},
        )
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT):
            for item in held:
                try:
                    await self.release(item.lease)
                except ThrottleError as exc:
                    logger.warning(
                        "could not release %s at close (%s); it expires within %s s",
                        item.lease,
                        exc,
                        self._lease_ttl,
                        extra=self._log_extra(item.lease),
                    )
        self._held.clear()

    def _check_open(self) -> None:
        if self._task_group is None:
            raise ThrottleError(
                "this Throttle is not open: use it as `async with Throttle.from_url(...) as t:`"
            )

    def _log_extra(self, lease: Lease) -> dict[str, str]:
        return {"number": lease.number, "token": lease.token, "owner": self._owner_id}

    # -- acquiring -----------------------------------------------------------------------------

    async def acquire(
        self,
        number: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        limit: int | None = None,
        callee: str | None = None,
        priority: int = 0,
    ) -> Lease:
        """Take a slot on ``number``, waiting in line for at most ``timeout`` seconds.

        The lease is renewed in the background until :meth:`release` is called with it (or with
        ``Lease(number, token)``, from any process).

        :param number: the caller-ID number
        :param token: identifies the lease; pass the call ID so that a hang-up handler elsewhere
            can release it. Defaults to a fresh random id.
        :param timeout: seconds to wait; ``None`` waits forever; ``0`` tries once without
            queueing
        :param limit: the number's cap; defaults to the configured one, else ``default_limit``
        :param callee: the number to be called; with callee windows configured, at most so
            many calls to it per window are admitted, from all numbers of the same tenant
        :param priority: 0 for campaign calls; 1 or more (callbacks, manual calls) may also use
            the slots a trunk or tenant keeps in ``reserve``
        :raises AcquireTimeout: if no slot came within ``timeout`` (nothing is left queued)
        :raises RateLimited: (an ``AcquireTimeout``) if a rate window of the number or the
            callee was full; it says which, and when to retry
        :raises NumberUnavailable: if the number's state admits no calls
        :raises LeaseConflict: if ``token`` already holds or waits for a slot on ``number``
        :raises InvalidArgument: on bad input, before anything is written
        :raises BackendUnavailable: if the backend failed (any slot it granted is given back)
        """
        if self._hooks.installed:
            return await self._acquire_observed(number, token, timeout, limit, callee, priority)
        try:
            lease = await self._acquire_shared(number, token, timeout, limit, callee, priority)
        except BackendUnavailable as exc:
            if self._degraded is None:
                raise
            return await self._acquire_degraded(
                number, token, timeout, limit, callee, priority, exc
            )
        if self._degraded_since is not None:
            self._backend_is_back()
        return lease

    def _backend_is_back(self) -> None:
        self._degraded_since = None
        logger.warning(
            "the backend is back: calls use it again (leases taken while degraded stay "
            "in-process until released)",
            extra={"owner": self._owner_id},
        )

    async def _acquire_observed(
        self,
        number: str,
        token: str | None,
        timeout: float | None,
        limit: int | None,
        callee: str | None,
        priority: int,
    ) -> Lease:
        """:meth:`acquire`, telling the hooks how it ended."""
        started = self._now()
        try:
            try:
                lease = await self._acquire_shared(number, token, timeout, limit, callee, priority)
            except BackendUnavailable as exc:
                if self._degraded is None:
                    raise
                lease = await self._acquire_degraded(
                    number, token, timeout, limit, callee, priority, exc
                )
            else:
                if self._degraded_since is not None:
                    self._backend_is_back()
        except (AcquireTimeout, NumberUnavailable) as exc:
            self._hooks.emit(refusal(exc.number, exc, self._now() - started))
            raise
        except anyio.get_cancelled_exc_class():
            self._hooks.emit(Cancelled(number, self._now() - started))
            raise
        self._emit_admitted(lease, started)
        return lease

    def _emit_admitted(self, lease: Lease, started: float) -> None:
        waited = self._now() - started
        self._hooks.emit(
            Admitted(lease.number, lease.token, self._owner_id, waited, lease.pool, lease.degraded)
        )

    async def _acquire_shared(
        self,
        number: str,
        token: str | None,
        timeout: float | None,
        limit: int | None,
        callee: str | None,
        priority: int,
    ) -> Lease:
        number = normalize_number(number, self._region)
        token = _new_token() if token is None else check_token(token)
        wait = check_timeout(timeout)
        configured = self._plans.known.get(number)
        if configured is None:
            configured = self._plans.configured(number)
        cap = configured[0] if limit is None else check_limit(limit)
        callee_e164 = None if callee is None else normalize_number(callee, self._region, "callee")
        if priority != 0 or priority.__class__ is not int:
            priority = check_priority(priority)
        self._check_open()
        key = (number, token)
        if key in self._held or key in self._waiting:
            raise LeaseConflict(number, token, "already holds or waits for a slot of this throttle")
        rates = configured[1]
        if priority or callee_e164 is not None or rates is not NO_RATES:
            rates = self._plans.for_call(rates, callee_e164, priority)
        if self._restoring is not None and wait != 0:
            wait = await self._let_restore(wait)
        waiter = self._waiting[key] = _Waiter()
        try:
            if wait == 0:
                granted = await self._try_once(number, token, cap, rates)
            elif wait is None:  # no deadline: no cancel scope needed
                granted = await self._wait_in_line(_Request(number, token, cap, rates), waiter)
            else:
                granted = False
                with self._cancel_scope(deadline=self._now() + wait):
                    granted = await self._wait_in_line(_Request(number, token, cap, rates), waiter)
                if not granted:
                    await self._abandon(number, token)
        except (LeaseConflict, NumberUnavailable, RateLimited) as exc:
            if isinstance(exc, NumberUnavailable) and waiter.queued:
                await self._abandon(number, token)
            self._forget_waiter(key)  # nothing else was written
            raise
        except BaseException:
            await self._abandon(number, token)
            self._forget_waiter(key)
            raise
        del self._waiting[key]
        if self._drained is not None and not self._waiting:
            self._drained.set()
        if not granted:
            if waiter.rate_refusal is not None:
                window, admits_at = waiter.rate_refusal
                retry_after = max(admits_at - self._now(), 0.0)
                raise RateLimited(number, wait, window, retry_after)
            refused_by = "fence" if waiter.fenced else waiter.group_refusal or "cap"
            raise AcquireTimeout(number, wait, refused_by)
        lease = Lease(number, token, self._owner_id)
        now = self._now()
        self._held[key] = _Held(lease, now, self._final, now)
        return lease

    async def _let_restore(self, wait: float | None) -> float | None:
        """Wait (within the caller's ``wait``, at most ``_RESTORE_GRACE`` seconds) while this
        throttle counts again the leases a replaced backend connection may have lost, so its
        own new calls do not take their slots first; return what is left of ``wait``."""
        restoring = self._restoring
        assert restoring is not None
        started = self._now()
        bound = _RESTORE_GRACE if wait is None else min(wait, _RESTORE_GRACE)
        with anyio.move_on_after(bound):
            await restoring.wait()
        return None if wait is None else max(wait - (self._now() - started), 0.0)

    async def _acquire_degraded(
        self,
        number: str,
        token: str | None,
        timeout: float | None,
        limit: int | None,
        callee: str | None,
        priority: int,
        error: BackendUnavailable,
    ) -> Lease:
        """The backend failed: take the slot from this process's share of the number's cap."""
        assert self._degraded is not None
        assert self._degraded_share is not None
        number = normalize_number(number, self._region)
        cap = self._plans.cap_for(number, limit)
        share = max(1, int(cap * self._degraded_share))
        if self._degraded_since is None:
            self._degraded_since = self._now()
            logger.error(
                "DEGRADED: the backend is unreachable (%s); until it is back, each number admits "
                "%s of its cap from this process alone (%s of %s on %s)",
                error,
                self._degraded_share,
                share,
                cap,
                number,
                extra={"number": number, "owner": self._owner_id},
            )
        lease = await self._degraded.acquire(
            number, token=token, timeout=timeout, limit=share, callee=callee, priority=priority
        )
        lease.degraded = True
        return lease

    def _ask(self, request: _Request, enqueue: bool) -> Awaitable[AcquireResult]:
        return self._backend.acquire(
            request.number,
            request.token,
            self._owner_id,
            request.limit,
            self._lease_ttl,
            self._max_hold,
            enqueue,
            request.rates,
            **self._session_kw,
        )

    async def _try_once(self, number: str, token: str, cap: int, rates: RatePlan) -> bool:
        result = await self._backend.acquire(
            number,
            token,
            self._owner_id,
            cap,
            self._lease_ttl,
            self._max_hold,
            False,
            rates,
            **self._session_kw,
        )
        outcome = result.outcome
        if outcome is Outcome.GRANTED:
            return True
        if result.fenced:
            self._note_fence(result)
            refused = AcquireTimeout(number, 0, "fence")
            refused.retry_after = result.retry_in
            raise refused
        _raise_if_refused_for_good(number, token, result)
        if outcome is Outcome.RATE_LIMITED:
            window = _window_name(result, _Request(number, token, cap, rates))
            raise RateLimited(number, 0, window, result.retry_in or 0.0)
        if outcome is Outcome.GROUP_FULL:
            raise AcquireTimeout(number, 0, result.group or "group")
        return False

    async def _wait_in_line(self, request: _Request, waiter: _Waiter) -> bool:
        while True:
            # Armed before asking: a word that arrives while the ask is on its way back (the
            # reply, decided earlier, still says "queued") wakes the sleep below at once.
            waiter.event = event = self._new_event()
            result = await self._ask(request, True)
            self._check_open()  # closed meanwhile: give up (the caller withdraws the request)
            if result.outcome is Outcome.GRANTED:
                return True
            _raise_if_refused_for_good(request.number, request.token, result)
            waiter.fenced = result.fenced
            if result.outcome is Outcome.RATE_LIMITED:
                # Out of the line (nothing counted): ask again when the window has room.
                waiter.queued = False
                delay = result.retry_in or 0.0
                waiter.rate_refusal = (_window_name(result, request), self._now() + delay)
            elif result.outcome is Outcome.GROUP_FULL:
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
                    self._note_fence(result)
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
            else:
                with self._cancel_scope(deadline=self._now() + delay):
                    await event.wait()
            if waiter.is_granted():
                return True

    async def _publish_lost_pool(self, pool: str) -> None:
        """Publish again ``pool``'s configured numbers if the backend has none of them, once it
        said it may have lost its data (a Redis restart, failover or flush: a pick refused by
        the fence). (A pool emptied on purpose just before such a loss is filled again from
        the configuration.)"""
        numbers = self._plans.pool_numbers(pool)
        if not numbers or await self._backend.pool_members(pool):
            return
        await self._backend.pool_update(pool, self._plans.specs(numbers), ())
        logger.warning(
            "pool %s had no number left on the backend (it lost its data?): its configured "
            "numbers were published again",
            pool,
            extra={"owner": self._owner_id},
        )

    def _note_fence(self, result: AcquireResult) -> None:
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

    async def _abandon(self, number: str, token: str) -> None:
        """Leave the line and give back any slot granted meanwhile; never raises."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT) as scope:
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

    @asynccontextmanager
    async def slot(
        self,
        number: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        limit: int | None = None,
        callee: str | None = None,
        priority: int = 0,
    ) -> AsyncIterator[Lease]:
        """Hold a slot on ``number`` for the ``async with`` block; see :meth:`acquire`.

        The slot is given back when the block ends, by return, exception or cancellation. If
        the backend cannot be reached then, the failure is logged (not raised over the block's
        own outcome) and the lease expires within ``lease_ttl``.
        """
        lease = await self.acquire(
            number, token=token, timeout=timeout, limit=limit, callee=callee, priority=priority
        )
        try:
            yield lease
        finally:
            await self._release_quietly(lease)

    async def _release_quietly(self, lease: Lease) -> None:
        """Give ``lease`` back at the end of a block; a failure is logged, not raised over the
        block's own outcome (the lease then expires within ``lease_ttl``)."""
        try:
            await self.release(lease)
        except ThrottleError as exc:
            logger.warning(
                "could not release %s (%s); it expires within %s s",
                lease,
                exc,
                self._lease_ttl,
                extra=self._log_extra(lease),
            )

    # -- pools ---------------------------------------------------------------------------------

    async def add_to_pool(self, pool: str, numbers: Iterable[str]) -> int:
        """Add ``numbers`` to ``pool`` (created on first use), for every process; returns how
        many numbers the pool has now. Each number's cap, rate windows, trunk and tenant are
        taken from this throttle's configuration, as they are now.

        :raises InvalidArgument: on a bad pool name or number, before anything is written
        """
        pool = check_pool(pool)
        checked = [normalize_number(n, self._region) for n in listed("numbers", numbers)]
        self._check_open()
        return await self._backend.pool_update(pool, self._plans.specs(checked), ())

    async def remove_from_pool(self, pool: str, numbers: Iterable[str]) -> int:
        """Take ``numbers`` out of ``pool`` (their calls in progress are not touched); returns
        how many numbers the pool has now."""
        pool = check_pool(pool)
        checked = [normalize_number(n, self._region) for n in listed("numbers", numbers)]
        self._check_open()
        return await self._backend.pool_update(pool, {}, checked)

    async def pool_members(self, pool: str) -> list[str]:
        """The numbers of ``pool``, in round-robin order."""
        pool = check_pool(pool)
        self._check_open()
        return await self._backend.pool_members(pool)

    async def acquire_from(
        self,
        pool: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        callee: str | None = None,
        priority: int = 0,
        strategy: str | None = None,
    ) -> Lease:
        """Take a slot on any number of ``pool`` that can take the call; the lease names it.

        Every limit of the number picked applies (its state, cap, rate windows, trunk and
        tenant, and the callee's windows), decided with the pick in one step (one round trip on
        Redis). Numbers that cannot take the call are skipped. If none can, the pool's
        ``fallback`` pool (configured) is tried, and so on; then the call waits for a number
        to free up (looking again when a lease of the pool is released in this process, at the
        earliest expiry the pick reported, and at least every 0.25 s) until ``timeout``, and
        raises :class:`PoolExhausted`.

        :param strategy: ``"least-loaded"``, ``"round-robin"``, ``"local"`` (numbers in the
            callee's area, then region, first) or ``"sticky"`` (the callee's last number
            first); defaults to the pool's configured one, else least-loaded
        :raises PoolExhausted: if no number could take the call within ``timeout``
        :raises LeaseConflict: if ``token`` already holds a slot on a number of the pool for
            another owner (for this throttle's owner, that slot is returned)
        :raises InvalidArgument: on bad input, before anything is written
        """
        pool = check_pool(pool)
        token = _new_token() if token is None else check_token(token)
        wait = check_timeout(timeout)
        callee_e164 = None if callee is None else normalize_number(callee, self._region, "callee")
        priority = check_priority(priority)
        chosen = None if strategy is None else check_strategy(strategy)
        self._check_open()
        chain = self._plans.pool_chain(pool)
        call = self._plans.for_pick(callee_e164, priority)
        near = ("", "") if callee_e164 is None else locality(callee_e164)
        started = self._now()
        deadline = None if wait is None else started + wait
        key = (f"pool:{pool}", token)
        if key in self._waiting:
            raise LeaseConflict(pool, token, "already waits for a slot of this pool")
        waiter = self._waiting[key] = _Waiter()
        in_line = False
        try:
            while True:
                earliest: float | None = None
                # Armed before picking: a nudge that comes while a pick is on its way back
                # wakes the wait below at once.
                waiter.event = event = self._new_event()
                for index, name in enumerate(chain):
                    settings = self._plans.pool(name)
                    how = chosen or settings.strategy
                    # Only the pool asked for keeps a line; its fallbacks are tried in passing.
                    queue = wait != 0 and index == 0
                    picked = await self._pick(
                        name, token, how, call, near, settings.sticky_ttl, queue
                    )
                    if isinstance(picked, Lease):
                        in_line = in_line and index != 0  # a slot of the pool took it out
                        if self._hooks.installed:
                            self._emit_admitted(picked, started)
                        return picked
                    if queue and not in_line and self._hooks.installed:
                        self._hooks.emit(Queued(f"pool:{name}", token))
                    in_line = in_line or queue
                    if picked is not None and (earliest is None or picked < earliest):
                        earliest = picked
                now = self._now()
                if wait == 0 or (deadline is not None and now >= deadline):
                    exhausted = PoolExhausted(pool, wait, tuple(chain), earliest)
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
        except anyio.get_cancelled_exc_class():
            if self._hooks.installed:
                self._hooks.emit(Cancelled(key[0], self._now() - started))
            raise
        finally:
            del self._waiting[key]
            if in_line:
                with self._cancel_scope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT):
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

    async def _pick(
        self,
        pool: str,
        token: str,
        strategy: str,
        call: RatePlan,
        near: tuple[str, str],
        sticky_ttl: float,
        queue: bool,
    ) -> Lease | float | None:
        """One pick on one pool: the lease, else the earliest retry (seconds) if known."""
        with self._cancel_scope(shield=True):  # a slot granted meanwhile must not be lost
            result = await self._backend.pick(
                pool, token, self._owner_id, self._lease_ttl, self._max_hold, strategy,
                _PICK_TRIES, call, near, sticky_ttl, queue, **self._session_kw,
            )  # fmt: skip
        if result.outcome is Outcome.CONFLICT:
            raise LeaseConflict(
                result.number or "", token, "already holds a slot (on a number of the pool)"
            )
        if result.outcome is not Outcome.GRANTED or result.number is None:
            if result.fenced:  # the server may have lost the pool's numbers with its data
                await self._publish_lost_pool(pool)
            return result.retry_in
        lease = Lease(result.number, token, self._owner_id)
        lease.pool = pool
        now = self._now()
        self._held[(result.number, token)] = _Held(lease, now, self._final, now)
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            await self.release(lease)  # cancelled as the slot came: give it back
            raise
        return lease

    @asynccontextmanager
    async def slot_from(
        self,
        pool: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        callee: str | None = None,
        priority: int = 0,
        strategy: str | None = None,
    ) -> AsyncIterator[Lease]:
        """Hold a slot on a number of ``pool`` for the ``async with`` block (the number is
        ``lease.number``); see :meth:`acquire_from` and :meth:`slot`."""
        lease = await self.acquire_from(
            pool, token=token, timeout=timeout, callee=callee, priority=priority, strategy=strategy
        )
        try:
            yield lease
        finally:
            await self._release_quietly(lease)

    # -- releasing -----------------------------------------------------------------------------

    async def release(self, lease: Lease) -> bool:
        """Give the slot back; idempotent, shielded from cancellation.

        Works for any lease, also one taken by another process: ``Lease(number, token)`` is
        enough.

        :return: True if a live lease was released; False if there was none (already released,
            expired, or never taken)
        :raises BackendUnavailable: if the backend failed; the lease is then no longer renewed
            and expires within ``lease_ttl`` unless a retried release succeeds first
        """
        return await self._release(lease) == ReleaseState.RELEASED

    async def end_call(self, lease: Lease) -> ReleaseOutcome:
        """Give the slot back when the call ends, as :meth:`release` does, and say what was
        found: ``RELEASED`` (the lease was live: the call was counted all along), ``EXPIRED``
        (the lease had lapsed, its renewals or its session's keep-alives having stopped: the
        call ran uncounted for a while) or ``UNKNOWN`` (no such lease: never taken, already
        released, or lapsed more than four lease TTLs ago).

        :raises BackendUnavailable: as :meth:`release`
        """
        return _OUTCOMES.get(await self._release(lease), ReleaseOutcome.UNKNOWN)

    async def _release(self, lease: Lease) -> int:
        """:meth:`release`, returning the backend's :class:`ReleaseState`."""
        if not isinstance(cast("object", lease), Lease):
            raise InvalidArgument("lease", lease, "a Lease")
        number, token = lease.number, lease.token
        if self._degraded is not None and (
            lease.degraded or (number, token) in self._degraded._held
        ):
            if not self._hooks.installed:
                return await self._degraded._release(lease)
            was = self._degraded._held.get((number, token))
            outcome = await self._degraded._release(lease)
            if outcome == ReleaseState.RELEASED:
                held_for = None if was is None else self._now() - was.since
                self._hooks.emit(Released(was.lease.number if was else number, token, held_for))
            return outcome
        # A lease this throttle holds was validated when it was taken.
        held_here = (
            number.__class__ is str and token.__class__ is str and (number, token) in self._held
        )
        if not held_here:
            number = normalize_number(number, self._region)
            token = check_token(token)
        key = (number, token)
        self._check_open()
        pool = lease.pool
        if pool is None and (mine := self._held.get(key)) is not None:
            pool = mine.lease.pool
        with self._cancel_scope(shield=True):
            try:
                # A backend may answer a bool (True: released): int() maps it to 1 or 0.
                outcome = int(await self._backend.release(number, token, self._owner_id, pool))
            finally:
                held = self._held.pop(key, None)
        if held is not None:
            held.lease._mark_released()
        if outcome == ReleaseState.RELEASED:
            lease._mark_released()
            if self._hooks.installed:
                held_for = None if held is None else self._now() - held.since
                self._hooks.emit(Released(number, token, held_for))
        return outcome

    async def keepalive(self) -> None:
        """Keep this throttle's session alive for ``lease_ttl`` seconds from now (by the
        backend's clock; never shortening it): every lease of the session, taken by any
        process, lives on until then. One call to the backend, whatever the session holds. Call
        it at least every ``lease_ttl`` seconds (every third of it leaves room for a slow call)
        when nothing else keeps the session alive.

        :raises ThrottleError: if the throttle has no session
        :raises BackendUnavailable: if the backend failed
        """
        if self._session is None:
            raise ThrottleError("this Throttle has no session to keep alive (see `session`)")
        self._check_open()
        kept_at = anyio.current_time()
        if await self._backend.keepalive(self._session, self._lease_ttl):
            self._may_have_lost(kept_at)

    def _may_have_lost(self, since: float) -> None:
        """The backend may have lost leases (it is fenced) without any connection being
        replaced (a flush): the heartbeat looks for this throttle's at once, as after one."""
        self._resynced_at = max(self._resynced_at, since)
        if self._held and self._restore_leases and self._restoring is None:
            self._restoring = anyio.Event()
        if self._renew_soon is not None:
            self._renew_soon.set()

    async def release_owner(self, owner_id: str) -> int:
        """Free every lease and place in line of the throttle ``owner_id`` (e.g. a dead process).
        Given a session's name, the session ends at once: its leases, whoever took them, and
        its places in line go.

        :return: how many leases and places in line were removed
        """
        return await self._operator.release_owner(owner_id)

    # -- operator queries and admin actions -----------------------------------------------------

    async def known_numbers(self) -> list[str]:
        """Every number the backend holds state for (live leases, waiters, a runtime policy),
        sorted: with the configured numbers, what an operator's status view lists.

        On Redis this scans the key prefix (``SCAN``, several round trips): for operators, not
        for the hot path."""
        return await self._operator.known_numbers()

    async def holders(self, number: str) -> list[Holder]:
        """The number's live leases, across every process: token, owner, and when each expires
        unless renewed (oldest expiry first)."""
        return await self._operator.holders(number)

    async def reset(self, number: str) -> tuple[int, int]:
        """Clear the number's leases and its line at once, for every process: the operator's
        tool when a switch crashed and its calls are known to be down.

        Every holder is told its lease was released (``lease.released``); every waiter asks
        again at once, finding the number empty. The number's state, caps and rate windows set
        at run time stay.

        :return: (leases removed, waiters woken)
        """
        return await self._operator.reset(number)

    # -- number policy and health ----------------------------------------------------------------

    async def set_cap(self, number: str, cap: int | None) -> None:
        """Set the number's cap at run time, for every process at once (None: remove it).

        It overrides configured and per-call caps. Lowered below what is held, nobody new is
        admitted until usage falls under it; raised, waiters are admitted at once.
        """
        await self._operator.set_cap(number, cap)

    async def set_rates(self, number: str, rates: str | None) -> None:
        """Set the number's rate windows at run time, for every process at once.

        ``rates`` is in ``limits``' notation (``"1/second;100/hour;500/day"``) and replaces the
        configured windows (per-day windows reset as its profile says); None removes it.
        """
        await self._operator.set_rates(number, rates)

    async def set_state(
        self,
        number: str,
        state: NumberState | str,
        *,
        reason: str | None = None,
        duration: float | None = None,
    ) -> None:
        """Set the number's health state, for every process at once.

        Only ``active`` and ``warming`` numbers admit calls; the others refuse new ones with
        :class:`NumberUnavailable` (calls already up run out normally, and waiters are refused).
        ``cooling`` needs a ``duration`` in seconds, after which the number is active again.
        ``warming`` starts the warm-up of the number's profile (its daily caps by week) now.
        A cool-down that ended, like ``active`` set without a reason, leaves nothing stored.
        """
        await self._operator.set_state(number, state, reason, duration)

    async def status(self, number: str) -> NumberStatus:
        """The number's state and runtime caps, as every process sees them."""
        return await self._operator.status(number)

    async def report(self, number: str, outcome: int | str) -> Reaction | None:
        """Apply the configured reaction to a carrier's answer to a call from ``number``.

        ``outcome`` is a SIP status (403, 429, 503, 607, 608, ...) or a carrier's own code (477
        "caller over-frequency", 475 "over calls per second", ...). The reaction cools the number
        down, flags it, or lowers its cap for a while (see :class:`Reaction`).

        :return: the reaction applied, or None if the code has none
        """
        return await self._operator.report(number, outcome)

    # -- observing -----------------------------------------------------------------------------

    async def usage(self, number: str, *, limit: int | None = None) -> Usage:
        """A snapshot of the number's live leases and waiters, across every process."""
        return await self._operator.usage(number, limit)

    async def window_usage(self, number: str) -> list[WindowUsage]:
        """The calls each rate window in force on the number counts now, across every process:
        its windows set at run time (:meth:`set_rates`), else its configured ones, and its
        warm-up's daily cap while it is warming. Read only."""
        return await self._operator.window_usage(number)

    async def group_usage(self, kind: str, name: str) -> Usage:
        """A snapshot of a trunk's or tenant's live leases and waiters, and its cap."""
        return await self._operator.group_usage(kind, name)

    async def set_group_cap(self, kind: str, name: str, cap: int | None) -> None:
        """Set a trunk's or tenant's cap at run time, for every process at once (None: back to
        the configured one). Its reserve still applies to campaign calls."""
        await self._operator.set_group_cap(kind, name, cap)

    async def set_group_rates(self, kind: str, name: str, rates: str | None) -> None:
        """Set a trunk's or tenant's rate windows at run time, for every process at once."""
        await self._operator.set_group_rates(kind, name, rates)

    # -- background work -----------------------------------------------------------------------

    async def _listen(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        await self._backend.listen(self._owner_id, self._on_event, task_status=task_status)

    def _on_event(self, kind: str, number: str, token: str) -> None:
        if kind == "resync":  # events may have been missed: every waiter asks again
            self._resynced_at = self._now()
            if self._held and self._restore_leases and self._restoring is None:
                self._restoring = anyio.Event()
            if self._renew_soon is not None:
                self._renew_soon.set()
            for each in self._waiting.values():
                each.wake(granted=False)
            return
        key = (number, token)
        if kind == "granted" or kind == "nudged":
            waiter = self._waiting.get(key)
            if waiter is not None:
                waiter.wake(granted=kind == "granted")
        elif kind == "released":
            held = self._held.pop(key, None)
            if held is not None:
                held.lease._mark_released()
                if self._hooks.installed:
                    held_for = self._now() - held.since
                    self._hooks.emit(Released(number, token, held_for, elsewhere=True))
                logger.debug(
                    "%s was released by another process",
                    held.lease,
                    extra=self._log_extra(held.lease),
                )

    async def _heartbeat(self) -> None:
        while True:
            # Every renew_interval, or at once when the backend's connection was replaced: a
            # server that lost leases is told of the live ones before it admits many calls.
            self._renew_soon = soon = anyio.Event()
            if self._restoring is None:  # else leases may be lost: renew them now
                with anyio.move_on_after(self._renew_interval):
                    await soon.wait()
            restoring = self._restoring  # new acquires wait for this renewal (or its failure)
            try:
                await self._renew_all()
            except Exception as exc:
                if not isinstance(exc, ThrottleError):
                    logger.error(
                        "lease renewal raised an unexpected error",
                        exc_info=exc,
                        extra={"owner": self._owner_id},
                    )
                logger.warning(
                    "lease renewal failed (%s); %d lease(s) expire within %s s unless it recovers",
                    exc,
                    len(self._held),
                    self._lease_ttl,
                    extra={"owner": self._owner_id},
                )
            if restoring is not None:
                restoring.set()
                if self._restoring is restoring:
                    self._restoring = None

    async def _renew_all(self) -> None:
        if self._session is None:
            keys = list(self._held)
        else:
            # Session leases live while the session does: one keep-alive serves them all (when
            # this throttle keeps the session alive); places in line are renewed as always.
            restoring = self._restoring is not None
            if self._keepalive:
                kept_at = anyio.current_time()
                if await self._backend.keepalive(self._session, self._lease_ttl):
                    # The server may have lost leases (its connection need not have been
                    # replaced: a flush): they are looked for as after a reconnect.
                    self._resynced_at = max(self._resynced_at, kept_at)
                    restoring = True
                if not restoring:  # kept alive: as if renewed (a restore needs that: _restore)
                    for kept in self._held.values():
                        kept.renewed_at = max(kept.renewed_at, kept_at)
            # Once the backend's connection was replaced, the server may have lost them: they
            # are looked for (a renewal of a session lease only says whether it is held), and
            # counted again if gone. A throttle that does not keep its session alive hears of
            # no fence from a keep-alive: it looks for its leases at every heartbeat (one call
            # per number it holds leases on).
            keys = list(self._held) if restoring or not self._keepalive else []
        keys += [key for key, waiter in self._waiting.items() if waiter.queued]
        if not keys:
            return
        sent_at = anyio.current_time()
        states = await self._backend.renew(self._owner_id, keys, self._lease_ttl)
        now = anyio.current_time()
        forgotten: list[tuple[tuple[str, str], _Held]] = []
        for key, state in zip(keys, states, strict=True):
            held = self._held.get(key)
            if held is not None:
                if state is RenewState.HELD or state is RenewState.FINAL:
                    held.renewed_at = sent_at
                    held.final = state is RenewState.FINAL
                elif state is RenewState.GONE or state is RenewState.LOST:
                    if state is RenewState.LOST:  # the server may have lost it (a flush too)
                        self._resynced_at = max(self._resynced_at, sent_at)
                    if self._restore_leases and self._lost_by_backend(held):
                        forgotten.append((key, held))
                    else:
                        self._forget(key, held, now)
                continue
            waiter = self._waiting.get(key)
            if waiter is not None and state is not RenewState.QUEUED:
                # Granted (its notice was lost) or its place lapsed: either way, ask again.
                waiter.wake(granted=state is RenewState.HELD or state is RenewState.FINAL)
        for key, held in forgotten:
            await self._restore(key, held, sent_at)

    def _lost_by_backend(self, held: _Held) -> bool:
        """Whether a lease the backend no longer has was lost by it (not released, expired
        or ended by max_hold): last renewed before the backend's connection was replaced."""
        return not held.final and held.renewed_at <= self._resynced_at

    async def _restore(self, key: tuple[str, str], held: _Held, sent_at: float) -> None:
        """Count a lease the backend lost again (see ``restore_leases``), or report it lost."""
        lease = held.lease
        number = lease.number
        left = None
        if self._max_hold is not None:
            left = self._max_hold - (sent_at - held.since)
        restored = RestoreOutcome.TAKEN
        # Longer without a renewal, a release's record may have lapsed: it may have ended.
        stale = anyio.current_time() - held.renewed_at >= RESTORE_WITHIN * self._lease_ttl
        if not stale and (left is None or left > 0):
            cap, plan = self._plans.configured(number)
            try:
                restored = await self._backend.restore(
                    number,
                    lease.token,
                    self._owner_id,
                    cap,
                    self._lease_ttl,
                    left,
                    plan,
                    age=sent_at - held.since,
                    **self._session_kw,
                )
            except ThrottleError as exc:
                logger.warning(
                    "%s could not be counted again (%s)", lease, exc, extra=self._log_extra(lease)
                )
        if self._held.get(key) is not held:  # released meanwhile: give it back again
            if restored is RestoreOutcome.RESTORED:
                with contextlib.suppress(ThrottleError):
                    await self._backend.release(number, lease.token, self._owner_id)
            return
        if restored is RestoreOutcome.RESTORED:
            held.renewed_at = sent_at
            if self._hooks.installed:
                self._hooks.emit(Restored(number, lease.token))
            logger.warning(
                "%s was lost by the backend (restart or failover) and has been counted again; "
                "calls placed on the number meanwhile may have taken it over its cap",
                lease,
                extra=self._log_extra(lease),
            )
        else:
            ended = restored is RestoreOutcome.ENDED
            over = left is not None and left <= 0  # its max_hold ran out meanwhile
            self._forget(key, held, anyio.current_time(), ended=ended, stale=stale, over=over)

    def _emit_gone(self, lease: Lease, held_for: float) -> None:
        if lease.lost_reason is not None:
            self._hooks.emit(LeaseLost(lease.number, lease.token, lease.lost_reason))
        else:
            self._hooks.emit(Released(lease.number, lease.token, held_for, elsewhere=True))

    def _forget(
        self,
        key: tuple[str, str],
        held: _Held,
        now: float,
        *,
        ended: bool = False,
        stale: bool = False,
        over: bool = False,
    ) -> None:
        """The backend no longer has a lease this throttle holds: tell released from lost.
        ``ended``: the backend says it was ended for good (released elsewhere, reset) while
        this throttle was cut off; ``stale``: too long without a renewal to count it again;
        ``over``: its max_hold ran out while the backend had lost it."""
        del self._held[key]
        lease = held.lease
        if ended:
            lease._mark_released()
            logger.info(
                "%s was released by another process or an operator while this process was "
                "cut off from the backend",
                lease,
                extra=self._log_extra(lease),
            )
        elif stale:
            lease._mark_lost("expired")
            logger.warning(
                "%s went unrenewed for %s lease TTLs (backend outage) and is not counted again; "
                "the call may still be up",
                lease,
                RESTORE_WITHIN,
                extra=self._log_extra(lease),
            )
        elif held.final or over:
            lease._mark_lost("max_hold")
            logger.warning(
                "%s reached max_hold and was dropped; the call may still be up",
                lease,
                extra=self._log_extra(lease),
            )
        elif self._lost_by_backend(held):
            # Last renewed before the backend connection was replaced: the server lost it
            # (restarted without persistence, or failed over to a replica that lacked it).
            lease._mark_lost("backend")
            logger.warning(
                "%s was lost by the backend (restart or failover); the call may still be up "
                "and the number may carry one call over its cap until it ends",
                lease,
                extra=self._log_extra(lease),
            )
        elif now - held.renewed_at >= self._lease_ttl:
            lease._mark_lost("expired")
            logger.warning(
                "%s expired before it could be renewed (stalled process or backend outage); "
                "the number may carry one call over its cap",
                lease,
                extra=self._log_extra(lease),
            )
        else:
            # Removed while it was still live: released by another process or an operator.
            lease._mark_released()
        if self._hooks.installed:
            self._emit_gone(lease, now - held.since)
