"""The numbers, groups and pools the differential test works on, built as a Config would.

Five numbers: one plain; one with rolling and calendar-day windows and a warm-up; three in a
tenant, two of them also on a trunk (the trunk keeps a reserve for priority calls and has a
window of its own). Callee windows count calls to one callee from every number of a tag. Two
pools, the first falling back on the second.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from callthrottle._pools import MemberSpec
from callthrottle._rates import DAY, NO_RATES, GroupPlan, RatePlan, Window

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

PLAIN, RATED, TRUNKED, TENANTED, SMALL = (f"+8657188880{i:03d}" for i in range(1, 6))
NUMBERS = (PLAIN, RATED, TRUNKED, TENANTED, SMALL)

TRUNK = GroupPlan("trunk:a", cap=3, reserve=1, windows=(Window(5, 20.0),))
TENANT = GroupPlan("tenant:x", cap=4)
GROUPS = (TRUNK, TENANT)
GROUP_TAG = "t:x"  # the tenant's: every number of the tenant shares it

CALLEE_WINDOWS = (Window(2, 30.0),)
CALLEES = ("+8613800000001", "+8613800000002")

CAPS = {PLAIN: 2, RATED: 3, TRUNKED: 2, TENANTED: 2, SMALL: 1}
_RATED_WINDOWS = (Window(3, 10.0), Window(5, DAY, calendar=True))
PLANS = {
    PLAIN: RatePlan(),
    RATED: RatePlan(_RATED_WINDOWS, warmup=(2, 4), midnight=True),
    TRUNKED: RatePlan((Window(4, 60.0),), groups=(TRUNK, TENANT)),
    TENANTED: RatePlan(groups=(TENANT,)),
    SMALL: RatePlan(groups=(TRUNK, TENANT)),
}
AREAS = {PLAIN: ("571", "CN"), RATED: ("10", "CN"), TRUNKED: ("571", "CN")}
AREAS |= {TENANTED: ("21", "CN"), SMALL: ("21", "CN")}

POOLS = {"p1": (PLAIN, RATED, TRUNKED), "p2": (TENANTED, SMALL)}
FALLBACK = {"p1": "p2"}
STRATEGIES = ("least-loaded", "round-robin", "local", "sticky")

#: An owner that is a session's name: its acquires and picks take session leases, which live
#: while ``keepalive`` keeps the session alive (never past their deadline).
SESSION = "s1"


@dataclass(frozen=True)
class Layout:
    """Where the numbers live, as ``Config`` says it (see ``Config.tag_for``, ``groups_for``)."""

    def tag_for(self, number: str) -> str:
        return GROUP_TAG if PLANS[number].groups else "*"

    def groups_for(self, number: str) -> tuple[GroupPlan, ...]:
        return PLANS[number].groups

    def pool_numbers(self) -> Mapping[str, Sequence[str]]:
        return {}  # the model runs on a single server: no Cluster placement to work out


LAYOUT = Layout()


def plan(number: str, tz_offset: float, callee: str | None = None, priority: int = 0) -> RatePlan:
    """The plan a throttle sends with an acquire (see ``Throttle._rate_plan``)."""
    base = PLANS[number]
    if base == NO_RATES and callee is None:
        return NO_RATES  # as a throttle sends it: the hot path
    if priority and base.groups:
        base = replace(base, priority=priority)
    if callee is not None:
        base = replace(base, callee=callee, callee_windows=CALLEE_WINDOWS)
    return replace(base, tz_offset=tz_offset)


def call_plan(tz_offset: float, callee: str | None, priority: int) -> RatePlan:
    """The per-call parts of a pick (see ``Throttle.acquire_from``)."""
    windows = CALLEE_WINDOWS if callee is not None else ()
    return RatePlan(tz_offset=tz_offset, callee=callee, callee_windows=windows, priority=priority)


def member_spec(number: str) -> MemberSpec:
    area, region = AREAS[number]
    return MemberSpec(LAYOUT.tag_for(number), CAPS[number], PLANS[number], area, region)
