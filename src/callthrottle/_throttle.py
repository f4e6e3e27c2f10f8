"""The Throttle: policy on top of a backend's atomic primitives.

``Throttle`` is the facade (public methods and their documentation, the order of opening and
closing, the backend's events routed to the part they concern) over its parts: the options
(``_settings``), the plan book (``_plans``), hooks (``_hooks``), the line (``_line``: the hot
path), the lease keeper (``_keeper``), pools (``_pooling``), the operator's API
(``_operator``) and the in-process fallback (``_degraded``).
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio.lowlevel import current_token

from ._degraded import Degraded
from ._errors import AcquireTimeout, BackendUnavailable, NumberUnavailable, ThrottleError
from ._events import Cancelled, refusal
from ._hooks import Hooks
from ._keeper import Keeper, lease_log
from ._line import Line
from ._models import Holder, Lease, ReleaseOutcome, Usage, WindowUsage
from ._operator import Operator
from ._plans import Plans
from ._pooling import Pools
from ._settings import Settings, check_session_options, listed
from ._url import backend_from_url
from .backends import Backend, ReleaseState

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Callable, Iterable, Mapping
    from types import TracebackType

    from anyio.abc import TaskGroup

    from ._config import Config
    from ._health import NumberState, NumberStatus, Reaction
    from ._hooks import Hook

__all__ = ("Throttle",)

logger = logging.getLogger("callthrottle")

_OUTCOMES: dict[int, ReleaseOutcome] = {
    ReleaseState.RELEASED: ReleaseOutcome.RELEASED,
    ReleaseState.EXPIRED: ReleaseOutcome.EXPIRED,
}


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
    """

    __slots__ = (
        "_backend",
        "_close_backend",
        "_config",
        "_degraded",
        "_held",
        "_hooks",
        "_keeper",
        "_line",
        "_now",
        "_operator",
        "_plans",
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
        check_open = self._check_open
        self._keeper = Keeper(backend, settings, plans, self._hooks, check_open)
        self._line = Line(backend, settings, plans, self._hooks, self._keeper, check_open)
        self._pools = Pools(
            backend, settings, plans, self._hooks, self._line, self._keeper, check_open
        )
        self._operator = Operator(
            backend, settings, plans, self._hooks, check_open, self._keeper.forget_all
        )
        self._held = self._keeper.held  # the leases held, by (number, token)
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
        await self._pools.publish()
        async with AsyncExitStack() as stack:
            if self._close_backend:
                stack.push_async_callback(self._backend.aclose)
            if self._degraded is not None:
                await stack.enter_async_context(self._degraded.inner)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)
            await task_group.start(self._listen)
            task_group.start_soon(self._keeper.heartbeat, self._line)
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
        try:
            lease = await self._line.acquire(number, token, timeout, limit, callee, priority)
        except BackendUnavailable as exc:
            if self._degraded is None:
                raise
            return await self._degraded.acquire(
                number, token, timeout, limit, callee, priority, exc
            )
        if self._degraded is not None:
            self._degraded.backend_is_back()
        return lease

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
            try:
                lease = await self._line.acquire(number, token, timeout, limit, callee, priority)
            except BackendUnavailable as exc:
                if self._degraded is None:
                    raise
                lease = await self._degraded.acquire(
                    number, token, timeout, limit, callee, priority, exc
                )
            else:
                if self._degraded is not None:
                    self._degraded.backend_is_back()
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
                lease.released or (lease.number, lease.token) in self._held
            ):
                return  # the throttle is closing: it gives back every lease it holds
            logger.warning(
                "could not release %s (%s); it expires within %s s",
                lease,
                exc,
                self._settings.lease_ttl,
                extra=lease_log(lease, self._settings.owner_id),
            )

    # -- pools ---------------------------------------------------------------------------------

    async def add_to_pool(self, pool: str, numbers: Iterable[str]) -> int:
        """Add ``numbers`` to ``pool`` (created on first use), for every process; returns how
        many numbers the pool has now. Each number's cap, rate windows, trunk and tenant are
        taken from this throttle's configuration, as they are now.

        :raises InvalidArgument: on a bad pool name or number, before anything is written
        """
        return await self._pools.add(pool, numbers)

    async def remove_from_pool(self, pool: str, numbers: Iterable[str]) -> int:
        """Take ``numbers`` out of ``pool`` (their calls in progress are not touched); returns
        how many numbers the pool has now."""
        return await self._pools.remove(pool, numbers)

    async def pool_members(self, pool: str) -> list[str]:
        """The numbers of ``pool``, in round-robin order."""
        return await self._pools.members(pool)

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
        :raises InvalidArgument: on bad input, before anything is written; also, at once and
            whatever the ``timeout``, for a pool that is neither configured nor has numbers in
            the backend (a misspelt name; a pool made with :meth:`add_to_pool` is known while
            it has numbers). A configured pool is known without asking; the backend is asked
            only once a pick is refused, so no round trip is added on the way to a slot.
        """
        pools = self._pools
        return await pools.acquire_from(pool, token, timeout, callee, priority, strategy)

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
        if self._degraded is not None and self._degraded.holds(lease):
            return await self._degraded.release(lease) is ReleaseOutcome.RELEASED
        return await self._keeper.release(lease) == ReleaseState.RELEASED

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
        await self._backend.listen(self._settings.owner_id, self._on_event, task_status=task_status)

    def _on_event(self, kind: str, number: str, token: str) -> None:
        """The backend's word, routed to the part it concerns."""
        if kind == "resync":  # events may have been missed: every waiter asks again
            self._keeper.resynced()
            self._line.wake_all()
        elif kind == "granted" or kind == "nudged":
            self._line.wake((number, token), kind == "granted")
        elif kind == "released":
            self._keeper.released_elsewhere((number, token))

    async def _renew_all(self) -> None:
        """One heartbeat now (the heartbeat task does it every ``renew_interval``)."""
        await self._keeper.renew_all(self._line)
