"""A number's (a group's) runtime policy as a backend takes and gives it: a change
(:class:`PolicyChange`, :class:`GroupPolicyChange`) and what is in force
(:class:`RuntimePolicy`).

A change names only what it changes: each field left at ``Keep.KEEP`` stays as it is, and None
removes it. Times are relative (seconds from now, seconds ago): the backend makes them absolute
by its own clock, so that the processes sharing it need not agree on the time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, NamedTuple

if TYPE_CHECKING:
    from .._rates import Window

__all__ = ("KEEP", "GroupPolicyChange", "Keep", "PolicyChange", "Published", "RuntimePolicy")


class Keep(enum.Enum):
    """A field of a change that holds ``Keep.KEEP`` (its default) stays as it is."""

    KEEP = "keep"

    def __repr__(self) -> str:
        return "KEEP"


#: A field of a change left at this stays as it is (None removes it).
KEEP: Final = Keep.KEEP


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """A change of a number's runtime policy (:meth:`Backend.set_policy`).

    :ivar cap: overrides the cap callers ask for
    :ivar state: the number's state (``"disabled"``, ``"cooling"``, ``"warming"`` ...)
    :ivar reason: why the state was set
    :ivar until: seconds from now by the backend's clock: the end of a cool-down
    :ivar lowered: a lowered cap, and seconds from now until it lapses (a carrier's reaction):
        while it lasts, the cap in force is at most this
    :ivar rates: rate windows replacing the caller's
    :ivar warming: True: warming began now, by the backend's clock (the warm-up's daily caps
        apply while it is set, also once a carrier's cool-down set meanwhile has ended)
    :ivar reaction: the change is a carrier's reaction (not stored): it then leaves ``state``,
        ``reason``, ``until`` and ``warming`` as they are when the state in force keeps the
        number from admitting calls and is not a cool-down (an operator's flag outlives a
        carrier's cool-down)
    """

    cap: int | Keep | None = KEEP
    state: str | Keep | None = KEEP
    reason: str | Keep | None = KEEP
    until: float | Keep | None = KEEP
    lowered: tuple[int, float] | Keep | None = KEEP
    rates: tuple[Window, ...] | Keep | None = KEEP
    warming: Literal[True] | Keep | None = KEEP
    reaction: bool = False


@dataclass(frozen=True, slots=True)
class GroupPolicyChange:
    """A change of a group's runtime policy (:meth:`Backend.set_group_policy`), replacing its
    configured limits.

    :ivar cap: the group's cap
    :ivar rates: the group's rate windows
    """

    cap: int | Keep | None = KEEP
    rates: tuple[Window, ...] | Keep | None = KEEP


@dataclass(frozen=True, slots=True)
class RuntimePolicy:
    """A number's runtime policy in force (:meth:`Backend.get_policy`); None: not set.

    :ivar cap: the cap that overrides the callers'
    :ivar state: the number's state
    :ivar reason: why the state was set
    :ivar until: seconds from now until the cool-down ends
    :ivar lowered_cap: a lowered cap (a carrier's reaction)
    :ivar lowered_for: seconds from now until the lowered cap lapses
    :ivar rates: rate windows replacing the caller's
    :ivar warming_for: seconds since warming began
    """

    cap: int | None = None
    state: str | None = None
    reason: str | None = None
    until: float | None = None
    lowered_cap: int | None = None
    lowered_for: float | None = None
    rates: tuple[Window, ...] | None = None
    warming_for: float | None = None


class Published(NamedTuple):
    """One version of the carrier policy published to a backend (see ``_policy_doc``).

    :ivar version: 1 for the first published, then one more each time
    :ivar digest: the SHA-256 of ``document`` (hex): two documents with the same digest say the
        same
    :ivar document: the policy, as canonical JSON (``callthrottle._policy_doc``)
    :ivar published_at: when, in seconds since the epoch, by the backend's clock
    :ivar by: who published it (``user@host``)
    :ivar comment: why, as they said
    :ivar stamp: what requests made with it carry (:attr:`AcquireRequest.policy`): when it was
        published, in ms, made greater than every stamp before it (see ``policy_stale``)
    """

    version: int
    digest: str
    document: str
    published_at: float
    by: str
    comment: str
    stamp: int
