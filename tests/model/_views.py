"""What the differential test reads of a backend, and how two answers are compared."""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Any

from ._universe import CAPS, GROUP_TAG, GROUPS, NUMBERS, POOLS, plan

if TYPE_CHECKING:
    from callthrottle.backends._base import Backend


def comparable(value: Any) -> Any:
    """Floats to whole milliseconds (Redis keeps milliseconds), dataclasses to tuples."""
    if isinstance(value, bool | enum.Enum) or value is None:
        return value
    if isinstance(value, float | int):
        return round(value, 3)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return (type(value).__name__, *(comparable(getattr(value, f.name)) for f in fields))
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [comparable(v) for v in value]
    return value


async def views(backend: Backend, tz_offset: float) -> dict[str, Any]:
    """Everything a backend shows of its state, read only."""
    seen: dict[str, Any] = {}
    for number in NUMBERS:
        seen[f"usage {number}"] = await backend.usage(number, CAPS[number])
        seen[f"holders {number}"] = await backend.holders(number)
        seen[f"oldest wait {number}"] = await backend.oldest_wait(number)
        seen[f"windows {number}"] = await backend.window_usage(number, plan(number, tz_offset))
        seen[f"policy {number}"] = await backend.get_policy(number)
    for group in GROUPS:
        seen[f"group {group.group}"] = await backend.group_usage(group, GROUP_TAG)
    for pool in POOLS:
        seen[f"pool {pool}"] = await backend.pool_members(pool)
    return seen
