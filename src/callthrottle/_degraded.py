"""Degraded mode: while the backend cannot be reached, each number admits a share of its cap
from an in-process throttle, counting this process's calls only (see ``degraded_share``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from ._errors import BackendUnavailable
from ._events import LeaseLost, Released
from ._expiry import refusal_if_lapsed
from ._loop import OnLoop
from ._models import Lease, ReleaseOutcome
from ._numbers import normalize_number
from ._settings import DEGRADED_SUFFIX
from .backends import MemoryBackend

if TYPE_CHECKING:
    from ._events import Event
    from ._hooks import Hooks
    from ._line import Line
    from ._plans import Plans
    from ._settings import Settings
    from ._throttle import Throttle

__all__ = ("Degraded",)

logger = logging.getLogger("callthrottle")


class Degraded(OnLoop):
    """The in-process fallback of one throttle: ``inner``, a throttle of the class ``make``
    on a memory backend, entered and closed with it, holds the leases taken while the backend
    was unreachable.

    It remembers which leases it handed out (and when: for how long one was held), forgetting
    those the inner throttle reports released or lost, so that a release finds its way here
    in one look-up whoever calls it.
    """

    __slots__ = ("_hooks", "_plans", "_settings", "_since", "_taken", "inner")

    def __init__(
        self, make: type[Throttle], settings: Settings, plans: Plans, hooks: Hooks
    ) -> None:
        super().__init__()
        self.inner = make(
            MemoryBackend(),
            default_limit=settings.default_limit,
            lease_ttl=settings.lease_ttl,
            max_hold=settings.max_hold,
            owner_id=settings.owner_id + DEGRADED_SUFFIX,
            # Paid periods are judged by this throttle, with the policy it follows (below).
            config=settings.config.without_terms(),
            default_region=settings.region,
        )
        self._settings = settings
        self._plans = plans
        self._hooks = hooks
        self._since: float | None = None  # when the backend was last found unreachable
        self._taken: dict[tuple[str, str], float] = {}  # (number, token) -> when it was taken
        self.inner.add_hook(self._on_inner_event)

    def _on_inner_event(self, event: Event) -> None:
        if isinstance(event, (LeaseLost, Released)):
            self._taken.pop((event.number, event.token), None)
        if isinstance(event, LeaseLost) and self._hooks.installed:
            self._hooks.emit(event)  # the losses of degraded leases are this throttle's

    def holds(self, lease: Lease) -> bool:
        """Whether ``lease`` was taken here (it is given back here)."""
        if not isinstance(cast("object", lease), Lease):
            return False  # the throttle's own release says what is wrong with it
        return lease.degraded or (lease.number, lease.token) in self._taken

    def leases(self) -> tuple[Lease, ...]:
        return self.inner.held

    def _backend_is_back(self) -> None:
        """An acquire went through the backend: if it was unreachable, say it is back."""
        if self._since is None:
            return
        self._since = None
        logger.warning(
            "the backend is back: calls use it again (leases taken while degraded stay "
            "in-process until released)",
            extra={"owner": self._settings.owner_id},
        )

    async def acquire(
        self,
        line: Line,
        number: str,
        token: str | None,
        timeout: float | None,
        limit: int | None,
        callee: str | None,
        priority: int,
    ) -> Lease:
        """Take the slot on the backend (in ``line``); if the backend fails, from this
        process's share of the number's cap."""
        try:
            lease = await line.acquire(number, token, timeout, limit, callee, priority)
        except BackendUnavailable as exc:
            return await self._acquire_share(number, token, timeout, limit, callee, priority, exc)
        self._backend_is_back()
        return lease

    async def _acquire_share(
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
        share_of_cap = self._settings.degraded_share
        assert share_of_cap is not None
        number = normalize_number(number, self._settings.region)
        cap = self._plans.cap_for(number, limit)
        term = self._plans.configured(number)[2]
        refused = refusal_if_lapsed(number, term, self._settings.calendar())
        if refused is not None:
            raise refused
        share = max(1, int(cap * share_of_cap))
        if self._since is None:
            self._since = self._now()
            logger.error(
                "DEGRADED: the backend is unreachable (%s); until it is back, each number admits "
                "%s of its cap from this process alone (%s of %s on %s)",
                error,
                share_of_cap,
                share,
                cap,
                number,
                extra={"number": number, "owner": self._settings.owner_id},
            )
        lease = await self.inner.acquire(
            number, token=token, timeout=timeout, limit=share, callee=callee, priority=priority
        )
        lease.degraded = True
        self._taken[(lease.number, lease.token)] = self._now()
        return lease

    async def release(self, lease: Lease) -> ReleaseOutcome:
        """Give a degraded lease back, in-process."""
        key = (lease.number, lease.token)
        since = self._taken.get(key)
        outcome = await self.inner.end_call(lease)
        self._taken.pop(key, None)
        if outcome is ReleaseOutcome.RELEASED and self._hooks.installed:
            held_for = None if since is None else self._now() - since
            self._hooks.emit(Released(lease.number, lease.token, held_for))
        return outcome
