"""The lease keeper: the leases a throttle holds, their heartbeat, and what happens when the
backend lost them (counted again, or reported lost) or another process released them."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

import anyio

from ._errors import InvalidArgument, ThrottleError
from ._events import LeaseLost, Released, Restored
from ._loop import OnLoop
from ._models import Lease
from ._numbers import normalize_number
from ._validate import check_token
from .backends import AcquireRequest, MemoryBackend, ReleaseState, RenewState, RestoreOutcome
from .backends._base import RESTORE_WITHIN

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._hooks import Hooks
    from ._plans import Plans
    from ._settings import Settings
    from .backends import SlotStore

    Key = tuple[str, str]  # (number, token)

__all__ = ("CLEANUP_TIMEOUT", "Held", "Keeper", "lease_log")

logger = logging.getLogger("callthrottle")

_RELEASED = ReleaseState.RELEASED  # (found once: an enum member read from its class is slow)

#: How long cleanup (giving back a slot, releasing at close) may take before it is left to
#: lease expiry.
CLEANUP_TIMEOUT = 5.0


@dataclass(slots=True)
class Held:
    lease: Lease
    renewed_at: float  # local monotonic time just before the last successful acquire/renew
    final: bool  # the backend will not extend the lease again: max_hold ends it
    since: float  # local monotonic time just before it was taken


def _release_now(backend: SlotStore) -> Callable[[str, str, str, str | None], int] | None:
    """The backend's release as a plain call, when it has one: the memory backend's (unless a
    subclass replaced its release), which has nothing to wait for. A call that never yields
    cannot be cancelled, so it needs no shield, and gives the slot back in the same turn of
    the event loop (as ``anyio.CapacityLimiter.release`` does)."""
    if isinstance(backend, MemoryBackend) and type(backend).release is MemoryBackend.release:
        return backend.release_now
    return None


def lease_log(lease: Lease, owner_id: str) -> dict[str, str]:
    """What a log record says of a lease."""
    return {"number": lease.number, "token": lease.token, "owner": owner_id}


class Places(Protocol):
    """What the keeper needs of the line: the places it renews, and how to wake them."""

    def queued(self) -> list[Key]: ...

    def wake(self, key: Key, granted: bool) -> None: ...


class Keeper(OnLoop):
    """Keeps the leases one throttle took: ``held`` maps (number, token) to each.

    One heartbeat renews them all (and the line's places) every ``renew_interval``, or at
    once when the backend may have lost them (``restoring`` is then set until that renewal
    is done, so that new calls wait for the lost leases to be counted again).
    """

    __slots__ = (
        "_backend",
        "_check_open",
        "_final",
        "_hooks",
        "_owner_id",
        "_plans",
        "_release_now",
        "_renew_soon",
        "_resynced_at",
        "_settings",
        "held",
        "restoring",
    )

    def __init__(
        self,
        backend: SlotStore,
        settings: Settings,
        plans: Plans,
        hooks: Hooks,
        check_open: Callable[[], None],
    ) -> None:
        super().__init__()
        self._backend = backend
        self._settings = settings
        self._owner_id = settings.owner_id
        self._final = settings.final
        self._plans = plans
        self._hooks = hooks
        self._check_open = check_open
        self._release_now = _release_now(backend)
        self.held: dict[Key, Held] = {}
        self._resynced_at = -float("inf")  # when the backend's connection was last replaced
        self._renew_soon: anyio.Event | None = None  # set: the heartbeat renews at once
        self.restoring: anyio.Event | None = None  # set once lost leases are counted again

    def take(self, key: Key, lease: Lease) -> None:
        """Keep ``lease``, just granted."""
        now = self._now()
        self.held[key] = Held(lease, now, self._final, now)

    def leases(self) -> tuple[Lease, ...]:
        return tuple(h.lease for h in self.held.values())

    # -- releasing -------------------------------------------------------------------------

    async def release(self, lease: Lease, *, closing: bool = False) -> int:
        """Give ``lease`` back (see :meth:`Throttle.release`); the backend's ReleaseState.

        ``closing``: give back a lease this throttle took even though it is closing (or
        closed), which refuses every other call.
        """
        if not isinstance(cast("object", lease), Lease):
            raise InvalidArgument("lease", lease, "a Lease")
        number, token = lease.number, lease.token
        # A lease this throttle holds was validated when it was taken.
        mine = None
        if number.__class__ is str and token.__class__ is str:
            mine = self.held.get((number, token))
        if mine is None:
            number = normalize_number(number, self._settings.region)
            token = check_token(token)
            mine = self.held.get((number, token))
        key = (number, token)
        if not closing:
            self._check_open()
        pool = lease.pool
        if pool is None and mine is not None:
            pool = mine.lease.pool
        release_now = self._release_now
        if release_now is not None:  # a plain call: nothing can interrupt it, no shield needed
            try:
                outcome = release_now(number, token, self._owner_id, pool)
            finally:
                held = self.held.pop(key, None)
        else:
            with self._cancel_scope(shield=True):
                try:
                    # A backend may answer a bool (True: released): int() maps it to 1 or 0.
                    outcome = int(await self._backend.release(number, token, self._owner_id, pool))
                finally:
                    held = self.held.pop(key, None)
        if held is not None:
            held.lease._mark_released()
        if outcome == _RELEASED:
            lease._mark_released()
            if self._hooks.installed:
                held_for = None if held is None else self._now() - held.since
                self._hooks.emit(Released(number, token, held_for))
        return outcome

    async def release_all(self) -> None:
        """At close: give back every lease held (a session's stay with the session)."""
        held = list(self.held.values())
        if not held:
            return
        session = self._settings.session
        if session is not None:
            # The calls go on: another process of the session releases them, or they lapse
            # with the session once nobody keeps it alive.
            logger.info(
                "closing throttle of session %s: %d lease(s) it took stay with the session",
                session,
                len(held),
                extra={"owner": self._owner_id},
            )
            self.held.clear()
            return
        logger.warning(
            "closing throttle %s while it holds %d lease(s); giving them back",
            self._owner_id,
            len(held),
            extra={"owner": self._owner_id},
        )
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
            for item in held:
                try:
                    await self.release(item.lease, closing=True)
                except ThrottleError as exc:
                    logger.warning(
                        "could not release %s at close (%s); it expires within %s s",
                        item.lease,
                        exc,
                        self._settings.lease_ttl,
                        extra=lease_log(item.lease, self._owner_id),
                    )
        self.held.clear()

    def forget_all(self) -> None:
        """This throttle's own owner was released: every lease it held is gone."""
        now = self._now()
        for held in self.held.values():
            held.lease._mark_released()
            if self._hooks.installed:
                lease = held.lease
                self._hooks.emit(Released(lease.number, lease.token, now - held.since))
        self.held.clear()

    def released_elsewhere(self, key: Key) -> None:
        """Another process released a lease of this throttle (its owner's or session's)."""
        held = self.held.pop(key, None)
        if held is None:
            return
        held.lease._mark_released()
        if self._hooks.installed:
            held_for = self._now() - held.since
            self._hooks.emit(Released(key[0], key[1], held_for, elsewhere=True))
        logger.debug(
            "%s was released by another process",
            held.lease,
            extra=lease_log(held.lease, self._owner_id),
        )

    # -- keeping ---------------------------------------------------------------------------

    def resynced(self) -> None:
        """Events may have been missed (the backend's connection was replaced): the server may
        have lost leases, so the heartbeat looks for them at once."""
        self._resynced_at = self._now()
        if self.held and self._settings.restore_leases and self.restoring is None:
            self.restoring = anyio.Event()
        if self._renew_soon is not None:
            self._renew_soon.set()

    def may_have_lost(self, since: float) -> None:
        """The backend may have lost leases (it is fenced, or its connection was replaced):
        the heartbeat looks for this throttle's at once."""
        self._resynced_at = max(self._resynced_at, since)
        if self.held and self._settings.restore_leases and self.restoring is None:
            self.restoring = anyio.Event()
        if self._renew_soon is not None:
            self._renew_soon.set()

    async def keepalive(self) -> None:
        """See :meth:`Throttle.keepalive`."""
        session = self._settings.session
        if session is None:
            raise ThrottleError("this Throttle has no session to keep alive (see `session`)")
        self._check_open()
        kept_at = anyio.current_time()
        if await self._backend.keepalive(session, self._settings.lease_ttl):
            self.may_have_lost(kept_at)

    async def heartbeat(self, places: Places) -> None:
        """Renew every lease and place in line, for as long as the throttle is open."""
        while True:
            # Every renew_interval, or at once when the backend's connection was replaced: a
            # server that lost leases is told of the live ones before it admits many calls.
            self._renew_soon = soon = anyio.Event()
            if self.restoring is None:  # else leases may be lost: renew them now
                with anyio.move_on_after(self._settings.renew_interval):
                    await soon.wait()
            restoring = self.restoring  # new acquires wait for this renewal (or its failure)
            try:
                await self.renew_all(places)
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
                    len(self.held),
                    self._settings.lease_ttl,
                    extra={"owner": self._owner_id},
                )
            if restoring is not None:
                restoring.set()
                if self.restoring is restoring:
                    self.restoring = None

    def _keys_to_renew(self, restoring: bool) -> list[Key]:
        if self._settings.session is None:
            return list(self.held)
        # Once the backend's connection was replaced, the server may have lost them: they
        # are looked for (a renewal of a session lease only says whether it is held), and
        # counted again if gone. A throttle that does not keep its session alive hears of
        # no fence from a keep-alive: it looks for its leases at every heartbeat (one call
        # per number it holds leases on).
        return list(self.held) if restoring or not self._settings.keepalive else []

    async def renew_all(self, places: Places) -> None:
        """One heartbeat: renew every lease held and every place in line, in one call."""
        lease_ttl = self._settings.lease_ttl
        session = self._settings.session
        restoring = self.restoring is not None
        if session is not None and self._settings.keepalive:
            # Session leases live while the session does: one keep-alive serves them all (when
            # this throttle keeps the session alive); places in line are renewed as always.
            kept_at = anyio.current_time()
            if await self._backend.keepalive(session, lease_ttl):
                # The server may have lost leases (its connection need not have been
                # replaced: a flush): they are looked for as after a reconnect.
                self._resynced_at = max(self._resynced_at, kept_at)
                restoring = True
            if not restoring:  # kept alive: as if renewed (a restore needs that: _restore)
                for kept in self.held.values():
                    kept.renewed_at = max(kept.renewed_at, kept_at)
        keys = self._keys_to_renew(restoring) + places.queued()
        if not keys:
            return
        sent_at = anyio.current_time()
        states = await self._backend.renew(self._owner_id, keys, lease_ttl)
        now = anyio.current_time()
        forgotten: list[tuple[Key, Held]] = []
        for key, state in zip(keys, states, strict=True):
            held = self.held.get(key)
            if held is not None:
                if state is RenewState.HELD or state is RenewState.FINAL:
                    held.renewed_at = sent_at
                    held.final = state is RenewState.FINAL
                elif state is RenewState.GONE or state is RenewState.LOST:
                    if state is RenewState.LOST:  # the server may have lost it (a flush too)
                        self._resynced_at = max(self._resynced_at, sent_at)
                    if self._settings.restore_leases and self._lost_by_backend(held):
                        forgotten.append((key, held))
                    else:
                        self._forget(key, held, now)
                continue
            if state is not RenewState.QUEUED:
                # Granted (its notice was lost) or its place lapsed: either way, ask again.
                places.wake(key, state is RenewState.HELD or state is RenewState.FINAL)
        for key, held in forgotten:
            await self._restore(key, held, sent_at)

    def _lost_by_backend(self, held: Held) -> bool:
        """Whether a lease the backend no longer has was lost by it (not released, expired
        or ended by max_hold): last renewed before the backend's connection was replaced."""
        return not held.final and held.renewed_at <= self._resynced_at

    async def _restore(self, key: Key, held: Held, sent_at: float) -> None:
        """Count a lease the backend lost again (see ``restore_leases``), or report it lost."""
        lease = held.lease
        number = lease.number
        left = None
        if self._settings.max_hold is not None:
            left = self._settings.max_hold - (sent_at - held.since)
        restored = RestoreOutcome.TAKEN
        # Longer without a renewal, a release's record may have lapsed: it may have ended.
        stale = anyio.current_time() - held.renewed_at >= RESTORE_WITHIN * self._settings.lease_ttl
        if not stale and (left is None or left > 0):
            cap, plan, _ = self._plans.configured(number)
            try:
                request = AcquireRequest(
                    number, lease.token, self._owner_id, cap, self._settings.lease_ttl, left,
                    plan, self._settings.session is not None,
                )  # fmt: skip
                restored = await self._backend.restore(request, age=sent_at - held.since)
            except ThrottleError as exc:
                logger.warning(
                    "%s could not be counted again (%s)",
                    lease,
                    exc,
                    extra=lease_log(lease, self._owner_id),
                )
        if self.held.get(key) is not held:  # released meanwhile: give it back again
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
                extra=lease_log(lease, self._owner_id),
            )
        else:
            ended = restored is RestoreOutcome.ENDED
            over = left is not None and left <= 0  # its max_hold ran out meanwhile
            self._forget(key, held, anyio.current_time(), ended=ended, stale=stale, over=over)

    def _tell_gone(self, lease: Lease, held_for: float) -> None:
        if lease.lost_reason is not None:
            self._hooks.emit(LeaseLost(lease.number, lease.token, lease.lost_reason))
        else:
            self._hooks.emit(Released(lease.number, lease.token, held_for, elsewhere=True))

    def _forget(
        self,
        key: Key,
        held: Held,
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
        del self.held[key]
        lease = held.lease
        if ended:
            lease._mark_released()
            logger.info(
                "%s was released by another process or an operator while this process was "
                "cut off from the backend",
                lease,
                extra=lease_log(lease, self._owner_id),
            )
        elif stale:
            lease._mark_lost("expired")
            logger.warning(
                "%s went unrenewed for %s lease TTLs (backend outage) and is not counted again; "
                "the call may still be up",
                lease,
                RESTORE_WITHIN,
                extra=lease_log(lease, self._owner_id),
            )
        elif held.final or over:
            lease._mark_lost("max_hold")
            logger.warning(
                "%s reached max_hold and was dropped; the call may still be up",
                lease,
                extra=lease_log(lease, self._owner_id),
            )
        elif self._lost_by_backend(held):
            # Last renewed before the backend connection was replaced: the server lost it
            # (restarted without persistence, or failed over to a replica that lacked it).
            lease._mark_lost("backend")
            logger.warning(
                "%s was lost by the backend (restart or failover); the call may still be up "
                "and the number may carry one call over its cap until it ends",
                lease,
                extra=lease_log(lease, self._owner_id),
            )
        elif now - held.renewed_at >= self._settings.lease_ttl:
            lease._mark_lost("expired")
            logger.warning(
                "%s expired before it could be renewed (stalled process or backend outage); "
                "the number may carry one call over its cap",
                lease,
                extra=lease_log(lease, self._owner_id),
            )
        else:
            # Removed while it was still live: released by another process or an operator.
            lease._mark_released()
        if self._hooks.installed:
            self._tell_gone(lease, now - held.since)
