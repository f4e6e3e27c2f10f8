"""What a pick costs on a pool where most numbers lapsed: the numbers passed over as lapsed rest
behind the others, so that later picks do not look at them again ("the cost of a pick does not
grow with the pool"). Counted by the server itself (INFO commandstats: the commands the pick's
function ran inside Redis)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pytest

from callthrottle import Throttle

if TYPE_CHECKING:
    import redis

pytestmark = pytest.mark.redis

LIVE = ["+8657188870001", "+8657188870002"]
LAPSED = [f"+86571888{i:05d}" for i in range(1, 321)]


def at(year: int, month: int, day: int) -> float:
    return dt.datetime(year, month, day, tzinfo=dt.timezone.utc).timestamp()


def counts(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def commands_since(client: redis.Redis, before: dict[str, int]) -> int:
    after = counts(client)
    return sum(calls - before.get(name, 0) for name, calls in after.items() if name != "info")


def config(lapsed: list[str], strategy: str) -> dict[str, Any]:
    return {
        "numbers": {number: {"paid_until": "2027-01-31"} for number in lapsed},
        "pools": {"p": {"numbers": LIVE + lapsed, "strategy": strategy}},
    }


async def pick_cost(
    redis_url: str, prefix: str, client: redis.Redis, lapsed: list[str], strategy: str
) -> int:
    """The commands of a pick once the lapsed numbers were passed over: each is moved behind
    the others once (round-robin looks at 4 * 16 places at most, then the least loaded, which
    moves the rest), and later picks leave them there."""
    async with Throttle.from_url(
        redis_url,
        key_prefix=prefix,
        config=config(lapsed, strategy),
        calendar=lambda: at(2027, 3, 1),
    ) as throttle:
        for _ in range(4):
            await throttle.release(await throttle.acquire_from("p", timeout=0))
        before = counts(client)
        lease = await throttle.acquire_from("p", timeout=0)
        cost = commands_since(client, before)
        assert lease.number in LIVE
        await throttle.release(lease)
        return cost


@pytest.mark.parametrize("strategy", ["least-loaded", "round-robin"])
async def test_a_pick_does_not_look_again_at_many_lapsed_numbers(
    redis_url: str, prefix: str, sync_client: redis.Redis, strategy: str
) -> None:
    """Two numbers paid for, 320 lapsed: once passed over, the lapsed numbers cost later picks
    no more than a pool of the two numbers alone (a few commands more, not hundreds)."""
    small = await pick_cost(redis_url, prefix + "small:", sync_client, [], strategy)
    big = await pick_cost(redis_url, prefix + "big:", sync_client, LAPSED, strategy)
    assert big <= small + 20, (small, big)
