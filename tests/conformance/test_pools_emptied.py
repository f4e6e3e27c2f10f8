"""A configured pool emptied at run time stays empty: a pick that finds no number must not
publish the configuration's numbers again (only a backend that lost its data forgot them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from callthrottle import PoolExhausted

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

NUMBERS = [f"+86571888{i:05d}" for i in range(3)]


async def test_a_pool_emptied_at_run_time_is_not_refilled_by_a_pick(
    new_throttle: ThrottleFactory,
) -> None:
    config = {"default_tenant": "acme", "pools": {"a": {"numbers": NUMBERS}}}
    async with new_throttle(config=config) as admin, new_throttle(config=config) as dialer:
        assert await admin.remove_from_pool("a", NUMBERS) == 0
        with pytest.raises(PoolExhausted):
            lease = await dialer.acquire_from("a", timeout=0)
            await dialer.release(lease)
        assert await admin.pool_members("a") == []
