"""The contract every backend fulfils.

A backend owns the shared state of every number: who holds a slot (with a lease that expires
by the *backend's* clock), who waits in line, and how a waiter learns that its turn came. It
offers atomic primitives; :class:`~callthrottle.Throttle` decides policy on top of them
(validation, timeouts, cancellation, renewal, logging). Arguments reach a backend already
validated.

The contract is split by role (:class:`SlotStore`, :class:`EventSource`, :class:`PoolStore`,
:class:`PolicyStore`, :class:`PolicyBook`, :class:`Inspection`, :class:`Lifecycle`); :class:`Backend` is all of
them. What a backend is asked for is in ``_requests.py`` and ``_policy.py``, what it answers in
``_results.py``.

The conformance suite in ``tests/conformance`` is the executable form of this contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from .._models import Holder, Usage, WindowUsage
    from .._pools import MemberSpec
    from .._rates import GroupPlan, RatePlan
    from ._policy import GroupPolicyChange, PolicyChange, Published, RuntimePolicy
    from ._requests import AcquireRequest, PickRequest
    from ._results import AcquireResult, PickResult, RenewState, RestoreOutcome

__all__ = (
    "ENDED_KEPT", "EXPIRED_KEPT", "OWN_TAGS", "POLICY_HISTORY", "RESTORE_WITHIN",
    "SESSION_HOLD_MAX", "Backend", "EventListener", "EventSource", "Inspection", "Layout",
    "Lifecycle", "PolicyBook", "PolicyStore", "PoolStore", "SlotStore", "Views",
)  # fmt: skip

#: Called by a backend from its listener when something happens to a lease of the owner:
#: ``listener(kind, number, token)`` with kind ``"granted"`` (a queued request was handed a
#: slot), ``"released"`` (another process released the owner's lease) or ``"nudged"`` (the
#: request is now first in line and should ask again, to learn when the next slot may free);
#: ``listener("resync", "", "")`` when events may have been missed (a subscription was lost and
#: restored): every waiting request should ask again.
#: Must not block.
EventListener = Callable[[str, str, str], None]


class Layout(Protocol):
    """Where numbers live: see :meth:`Backend.use_layout` (a :class:`Config` is one)."""

    def tag_for(self, number: str) -> str:
        """The hash tag of the number's keys."""
        ...

    def groups_for(self, number: str) -> tuple[GroupPlan, ...]:
        """The groups whose limits apply to the number, in a fixed order."""
        ...

    def pool_numbers(self) -> Mapping[str, Sequence[str]]:
        """The configured pools' numbers, pool by pool in the order configured (where a Redis
        Cluster puts a pool and its numbers, see ``backends/_keys.py``)."""
        ...


class _OwnTags:
    """The default layout: every number is its own hash tag, in no group."""

    def tag_for(self, number: str) -> str:
        return number

    def groups_for(self, number: str) -> tuple[GroupPlan, ...]:
        return ()

    def pool_numbers(self) -> Mapping[str, Sequence[str]]:
        return {}


OWN_TAGS: Layout = _OwnTags()


#: A lease is counted again (:meth:`Backend.restore`) only within this many TTLs of its last
#: renewal; a lease ended for good is recorded for ENDED_KEPT TTLs, one more, so the record
#: outlives any attempt (with a TTL to spare for the request's way and clock drift).
RESTORE_WITHIN = 3
ENDED_KEPT = 4


#: The longest a session lease lives when it has no ``max_hold``: a day. A session kept alive
#: for ever cannot hold a slot for ever through a release that was lost.
SESSION_HOLD_MAX = 86_400.0

#: A lease dropped because it lapsed (not renewed, or its session died) is recorded for this
#: many times its TTL, so that a release arriving later reports it expired, not unknown.
EXPIRED_KEPT = 4


class SlotStore(Protocol):
    """Leases on numbers: taken (or a place in line), given back, kept alive, counted again.
    The hot path: one round trip per acquire and per release on Redis."""

    async def acquire(self, request: AcquireRequest, *, enqueue: bool) -> AcquireResult:
        """Take a slot for the request's token, or queue it, atomically (one round trip on
        Redis).

        A session lease (``request.session``): the acquire keeps the session alive for
        ``ttl`` more (never shortening it) when the token is granted or queued.

        Rate windows (``request.rates``): a call is admitted only if every window has room,
        and counted in them when admitted. A request with windows is never handed a slot while
        it waits: it is nudged to ask again when first in line with a slot free, so that its
        windows are checked (so is any waiter once windows are set at run time or a warm-up
        began).

        A caller waiting for a full trunk or tenant waits in the group's line, first come first
        served: a slot of the group is free for a caller only when the callers ahead of it
        there leave one. A caller waits in one line at a time.

        Expired leases and waiters are dropped first, and waiters whose turn came are granted.
        A slot is granted only when fewer than the cap in force are live *and* nobody waits
        ahead (first come, first served). Otherwise the token is queued when ``enqueue`` is
        true, or nothing is written. Calling again with a token that holds or waits for the
        same owner reports its state (and refreshes its place in line): a retry after an
        ambiguous failure is safe.
        """
        ...

    async def release(self, number: str, token: str, releaser: str, pool: str | None = None) -> int:
        """Give the token's slot back and hand it to the next waiter, atomically.

        Any process may release any lease; if ``releaser`` is not the lease's owner, the owner
        is told (``"released"``), and the release is recorded as final: the owner, cut off
        meanwhile, cannot count the lease again (see :meth:`restore`). With ``pool`` (the lease
        was picked from it), the pool's record of the number's load is brought up to date. One
        round trip on Redis.

        A lease dropped because it lapsed is remembered for :data:`EXPIRED_KEPT` times its TTL,
        so that its release then reports it expired.

        :return: a :class:`ReleaseState`: 1 if a live lease was released, 2 if the lease had
            lapsed (not renewed in time, or its session died), 0 if there was none (unknown or
            already released). A backend may return a bool (True: 1, False: 0).
        """
        ...

    async def abandon(self, number: str, token: str, owner: str) -> None:
        """Drop the owner's token from the line and give back any slot it was granted, atomically.

        Used when an acquire is cancelled, times out or fails with an unknown outcome.
        """

    async def renew(
        self, owner: str, items: Sequence[tuple[str, str]], ttl: float = 0.0
    ) -> list[RenewState]:
        """Extend the leases and keep alive the places in line of ``(number, token)`` items.
        ``ttl``: the renewer's lease TTL, for a server that may have lost its data (LOST is
        told for as long as its fence lasts under that TTL; 0: unknown).

        A lease is extended by the TTL it was taken with, never past its ``max_hold``. A session
        lease is not extended (its session is, by :meth:`keepalive`): it reports HELD while it
        lives. All items go in one batch (one round trip on a single Redis server).
        """
        ...

    async def keepalive(self, session: str, ttl: float) -> bool:
        """Keep the session alive for ``ttl`` seconds from now by the backend's clock (never
        shortening it): its leases live on until then. Once that time passes with no other
        keep-alive or acquire in the session, every lease of the session lapses at once (it
        stops counting, and is dropped, recorded as expired, when its number is next settled).
        Its cost does not grow with the leases held (one round trip on a single Redis server).

        :return: whether the server may have lost leases (a Redis restart, failover or flush:
            the fence holds new grants): the session's holders should look for theirs
        """

    async def restore(self, request: AcquireRequest, *, age: float = 0.0) -> RestoreOutcome:
        """Count again a lease the backend lost (a Redis restart without persistence, a
        failover to a replica that lacked it) while its call is still up: the request's
        lease, held by its owner for ``ttl`` seconds (at most ``max_hold`` more), in its rates'
        groups, granted ``age`` seconds ago. It is counted even past the cap, so that new calls
        wait until the number really has room, and not again in any rate window.

        A lease ended for good is never counted again: released by another process (see
        :meth:`release`), or live when :meth:`Inspection.reset_number` or
        :meth:`Inspection.release_owner` dropped it. Such an end leaves a record of the token on the number for :data:`ENDED_KEPT` times the
        lease's TTL (then it lapses: an idle number keeps nothing for ever); a holder asks only
        within :data:`RESTORE_WITHIN` TTLs of its last renewal, so the record outlives the asking.
        The record is the owner's: the owner's next lease of the token (a call ID used again,
        granted or queued by :meth:`acquire`) drops it, another owner's does not.

        :return: RESTORED if the owner holds the token now, TAKEN if the token is another's,
            ENDED if it was ended for good (nothing is written)
        """
        ...


class EventSource(Protocol):
    """How a waiter learns that its turn came, or that its lease was released elsewhere."""

    async def listen(
        self, owner: str, listener: EventListener, *, task_status: TaskStatus[None]
    ) -> None:
        """Deliver the owner's lease events to ``listener`` until cancelled.

        Calls ``task_status.started()`` once events can no longer be missed. Delivery is best
        effort: the throttle also learns of grants from :meth:`SlotStore.renew` and by
        retrying :meth:`SlotStore.acquire`, so a lost event delays a waiter but never strands it.
        """


class PoolStore(Protocol):
    """Pools of numbers: their members, and a slot taken from any suitable one."""

    async def pool_update(
        self, pool: str, add: Mapping[str, MemberSpec], remove: Sequence[str], policy: int = 0
    ) -> int:
        """Add numbers to ``pool`` (or update their specs) and take others out; returns how
        many numbers the pool has afterwards, or -1 when a newer published policy than
        ``policy`` (the version the specs come from, see :attr:`AcquireRequest.policy`) is in
        force: then nothing is written. One round trip on Redis.

        :raises InvalidArgument: as :meth:`check_pool_members` (nothing is written)
        """
        ...

    def check_pool_members(self, pool: str, numbers: Iterable[str]) -> None:
        """Whether ``numbers`` may be in ``pool`` where they live (on a Redis Cluster, a pool's
        numbers share its slot), without asking the backend.

        :raises InvalidArgument: naming the numbers that may not
        """
        ...

    async def pool_members(self, pool: str) -> list[str]:
        """The pool's numbers, in their round-robin order."""
        ...

    async def pick(self, request: PickRequest, *, wait: bool = False) -> PickResult:
        """Take a slot for the request's token on the first of at most ``tries`` numbers of
        its pool, in the strategy's order, that admits the call under all of its limits (as
        :meth:`SlotStore.acquire` with ``enqueue=False`` would decide for each). A number that
        cannot take the call is looked at after the others by later picks.

        Callers waiting on the pool are served first come, first served: while any wait, only
        the first in line picks; anyone else gets QUEUED (``wait``: now in line, for ``ttl``
        unless it asks again) or, trying once, REFUSED. With ``wait``, a caller nothing
        admitted joins the line. A caller that got a slot leaves the line; the next first in
        line is told (``"nudged"`` on number ``"pool:<pool>"``), and so is the first in line
        whenever a lease picked from the pool is released.

        One round trip on Redis; the cost grows with ``tries``, not with the pool's size."""
        ...

    async def pool_leave(self, pool: str, token: str, owner: str) -> None:
        """The caller stops waiting on ``pool`` (the next in line is told if it was first)."""
        ...


class PolicyStore(Protocol):
    """Runtime policy of numbers and groups: caps, states, rate windows set while running."""

    async def set_policy(self, number: str, change: PolicyChange) -> None:
        """Change the number's runtime policy atomically (see :class:`PolicyChange`); every
        process sees it at once. Waiters are granted at once if the cap went up, and asked to
        try again (a number that no longer admits calls then refuses them)."""

    async def get_policy(self, number: str) -> RuntimePolicy:
        """The number's runtime policy (read only).

        A carrier reaction that lapsed is left out: a lowered cap once it lapsed, and the
        state, reason and end of a ``cooling`` state once it ended. A policy that holds
        nothing else is forgotten with it (also by :meth:`Inspection.known_numbers`): on Redis
        its key expires."""
        ...

    async def set_group_policy(self, group: GroupPlan, tag: str, change: GroupPolicyChange) -> None:
        """Set a group's cap or rate windows at run time, replacing the configured ones, for
        every process at once; its waiters are asked to try again."""


class Inspection(Protocol):
    """What an operator reads of the shared state, and how it clears a number or an owner."""

    async def usage(self, number: str, limit: int) -> Usage:
        """Live leases and waiters on the number, and the cap in force (read only)."""
        ...

    async def holders(self, number: str) -> list[Holder]:
        """The number's live leases, oldest expiry first (read only)."""
        ...

    async def oldest_wait(self, number: str) -> float | None:
        """Seconds the longest-waiting live caller in the number's line has waited (None:
        nobody waits). Read only."""
        ...

    async def window_usage(self, number: str, rates: RatePlan) -> list[WindowUsage]:
        """The calls each rate window in force on ``number`` counts now: its runtime windows,
        else ``rates``' own, and its warm-up's daily cap while warming. Read only."""
        ...

    async def group_usage(self, group: GroupPlan, tag: str) -> Usage:
        """Live leases and waiters of a group (``"trunk:<name>"`` ...), and its cap (read only).
        ``tag`` is the hash tag of its numbers."""
        ...

    async def known_numbers(self) -> list[str]:
        """Every number the backend holds state for (live leases, waiters, a runtime policy),
        sorted. Read only; on Redis a SCAN of the key prefix (several round trips)."""
        ...

    async def number_tags(self) -> dict[str, list[str]]:
        """Where the keys of every number the backend holds state for are: the hash tags they
        are under (more than one when processes with different configurations wrote them;
        only those holding its leases or line when some do), sorted; empty for a backend
        without hash tags (memory). Read only; a SCAN on Redis."""
        ...

    async def known_pools(self) -> dict[str, list[str]]:
        """Every pool the backend holds numbers for (whoever published it), by name, with its
        numbers in round-robin order. Read only; on Redis a SCAN of the key prefix."""
        ...

    async def reset_number(self, number: str) -> tuple[int, int]:
        """Drop every lease and every place in line of the number, atomically: the leases'
        owners are told (``"released"``), the waiters are nudged to ask again (they find the
        number empty). Its runtime policy stays.

        :return: (live leases removed, live waiters removed)
        """
        ...

    async def release_owner(self, owner: str) -> int:
        """Release every lease of ``owner`` and drop its places in line: on every number, and
        in the lines of pools and groups (the next in line is told when the first place was
        the owner's). For a session's name, the session ends too (its record is deleted).

        :return: how many leases and places in line were removed
        """
        ...


class PolicyBook(Protocol):
    """The carrier policy published for every process (see ``callthrottle._policy_doc``): one
    document, versioned, the versions it replaced kept for a restore. The decisions use it
    through :attr:`AcquireRequest.policy`: a request made with an older version than the
    newest published is refused (:attr:`Outcome.STALE`)."""

    async def published_policy(self, newer_than: int = 0) -> Published | None:
        """The policy in force, or None when none was ever published, or when its stamp is
        not above ``newer_than`` (the caller's: then its document is not even read). Read
        only."""
        ...

    async def policy_history(self, count: int) -> list[Published]:
        """Up to ``count`` of the versions published before the one in force, newest first.
        Read only."""
        ...

    async def publish_policy(
        self,
        document: str,
        digest: str,
        *,
        expected: int,
        by: str,
        comment: str,
        floor: int = 0,
    ) -> Published | int:
        """Publish ``document`` as the next version, if the one in force is still version
        ``expected`` (0: none); else write nothing and return the version in force. The new
        version is above the one in force, above ``floor`` and above the stamp of the slot
        the policy is kept on (a server that lost the policy, not every stamp, numbers the
        next one above what processes may still decide with). The one replaced is kept (the
        newest :data:`POLICY_HISTORY` of them). Then :meth:`raise_stamps` binds every slot.
        The same publish asked again (its reply lost) answers as it did."""
        ...

    async def raise_stamps(self, version: int) -> int:
        """Raise every slot's policy stamp to ``version`` (see ``policy_stale``): from then on
        a request made with an older version is refused, by every process. Return the
        highest stamp found (above ``version`` when processes decided with a version the
        backend lost the policy of)."""
        ...


#: How many of the versions replaced by a newer published policy a backend keeps.
POLICY_HISTORY = 50


class Views(Protocol):
    """What an operator's view reads, and nothing else: the read-only calls of
    :class:`Inspection`, :class:`PolicyStore` and :class:`PoolStore` (documented there), and
    opening and closing. None of them writes: on Redis each is a function registered
    ``no-writes`` and called with ``FCALL_RO`` (or a SCAN), so the server refuses any write."""

    async def usage(self, number: str, limit: int) -> Usage: ...
    async def holders(self, number: str) -> list[Holder]: ...
    async def oldest_wait(self, number: str) -> float | None: ...
    async def window_usage(self, number: str, rates: RatePlan) -> list[WindowUsage]: ...
    async def group_usage(self, group: GroupPlan, tag: str) -> Usage: ...
    async def known_numbers(self) -> list[str]: ...
    async def number_tags(self) -> dict[str, list[str]]: ...
    async def known_pools(self) -> dict[str, list[str]]: ...
    async def get_policy(self, number: str) -> RuntimePolicy: ...
    async def pool_members(self, pool: str) -> list[str]: ...
    async def published_policy(self, newer_than: int = 0) -> Published | None: ...
    async def policy_history(self, count: int) -> list[Published]: ...
    def use_layout(self, layout: Layout) -> None: ...
    async def open(self) -> None: ...
    async def aclose(self) -> None: ...


class Lifecycle(Protocol):
    """Setting a backend up and down."""

    @property
    def pools_place_numbers(self) -> bool:
        """Whether the first configured pool that lists a number decides where its keys are
        (on a Redis Cluster, a pool's numbers share its slot): then a change of pools moves
        numbers."""
        ...

    def use_layout(self, layout: Layout) -> None:
        """Where numbers live: their hash tag (all keys of one decision share the number's tag,
        its tenant's, so the decision touches one Cluster slot; callee windows count calls from
        every number with the same tag) and their groups (trunk, tenant). Every throttle sharing
        the backend must use the same layout. The default: every number is its own tag, in no
        group."""

    async def open(self) -> None:
        """Prepare for use on the running event loop; idempotent.

        :raises UnsupportedEventLoop: if the backend cannot run on this event loop
        :raises BackendUnavailable: if the backend cannot be reached
        """

    async def aclose(self) -> None:
        """Release connections. Leases stay on the server until they expire."""

    async def lift_fence(self) -> None:
        """End at once the fence that holds new grants after the backend may have lost its
        data (a Redis restart, failover or flush: see README, "When Redis loses its data"), on
        every server: for an operator who knows that no call is up, e.g. a new deployment. A
        backend that cannot lose its data has none: nothing happens."""
        ...


class Backend(
    SlotStore, EventSource, PoolStore, PolicyStore, PolicyBook, Inspection, Lifecycle, Protocol
):
    """Shared slot state for many throttles (processes, hosts): every role at once.

    A throttle's parts each take the roles they use (the line :class:`SlotStore`, the operator
    :class:`PolicyStore` and :class:`Inspection` ...); :class:`~callthrottle.Throttle` takes a
    whole backend."""
