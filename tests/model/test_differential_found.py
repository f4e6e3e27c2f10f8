"""Cases the differential test found in longer runs, kept as tests (both backends in lockstep,
every reply and view compared after each step)."""

from __future__ import annotations

import pytest

from callthrottle.backends import PolicyChange

from ._universe import TRUNKED
from .test_differential import differential, replay


@pytest.mark.parametrize(
    "then",
    [PolicyChange(state="disabled", reason="blocked"), PolicyChange(state="warming", warming=True)],
    ids=["disabled", "warming"],
)
def test_a_state_set_after_a_cool_down_lapsed_under_a_run_time_cap_keeps_none_of_it(
    redis_url: str, then: PolicyChange
) -> None:
    """A cap set at run time keeps the number's policy; a carrier's cool-down lapses under it;
    a state is then set: nothing of the lapsed cool-down is part of the policy any more (memory
    drops it first; Redis kept its ``until`` or its ``reason``)."""
    cooling = PolicyChange(state="cooling", until=30.0, reason="477")
    with differential(redis_url) as machine:
        replay(
            machine,
            ("set_policy", {"number": TRUNKED, "changes": PolicyChange(cap=1)}),
            ("set_policy", {"number": TRUNKED, "changes": cooling}),
            ("beyond_every_ttl", {}),
            ("set_policy", {"number": TRUNKED, "changes": then}),
        )


def test_a_partial_change_after_a_cool_down_lapsed_keeps_none_of_it(redis_url: str) -> None:
    """A carrier's cool-down lapses; a change that names only the state comes: neither the
    cool-down's reason nor its end is left (memory dropped them only when a view had looked at
    the policy before; its views no longer change anything, and set_policy drops them first,
    as set_policy.lua does)."""
    cooling = PolicyChange(state="cooling", until=30.0, reason="477")
    with differential(redis_url) as machine:
        replay(
            machine,
            ("set_policy", {"number": TRUNKED, "changes": cooling}),
            ("beyond_every_ttl", {}),
            ("set_policy", {"number": TRUNKED, "changes": PolicyChange(state="disabled")}),
        )
