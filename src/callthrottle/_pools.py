"""Caller-ID pools: named sets of numbers that a call can take any suitable one of."""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import InvalidArgument
from ._rates import NO_RATES, RatePlan

__all__ = ("DEFAULT_STRATEGY", "STRATEGIES", "MemberSpec", "PoolSettings", "check_strategy")

#: How a pool orders its numbers for a pick (the first that admits the call is taken):
#: ``least-loaded``: fewest calls up first (as last seen by a pick or a release through the
#: pool); ``round-robin``: each pick starts one number further along the pool's order.
STRATEGIES = ("least-loaded", "round-robin")
DEFAULT_STRATEGY = "least-loaded"


def check_strategy(strategy: object) -> str:
    if strategy not in STRATEGIES:
        raise InvalidArgument("strategy", strategy, f"one of {', '.join(STRATEGIES)}")
    return str(strategy)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """A pool from the configuration.

    :ivar numbers: its numbers (E.164), in order (round-robin follows it)
    :ivar strategy: see :data:`STRATEGIES`
    :ivar fallback: the pool to try when none of this pool's numbers can take a call
    """

    numbers: tuple[str, ...] = ()
    strategy: str = DEFAULT_STRATEGY
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """What a backend needs to admit a call on a pool member by itself: the hash tag of the
    number's keys, its cap and its rate plan (per-call parts, such as the callee, come with each
    pick). Written when the number joins the pool, by the throttle that adds it."""

    tag: str
    limit: int
    plan: RatePlan = NO_RATES
