"""What the differential test knows independently of both backends: the caps in force (from
the policy it set), and the rules every step must keep, checked on what the backends show."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from callthrottle.backends._policy import KEEP

from ._universe import CAPS, GROUPS, NUMBERS, PLANS

if TYPE_CHECKING:
    from callthrottle.backends import PolicyChange


@dataclass
class Reference:
    now: float
    caps: dict[str, int] = field(default_factory=dict)  # set at run time (set_policy cap)
    lowered: dict[str, tuple[int, float]] = field(default_factory=dict)  # cap, until (abs)
    group_caps: dict[str, int] = field(default_factory=dict)  # set at run time

    def set_policy(self, number: str, changes: PolicyChange) -> None:
        cap = changes.cap
        if cap is not KEEP:
            if cap is None:
                self.caps.pop(number, None)
            else:
                self.caps[number] = cap
        lowered = changes.lowered
        if lowered is not KEEP:
            if lowered is None:
                self.lowered.pop(number, None)
            else:
                self.lowered[number] = (lowered[0], self.now + lowered[1])

    def cap_in_force(self, number: str) -> int:
        cap = self.caps.get(number, CAPS[number])
        lowered = self.lowered.get(number)
        if lowered is not None and lowered[1] > self.now:
            cap = min(cap, lowered[0])
        return cap

    def group_cap(self, group: str, priority: int) -> int | None:
        plan = next(g for g in GROUPS if g.group == group)
        cap = self.group_caps.get(group, plan.cap)
        if cap is not None and priority < 1:
            cap = max(cap - plan.reserve, 0)
        return cap


def live_tokens(seen: dict[str, Any], number: str) -> set[str]:
    return {holder.token for holder in seen[f"holders {number}"]}


def check_step(
    reference: Reference,
    before: dict[str, Any],
    after: dict[str, Any],
    admitted_priority: int | None,
    try_once: str | None,
) -> None:
    """The rules, on what one step changed (``before`` and ``after``: one backend's views).

    ``admitted_priority``: the priority of a call the step may have admitted (None: the step
    admits nobody by its own rules, as a restore, which counts a lease past the cap on purpose);
    ``try_once``: the token of a caller that would not wait, if the step was one.
    """
    for number in NUMBERS:
        new = live_tokens(after, number) - live_tokens(before, number)
        if not new or admitted_priority is None:
            continue
        usage = after[f"usage {number}"]
        cap = reference.cap_in_force(number)
        # Never more live leases than the cap in force when a lease was just granted.
        assert usage.in_use <= cap, f"{number}: {usage.in_use} live leases on a cap of {cap}"
        for group in PLANS[number].groups:
            group_usage = after[f"group {group.group}"]
            limit = reference.group_cap(group.group, admitted_priority)
            assert limit is None or group_usage.in_use <= limit, (
                f"{group.group}: {group_usage.in_use} live leases on a cap of {limit}"
            )
        if try_once in new:
            # No slot given to a try-once while someone (still) waits for it.
            assert after[f"usage {number}"].waiting == 0, f"{number}: a try-once passed a waiter"
            # Nor while someone waits in the line of its trunk or tenant; but a priority call
            # may take a reserved slot while campaign calls wait (they could not take it), and
            # the views do not say who waits at which priority: then the group is not checked.
            for group in PLANS[number].groups:
                if admitted_priority and reference.group_cap(
                    group.group, admitted_priority
                ) != reference.group_cap(group.group, 0):
                    continue
                # A slot is the waiters' only while they need it: with more free slots than
                # callers waiting (they have not asked again since one freed), a try-once
                # may take a spare one.
                seen = after[f"group {group.group}"]
                limit = reference.group_cap(group.group, admitted_priority)
                assert limit is None or seen.in_use + seen.waiting <= limit, (
                    f"{group.group}: a try-once passed {seen.waiting} waiting"
                )
    # A call counted in every group or in none: a group's leases are its numbers' leases.
    for group in GROUPS:
        members = [n for n in NUMBERS if group in PLANS[n].groups]
        live = sum(after[f"usage {n}"].in_use for n in members)
        assert after[f"group {group.group}"].in_use == live, f"{group.group} counts {live} leases"
