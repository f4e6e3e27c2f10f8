"""Caller-ID pools: named sets of numbers that a call can take any suitable one of."""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import InvalidArgument
from ._rates import NO_RATES, RatePlan

__all__ = (
    "DEFAULT_STRATEGY", "STICKY_TTL", "STRATEGIES", "MemberSpec", "PoolSettings",
    "check_strategy",
)  # fmt: skip

#: How a pool orders its numbers for a pick (the first that admits the call is taken):
#: ``least-loaded``: fewest calls up first (as last seen by a pick or a release through the
#: pool), among equals the one longest at its load (the least recently picked or released);
#: ``round-robin``: each pick starts one number further along the pool's order; ``local``:
#: numbers in the callee's area first, then in its
#: region (the least loaded of a random sample of each), then least-loaded; ``sticky``: the
#: number the same callee was last called from (within ``sticky_ttl``), then least-loaded.
#:
#: Paid periods (see :mod:`callthrottle._terms`): whatever the strategy, a number whose paid
#: period lapsed (``expired`` or ``released`` by the throttle's calendar) is passed over: it
#: takes none of the pick's tries, does not make the caller wait in the pool's line, and goes
#: behind the others (a renewal, published, puts it back at its load). Among numbers of equal
#: load, those inside their warning window come after the others: in ``least-loaded`` order
#: and in the samples of ``local``. Round-robin has no equals: a number about to lapse keeps
#: its turn (only lapsed numbers lose theirs, the next one taking it); ``sticky`` keeps the
#: callee's number while it is paid for, warning or not.
STRATEGIES = ("least-loaded", "round-robin", "local", "sticky")
STICKY_TTL = 86400.0  # seconds a callee keeps its caller ID under the sticky strategy
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
    :ivar sticky_ttl: with the sticky strategy, seconds a callee keeps its caller ID
    """

    numbers: tuple[str, ...] = ()
    strategy: str = DEFAULT_STRATEGY
    fallback: str | None = None
    sticky_ttl: float = STICKY_TTL


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """What a backend needs to admit a call on a pool member by itself: the hash tag of the
    number's keys, its cap and its rate plan (per-call parts, such as the callee, come with each
    pick). Written when the number joins the pool, by the throttle that adds it, and again
    with every policy published.

    :ivar lapses_at: when its paid period lapses (seconds since the epoch; 0: none tracked);
        see :attr:`callthrottle._terms.Term.lapses_at`
    :ivar warn_at: when the warning window before it begins (0: none)
    """

    tag: str
    limit: int
    plan: RatePlan = NO_RATES
    area: str = ""  # see callthrottle._numbers.locality
    region: str = ""
    lapses_at: float = 0.0
    warn_at: float = 0.0
