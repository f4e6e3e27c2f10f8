"""The Throttle: policy on top of a backend's atomic primitives.

``Throttle`` is the facade (public methods and their documentation, the order of opening and
closing, the backend's events routed to the part they concern) over its parts: the options
(``_settings``), the plan book (``_plans``), hooks (``_hooks``), the line (``_line``: the hot
path), the lease keeper (``_keeper``), pools (``_pooling``), the operator's API
(``_operator``) and the in-process fallback (``_degraded``). The public methods on pools and
the operator's methods are written in ``_pool_api`` and ``_operator_api``, mixed in here.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio.lowlevel import current_token

from ._degraded import Degraded
from ._errors import AcquireTimeout, NumberUnavailable, ThrottleError
from ._events import Cancelled, refusal
from ._expiry import ExpiryWatch
from ._hooks import Hooks
from ._keeper import Keeper, lease_log
from ._line import Line
from ._models import Lease, ReleaseOutcome
from ._operator import Operator
from ._operator_api import OperatorMethods
from ._plans import Plans
from ._policy_api import PolicyMethods
from ._policy_source import PolicyMode, PolicySource, check_policy_mode
from ._pool_api import PoolMethods
from ._pooling import Pools
from ._settings import Settings, check_session_options, listed
from ._url import backend_from_url
from .backends import Backend, ReleaseState

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
    from types import TracebackType

    from anyio.abc import TaskGroup

    from ._config import Config
    from ._health import Reaction
    from ._hooks import Hook
    from ._terms import Calendar

    #: (number, token, timeout, limit, callee, priority) -> the lease
    Acquiring = Callable[
        [str, str | None, float | None, int | None, str | None, int], Awaitable[Lease]
    ]

__all__ = ("Throttle",)

logger = logging.getLogger("callthrottle")

_RELEASED = ReleaseState.RELEASED  # (found once: an enum member read from its class is slow)
_OUTCOMES: dict[int, ReleaseOutcome] = {
    ReleaseState.RELEASED: ReleaseOutcome.RELEASED,
    ReleaseState.EXPIRED: ReleaseOutcome.EXPIRED,
}


class Throttle(PoolMethods, OperatorMethods, PolicyMethods):
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
    it still holds (not a session's: see ``session``), and its callers still waiting for a slot
    (on a number or a pool) give up at once with :class:`ThrottleError`.

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
    :param policy: what to do with a carrier policy published to the backend (see
        :meth:`publish_policy`): ``"match"`` (the default) decides with ``config=`` and
        ``default_limit`` only while they are the policy published, or none is: a different
        one raises :class:`PolicyMismatch` (at open, or from :meth:`acquire` once it is
        published); ``"follow"`` decides with whatever is published (``config=`` only while
        nothing is). A throttle without ``config=`` always follows. Either way, no decision is
        made with a policy older than the newest published.
    :param calendar: the clock that says which day it is for numbers' paid periods (see
        ``paid_until`` in :class:`Config`): a callable returning seconds since the epoch;
        ``time.time`` if None (tests and the simulator pass their own)
    """

    __slots__ = (
        "_acquiring",
        "_backend",
        "_close_backend",
        "_config",
        "_degraded",
        "_expiry",
        "_held",
        "_hooks",
        "_keeper",
        "_line",
        "_now",
        "_operator",
        "_plans",
        "_policy",
        "_pools",
        "_settings",
        "_stack",
        "_task_group",
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
        policy: PolicyMode = "match",
        calendar: Calendar | None = None,
    ) -> None:
        mode = check_policy_mode(policy)
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
            calendar=calendar,
        )
        self._hooks = Hooks(settings.owner_id)
        for hook in listed("hooks", hooks, "a list (or other collection) of callables"):
            self.add_hook(cast("Hook", hook))
        self._backend = backend
        self._close_backend = close_backend
        self._config = settings.config  # (the configuration, as it was read)
        plans = self._plans = Plans(settings.config, settings.default_limit)
        self._degraded: Degraded | None = None
        if settings.degraded_share is not None:
            self._degraded = Degraded(Throttle, settings, plans, self._hooks)
        backend.use_layout(settings.config)  # once every option was checked
        self._policy = PolicySource(backend, settings, plans, mode, given=config is not None)
        check_open = self._check_open
        self._keeper = Keeper(backend, settings, plans, self._hooks, check_open)
        self._expiry = ExpiryWatch(settings.calendar, self._hooks, settings.owner_id)
        self._line = Line(
            backend,
            settings,
            plans,
            self._hooks,
            self._keeper,
            check_open,
            self._policy.refresh,
            self._expiry,
            backend.get_policy,
        )
        self._pools = Pools(
            backend,
            settings,
            plans,
            self._hooks,
            self._line,
            self._keeper,
            check_open,
            self._expiry,
        )
        self._operator = Operator(
            backend,
            settings,
            plans,
            self._hooks,
            check_open,
            self._keeper.forget_all,
            self._policy.refresh,
        )
        self._held = self._keeper.held  # the leases held, by (number, token)
        # The acquire itself: in the backend's line, through degraded mode when it is on (a
        # bound method, not one more call on the hot path).
        self._acquiring: Acquiring = (
            self._line.acquire
            if self._degraded is None
            else partial(self._degraded.acquire, self._line)
        )
        self._stack: AsyncExitStack | None = None
        self._task_group: TaskGroup | None = None
        self._now: Callable[[], float] = anyio.current_time

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
        policy: PolicyMode = "match",
        calendar: Calendar | None = None,
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
        check_policy_mode(policy)
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
            policy=policy,
            calendar=calendar,
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
        return self._settings.owner_id

    @property
    def session(self) -> str | None:
        """The session this throttle's leases belong to, or None."""
        return self._settings.session

    @property
    def default_limit(self) -> int:
        """The cap applied when :meth:`acquire` is given no ``limit``."""
        return self._settings.default_limit

    @property
    def lease_ttl(self) -> float:
        """Seconds a lease lives without renewal."""
        return self._settings.lease_ttl

    @property
    def held(self) -> tuple[Lease, ...]:
        """The leases this throttle holds and renews (degraded ones too). For a session
        throttle, the session leases it took and has not seen released (a release by another
        process of the session is told to every throttle of the session, best effort: a missed
        event leaves the lease listed until this throttle closes)."""
        held = self._keeper.leases()
        return held if self._degraded is None else held + self._degraded.leases()

    def __repr__(self) -> str:
        state = "open" if self._task_group is not None else "closed"
        return (
            f"<Throttle owner={self._settings.owner_id!r} {self._backend!r} "
            f"holding {len(self._held)}, waiting {len(self._line.waiting)} ({state})>"
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

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Throttle:
        if self._stack is not None:
            raise ThrottleError("this Throttle is already open; enter it only once")
        loop = current_token().backend_class
        self._now = loop.current_time
        for part in (self._keeper, self._line, self._pools, self._degraded):
            if part is not None:
                part.use_loop(loop)
        await self._backend.open()
        try:
            await self._policy.open()  # the published policy, before anything is decided
            await self._pools.publish()
        except BaseException:
            if self._close_backend:
                with anyio.CancelScope(shield=True):
                    await self._backend.aclose()
            raise
        async with AsyncExitStack() as stack:
            if self._close_backend:
                stack.push_async_callback(self._backend.aclose)
            if self._degraded is not None:
                await stack.enter_async_context(self._degraded.inner)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)
            await task_group.start(self._listen)
            task_group.start_soon(self._keeper.heartbeat, self._line)
            interval = self._settings.renew_interval
            line = self._line
            waiting = lambda: bool(line.waiting)
            task_group.start_soon(self._policy.watch, interval, waiting, line.wake_all)
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
        self._task_group = None  # closed: callers in line give up, nobody new is let in
        try:
            # The waiters first: each withdraws from its line before a slot is given back
            # below, so none of them is handed a slot once the throttle is closing.
            await self._line.stop()
            await self._keeper.release_all()
        finally:
            await stack.aclose()

    def _check_open(self) -> None:
        if self._task_group is None:
            raise ThrottleError(
                "this Throttle is not open: use it as `async with Throttle.from_url(...) as t:`"
            )

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
        return await self._acquiring(number, token, timeout, limit, callee, priority)

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
        now = self._now
        started = now()
        try:
            lease = await self._acquiring(number, token, timeout, limit, callee, priority)
        except (AcquireTimeout, NumberUnavailable) as exc:
            self._hooks.emit(refusal(exc.number, exc, now() - started))
            raise
        except anyio.get_cancelled_exc_class():
            self._hooks.emit(Cancelled(number, now() - started))
            raise
        self._hooks.admitted(lease, now() - started)
        return lease

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
            if self._stack is None and (
                lease.released
                or (self._settings.session is None and (lease.number, lease.token) in self._held)
            ):
                # The throttle is closing: it gives back every lease it holds (not a
                # session's: those stay with the session, and the failure is told below).
                return
            logger.warning(
                "could not release %s (%s); it expires within %s s",
                lease,
                exc,
                self._settings.lease_ttl,
                extra=lease_log(lease, self._settings.owner_id),
            )

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
        if self._degraded is not None and self._degraded.holds(lease):
            return await self._degraded.release(lease) is ReleaseOutcome.RELEASED
        return await self._keeper.release(lease) == _RELEASED

    async def end_call(self, lease: Lease) -> ReleaseOutcome:
        """Give the slot back when the call ends, as :meth:`release` does, and say what was
        found: ``RELEASED`` (the lease was live: the call was counted all along), ``EXPIRED``
        (the lease had lapsed, its renewals or its session's keep-alives having stopped: the
        call ran uncounted for a while) or ``UNKNOWN`` (no such lease: never taken, already
        released, or lapsed more than four lease TTLs ago).

        :raises BackendUnavailable: as :meth:`release`
        """
        if self._degraded is not None and self._degraded.holds(lease):
            return await self._degraded.release(lease)
        return _OUTCOMES.get(await self._keeper.release(lease), ReleaseOutcome.UNKNOWN)

    async def keepalive(self) -> None:
        """Keep this throttle's session alive for ``lease_ttl`` seconds from now (by the
        backend's clock; never shortening it): every lease of the session, taken by any
        process, lives on until then. One call to the backend, whatever the session holds. Call
        it at least every ``lease_ttl`` seconds (every third of it leaves room for a slow call)
        when nothing else keeps the session alive.

        :raises ThrottleError: if the throttle has no session
        :raises BackendUnavailable: if the backend failed
        """
        await self._keeper.keepalive()

    # -- background work -----------------------------------------------------------------------

    async def _listen(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        await self._backend.listen(self._settings.owner_id, self._on_event, task_status=task_status)

    def _on_event(self, kind: str, number: str, token: str) -> None:
        """The backend's word, routed to the part it concerns."""
        if kind == "granted" or kind == "nudged":  # (the common case first)
            waiter = self._line.waiting.get((number, token))
            if waiter is not None:
                waiter.wake(kind == "granted")
        elif kind == "resync":  # events may have been missed: every waiter asks again
            self._keeper.resynced()
            self._line.wake_all()
        elif kind == "released":
            self._keeper.released_elsewhere((number, token))

    async def _renew_all(self) -> None:
        """One heartbeat now (the heartbeat task does it every ``renew_interval``)."""
        await self._keeper.renew_all(self._line)
