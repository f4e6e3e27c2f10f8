"""Nothing left behind: once a number is idle, every key it wrote expires, no later than what
the key still holds (a lease, a place in line, a rate window, a temporary carrier reaction).

Only what an operator sets for good (a cap, rate windows, a state other than a cool-down, a
pool's members) stays without an expiry. Every test looks at the keys' PTTL on the server.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, cast

import anyio
import pytest

from callthrottle import AcquireTimeout, NumberState, PoolExhausted, Reaction, Throttle
from callthrottle._rates import NO_RATES
from callthrottle.backends import AcquireRequest, PickRequest

from .._servers import fence_mark

if TYPE_CHECKING:
    import redis

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"
OTHER = "+8657188880002"

#: A pool's own configuration (members, load and order, counters, area and region sets): kept
#: while the pool has members, like any setting an operator made.
POOL_SETTINGS = re.compile(r".*:pool:([mlocs]|[ar]:.*)$")


def expiries(client: redis.Redis, prefix: str) -> dict[str, int]:
    """Every key under ``prefix`` and its PTTL in ms (-1: no expiry), but the prefix's marker
    (its one key that never expires: see fence_mark)."""
    keys = [key.decode() for key in client.scan_iter(match=f"{prefix}*")]
    return {key: client.pttl(key) for key in keys if key != fence_mark(prefix)}


def assert_all_expire(
    client: redis.Redis,
    prefix: str,
    within_ms: int,
    keep: re.Pattern[str] | None = None,
    keep_ended: int | None = None,
    keep_leases: int | None = None,
) -> None:
    """Every key expires within ``within_ms`` (those matching ``keep`` may have no expiry;
    with ``keep_ended``, records of ended leases expire within that many ms instead; with
    ``keep_leases``, a number's lease keys)."""
    for key, pttl in expiries(client, prefix).items():
        if keep is not None and keep.match(key) and pttl == -1:
            continue
        bound = within_ms
        if keep_ended is not None and ENDED.match(key):
            bound = keep_ended
        elif keep_leases is not None and LEASES.match(key):
            bound = keep_leases
        assert 0 < pttl <= bound, f"{key} has PTTL {pttl}"


#: The record of leases ended by another process, a reset or release_owner (a release is final:
#: their holders must not count them again): it lapses four lease TTLs after its last write.
ENDED = re.compile(r".*:n:[^:]+:e$")

#: A number's keys of leases and line (and of lapsed leases): they live four lease TTLs past
#: the leases they hold, so that a release arriving after a lease lapsed says so (EXPIRED).
LEASES = re.compile(r".*:n:[^:]+:[hmqwsx]$")

#: The bound of those with 2 s leases: the lease, four more TTLs, and a second.
LEASES_KEPT = 2_000 + 4 * 2_000 + 1_000


def assert_ended_records_only(client: redis.Redis, prefix: str, within_ms: int) -> None:
    """Only records of ended leases, each expiring within ``within_ms``, and lease keys kept
    for leases that lapsed (within LEASES_KEPT) are left."""
    for key, pttl in expiries(client, prefix).items():
        if LEASES.match(key):
            assert 0 < pttl <= LEASES_KEPT, f"{key} has PTTL {pttl}"
            continue
        assert ENDED.match(key), f"{key} is left (PTTL {pttl})"
        assert 0 < pttl <= within_ms, f"{key} has PTTL {pttl}"


def policy_key(throttle: Throttle, number: str) -> str:
    return throttle.backend.keys_for(number)[4]  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("action", ["lower_cap", "cooldown"])
async def test_a_carrier_reaction_alone_expires_when_it_lapses(
    redis_url: str, prefix: str, sync_client: redis.Redis, action: str
) -> None:
    feedback: dict[str | int, Reaction] = {477: Reaction(action, seconds=0.4, cap=1)}
    async with Throttle.from_url(redis_url, key_prefix=prefix, feedback=feedback) as throttle:
        await throttle.release(await throttle.acquire(NUMBER, timeout=0))
        await throttle.report(NUMBER, 477)
        assert_all_expire(sync_client, prefix, 400)
        await anyio.sleep(0.5)
        assert expiries(sync_client, prefix) == {}
        assert await throttle.known_numbers() == []


async def test_a_cool_down_set_by_an_operator_expires_when_it_ends(
    throttle: Throttle, sync_client: redis.Redis, prefix: str
) -> None:
    await throttle.set_state(NUMBER, "cooling", reason="resting", duration=0.4)
    assert_all_expire(sync_client, prefix, 400)
    await anyio.sleep(0.5)
    assert expiries(sync_client, prefix) == {}


async def test_the_policy_lives_as_long_as_its_latest_temporary_field(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    feedback: dict[str | int, Reaction] = {477: Reaction("lower_cap", seconds=30, cap=1)}
    async with Throttle.from_url(redis_url, key_prefix=prefix, feedback=feedback) as throttle:
        key = policy_key(throttle, NUMBER)
        await throttle.set_state(NUMBER, "cooling", duration=60)
        await throttle.report(NUMBER, 477)  # ends before the cool-down: the key lives 60 s
        assert 30_000 < sync_client.pttl(key) <= 60_000
        await throttle.set_state(NUMBER, "cooling", duration=10)  # shortened: 30 s left
        assert 10_000 < sync_client.pttl(key) <= 30_000


async def test_a_setting_made_for_good_keeps_the_policy_for_good(
    throttle: Throttle, sync_client: redis.Redis
) -> None:
    key = policy_key(throttle, NUMBER)
    await throttle.set_state(NUMBER, "cooling", duration=60)
    await throttle.set_cap(NUMBER, 5)  # the cap outlives the cool-down
    assert sync_client.pttl(key) == -1
    await throttle.set_cap(NUMBER, None)  # only the cool-down is left
    assert 0 < sync_client.pttl(key) <= 60_000
    await throttle.set_rates(NUMBER, "5/second")
    assert sync_client.pttl(key) == -1
    await throttle.set_rates(NUMBER, None)
    assert 0 < sync_client.pttl(key) <= 60_000
    await throttle.set_state(NUMBER, "disabled", reason="rental expired")
    assert sync_client.pttl(key) == -1
    await throttle.set_state(NUMBER, "cooling", duration=60)
    assert 0 < sync_client.pttl(key) <= 60_000
    await throttle.set_state(NUMBER, "warming")
    assert sync_client.pttl(key) == -1


async def test_a_lapsed_reaction_beside_a_setting_is_dropped_at_the_next_change(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    feedback: dict[str | int, Reaction] = {477: Reaction("lower_cap", seconds=0.2, cap=1)}
    async with Throttle.from_url(redis_url, key_prefix=prefix, feedback=feedback) as throttle:
        key = policy_key(throttle, NUMBER)
        await throttle.set_cap(NUMBER, 5)
        await throttle.set_state(NUMBER, "cooling", reason="resting", duration=0.2)
        await throttle.report(NUMBER, 477)
        await anyio.sleep(0.3)
        await throttle.set_cap(NUMBER, 6)
        assert set(cast("list[bytes]", sync_client.hkeys(key))) == {b"cap"}
        await throttle.set_cap(NUMBER, None)
        assert expiries(sync_client, prefix) == {}


async def test_setting_a_number_active_leaves_nothing_behind(
    throttle: Throttle, sync_client: redis.Redis, prefix: str
) -> None:
    await throttle.set_state(NUMBER, "disabled", reason="rental expired")
    await throttle.set_state(NUMBER, NumberState.ACTIVE)
    assert expiries(sync_client, prefix) == {}


async def test_a_pool_line_expires_with_its_last_place(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """A caller that gave up waiting on a pool, and one that died in line, leave keys that
    expire within their place's lapse (the lease ttl)."""
    config = {"pools": {"a": {"numbers": [NUMBER]}}}
    async with Throttle.from_url(
        redis_url, key_prefix=prefix, config=config, default_limit=1, lease_ttl=2.0
    ) as throttle:
        held = await throttle.acquire_from("a", timeout=0)
        with pytest.raises(PoolExhausted):
            await throttle.acquire_from("a", timeout=0.2)
        # A caller that dies in line never leaves it: its place lapses.
        for token in ("dead-1", "dead-2"):
            await throttle.backend.pick(
                PickRequest("a", token, "dead", 2.0, None, "least-loaded", 5, NO_RATES), wait=True
            )
        line = {k for k in expiries(sync_client, prefix) if re.search(r":pool:a:(w|x|ws)$", k)}
        assert len(line) == 3
        assert_all_expire(sync_client, prefix, 3_000, keep=POOL_SETTINGS, keep_leases=LEASES_KEPT)
        await throttle.release(held)
    assert_all_expire(sync_client, prefix, 3_000, keep=POOL_SETTINGS, keep_leases=LEASES_KEPT)


async def test_trunk_tenant_callee_and_rate_keys_expire_with_what_they_hold(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    config = {
        "default_profile": "p",
        "profiles": {"p": {"rates": "10/minute"}},
        "trunks": {"t400": {"cap": 1, "rates": "5/10seconds"}},
        "tenants": {"acme": {"cap": 10, "rates": "20/30seconds"}},
        "numbers": {
            NUMBER: {"trunk": "t400", "tenant": "acme"},
            OTHER: {"trunk": "t400", "tenant": "acme"},
        },
        "callee": {"rates": "3/20seconds"},
    }
    async with Throttle.from_url(
        redis_url, key_prefix=prefix, config=config, lease_ttl=2.0
    ) as throttle:
        held = await throttle.acquire(NUMBER, callee="+8613800138000", timeout=0)
        with pytest.raises(AcquireTimeout, match="trunk:t400 is full"):
            await throttle.acquire(OTHER, timeout=0.2)  # waited for a trunk slot
        # A caller that died waiting for a trunk slot never leaves: its place lapses.
        plan = throttle._config.rate_plan_for(OTHER)
        died = await throttle.backend.acquire(
            AcquireRequest(OTHER, "dead", "dead", 20, 2.0, None, plan), enqueue=True
        )
        assert died.group == "trunk:t400"
        # A trunk's cap set at run time stays for good, and goes when it is removed.
        await throttle.set_group_cap("trunk", "t400", 2)
        policy = f"{prefix}{{t:acme}}:g:trunk:t400:p"
        assert sync_client.pttl(policy) == -1
        await throttle.set_group_cap("trunk", "t400", None)
        assert sync_client.exists(policy) == 0
        await throttle.release(held)
        assert (await throttle.usage(NUMBER)).in_use == 0
    assert_all_expire(sync_client, prefix, 61_000)  # the number's minute window is the longest
    for key, pttl in expiries(sync_client, prefix).items():
        if key.endswith((":g:trunk:t400:r",)):
            assert pttl <= 11_000, key
        elif key.endswith(":g:tenant:acme:r"):
            assert pttl <= 31_000, key
        elif ":c:" in key:
            assert pttl <= 21_000, key
        elif key.endswith(":r"):
            assert pttl <= 61_000, key
        else:
            assert pttl <= 3_000, key


async def test_every_way_out_of_a_number_leaves_keys_that_expire_within_a_lease(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """Giving up in line, dying in line or holding, release_owner, renewal, reset, restore,
    abandon: at every step each key expires within what it holds (2 s leases and places; the
    record of leases ended by release_owner or reset: four leases; a number's lease keys: four
    leases past the leases they hold, see LEASES), and once every number is idle nothing is
    left but those records and the keys of leases that lapsed."""
    third = "+8657188880003"
    async with Throttle.from_url(
        redis_url, key_prefix=prefix, lease_ttl=2.0, default_limit=1
    ) as throttle:
        backend = throttle.backend
        held = await throttle.acquire(NUMBER, timeout=0)
        with pytest.raises(AcquireTimeout):
            await throttle.acquire(NUMBER, timeout=0.2)  # gave up waiting
        assert_all_expire(sync_client, prefix, 3_000, keep_leases=LEASES_KEPT)
        await backend.acquire(
            AcquireRequest(NUMBER, "dead-waiter", "dead", 1, 2.0, None), enqueue=True
        )
        await backend.acquire(
            AcquireRequest(OTHER, "dead-holder", "dead", 1, 2.0, None), enqueue=False
        )
        await backend.acquire(
            AcquireRequest(OTHER, "dead-waiter-2", "dead", 1, 2.0, None), enqueue=True
        )
        assert_all_expire(sync_client, prefix, 3_000, keep_leases=LEASES_KEPT)
        await throttle.release_owner("dead")
        assert_all_expire(sync_client, prefix, 3_000, keep_ended=9_000, keep_leases=LEASES_KEPT)
        await backend.renew(throttle.owner_id, [(NUMBER, held.token)])
        assert_all_expire(sync_client, prefix, 3_000, keep_ended=9_000, keep_leases=LEASES_KEPT)
        await throttle.reset(NUMBER)
        await backend.restore(AcquireRequest(third, "restored", "dead", 1, 2.0, None))
        assert_all_expire(sync_client, prefix, 3_000, keep_ended=9_000, keep_leases=LEASES_KEPT)
        await backend.abandon(third, "restored", "dead")
    assert_ended_records_only(sync_client, prefix, 9_000)


async def test_an_emptied_pool_leaves_nothing_behind(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    async with Throttle.from_url(redis_url, key_prefix=prefix, lease_ttl=2.0) as throttle:
        await throttle.add_to_pool("a", [NUMBER, OTHER])
        await throttle.release(await throttle.acquire_from("a", timeout=0))
        await throttle.release(await throttle.acquire_from("a", strategy="round-robin", timeout=0))
        await throttle.remove_from_pool("a", [NUMBER, OTHER])
        assert_all_expire(sync_client, prefix, 3_000)  # what picks took, as long as their ttl


async def test_an_emptied_pool_with_paid_periods_leaves_nothing_behind(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """The paid periods a pool keeps apart for its picks (PM's key with 'e') go with its last
    number, as its other keys do; while it has numbers, the key is one of its settings."""
    config = {
        "numbers": {NUMBER: {"paid_until": "2027-01-31"}, OTHER: {"paid_until": "2099-01-01"}}
    }
    async with Throttle.from_url(
        redis_url, key_prefix=prefix, lease_ttl=2.0, config=config, calendar=lambda: 1.81e9
    ) as throttle:
        await throttle.add_to_pool("a", [NUMBER, OTHER])
        assert any(key.endswith(":pool:a:e") for key in expiries(sync_client, prefix))
        lease = await throttle.acquire_from("a", timeout=0)
        assert lease.number == OTHER  # NUMBER lapsed by the calendar (May 2027)
        await throttle.release(lease)
        await throttle.remove_from_pool("a", [NUMBER])
        await throttle.remove_from_pool("a", [OTHER])
        assert_all_expire(sync_client, prefix, 3_000)
