"""The carrier policy published to the backend, on every backend: one policy for every process.

A throttle opened with ``config=`` finds a different published policy an error (``match``, the
default) or takes it (``follow``); once a policy is published, no decision is made with an
older one, by any throttle: the backend refuses a request made with an older version (its
stamp), and the throttle takes the newest and asks again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import (
    AcquireTimeout,
    ConfigError,
    InvalidArgument,
    PolicyConflict,
    PolicyMismatch,
    Throttle,
)
from callthrottle._policy_source import PolicySource

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

N1, N2, N3 = "+8657188880001", "+8657188880002", "+8657188880003"


def config(cap: int, *, pool: list[str] | None = None, extra: int = 0) -> dict[str, Any]:
    """Numbers N1 and N2 at ``cap`` (a profile), N3 at ``cap + extra``."""
    data: dict[str, Any] = {
        "default_profile": "fixed",
        "profiles": {"fixed": {"cap": cap}},
        "numbers": {N3: {"cap": cap + extra}} if extra else {},
    }
    if pool is not None:
        data["pools"] = {"sales": {"numbers": pool}}
    return data


async def fill(throttle: Throttle, number: str) -> int:
    """Take slots on ``number`` until it refuses; return how many were granted."""
    taken = 0
    while True:
        try:
            await throttle.acquire(number, timeout=0)
        except AcquireTimeout:
            return taken
        taken += 1


async def test_a_throttle_with_another_config_is_refused_unless_it_follows(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(config=config(3)) as publisher:
        assert publisher.policy_version == 0
        published = await publisher.publish_policy(comment="caps of 2026")
        assert (published.version, publisher.policy_version) == (1, 1)
        assert published.comment == "caps of 2026"
        other = new_throttle(config=config(5))
        with pytest.raises(PolicyMismatch, match="not this throttle's config") as raised:
            await other.__aenter__()
        assert raised.value.published == 1
        async with new_throttle(config=config(5), policy="follow") as follower:
            assert follower.policy_version == 1
            assert (await follower.usage(N1)).limit == 3
            assert await fill(follower, N1) == 3
        async with new_throttle() as without_config:
            assert (await without_config.usage(N2)).limit == 3
        async with new_throttle(config=config(3)) as same:  # the policy published: fine
            assert same.policy_version == 1


async def test_a_published_cap_binds_the_next_decision_of_every_throttle(
    new_throttle: ThrottleFactory,
) -> None:
    """A throttle that has not heard of the new policy asks with the old one: the backend
    refuses that request as stale, the throttle takes the new policy and decides with it."""
    async with (
        new_throttle(config=config(3), policy="follow") as first,
        new_throttle(config=config(3), policy="follow", lease_ttl=600) as second,
    ):
        await first.publish_policy()
        assert second.policy_version == 0  # it learns of it at its next acquire
        await first.acquire(N1, timeout=0)
        await first.publish_policy(config(1))  # N1 is now at its cap, held by first
        assert second.policy_version == 0
        with pytest.raises(AcquireTimeout):
            await second.acquire(N1, timeout=0)  # under the old cap (3) it would be granted
        assert second.policy_version == 2
        assert (await second.usage(N1)).limit == 1
        assert await fill(second, N2) == 1


async def test_a_match_throttle_refuses_calls_once_another_policy_is_published(
    new_throttle: ThrottleFactory,
) -> None:
    async with (
        new_throttle(config=config(3)) as dialer,
        new_throttle(policy="follow") as publisher,
    ):
        await dialer.publish_policy()
        held = await dialer.acquire(N1, timeout=0)
        await publisher.publish_policy(config(2), expected=1)
        with pytest.raises(PolicyMismatch):
            await dialer.acquire(N2, timeout=0)
        assert (await publisher.usage(N2)).in_use == 0  # nothing was taken
        assert await dialer.release(held)  # calls up still end


async def test_a_waiting_caller_is_served_once_a_cap_is_raised(
    new_throttle: ThrottleFactory,
) -> None:
    """The caller only waits (it makes no new acquire): its throttle looks for a newer policy
    every renew_interval, and its waiter asks again under it."""
    async with (
        new_throttle(config=config(1), lease_ttl=3.0) as holder,
        new_throttle(config=config(1), policy="follow", lease_ttl=3.0) as waiting,
    ):
        await holder.publish_policy()
        await holder.acquire(N1, timeout=0)
        got: list[object] = []

        async def wait() -> None:
            got.append(await waiting.acquire(N1, timeout=20))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                while (await holder.usage(N1)).waiting == 0:
                    await anyio.sleep(0.01)
                await holder.publish_policy(config(2))
        assert len(got) == 1
        assert (await holder.usage(N1)).in_use == 2


async def test_a_publish_on_top_of_a_version_not_in_force_writes_nothing(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(config=config(3), policy="follow") as throttle:
        await throttle.publish_policy()
        with pytest.raises(PolicyConflict) as raised:
            await throttle.publish_policy(config(1), expected=0)
        assert (raised.value.expected, raised.value.current) == (0, 1)
        published = await throttle.published_policy()
        assert published is not None
        assert published.version == 1
        assert published.config.profiles["fixed"].cap == 3
        assert await fill(throttle, N1) == 3


async def test_history_keeps_the_versions_replaced(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(config=config(3), policy="follow") as throttle:
        assert await throttle.published_policy() is None
        assert await throttle.policy_history() == []
        for cap in (3, 4, 5):
            await throttle.publish_policy(config(cap), comment=f"cap {cap}")
        history = await throttle.policy_history(5)
        assert [(p.version, p.comment) for p in history] == [(2, "cap 4"), (1, "cap 3")]
        assert history[0].config.profiles["fixed"].cap == 4
        assert [p.version for p in await throttle.policy_history(1)] == [2]
        current = await throttle.published_policy()
        assert current is not None
        assert current.digest == current.document.digest  # the digest is of what it holds


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"config": {"profiles": {"fixed": {"cap": 0}}}}, ConfigError),
        ({"config": {"profiles": {"fixed": {"cap": 2, "size": 1}}}}, ConfigError),
        ({"default_limit": 0}, InvalidArgument),
        ({"comment": "two\tfields"}, InvalidArgument),
        ({"comment": "x" * 501}, InvalidArgument),
        ({"config": config(2) | {"numbers": {N1: {"tenant": "acme"}}}}, InvalidArgument),
    ],
    ids=["cap-0", "unknown-key", "default-limit-0", "tab", "long-comment", "moves-a-number"],
)
async def test_bad_input_to_publish_is_refused_and_nothing_is_written(
    new_throttle: ThrottleFactory, change: dict[str, Any], error: type[Exception]
) -> None:
    async with new_throttle(config=config(3), policy="follow") as throttle:
        with pytest.raises(error):
            await throttle.publish_policy(**change)
        assert await throttle.published_policy() is None
        assert throttle.policy_version == 0


async def test_the_pools_are_published_with_the_policy(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(config=config(1, pool=[N1, N2]), policy="follow") as throttle:
        await throttle.publish_policy()
        assert sorted(await throttle.pool_members("sales")) == [N1, N2]
        if throttle.backend.pools_place_numbers:
            # A Cluster: a pool's numbers share its slot, so N1 and N3 would move. An open
            # throttle refuses that (`callthrottle policy apply --moves-numbers` does it).
            with pytest.raises(InvalidArgument, match="first pool"):
                await throttle.publish_policy(config(1, pool=[N2, N3]))
            assert sorted(await throttle.pool_members("sales")) == [N1, N2]
            return
        await throttle.publish_policy(config(1, pool=[N2, N3]))
        assert sorted(await throttle.pool_members("sales")) == [N2, N3]


async def test_a_pick_made_under_an_older_policy_is_made_again_under_the_newest(
    new_throttle: ThrottleFactory,
) -> None:
    async with (
        new_throttle(config=config(2, pool=[N1]), policy="follow") as publisher,
        new_throttle(config=config(2, pool=[N1]), policy="follow", lease_ttl=600) as picker,
    ):
        await publisher.publish_policy()
        await publisher.acquire_from("sales", timeout=0)
        await publisher.publish_policy(config(1, pool=[N1]))
        assert picker.policy_version == 0
        with pytest.raises(AcquireTimeout):  # PoolExhausted: N1 is at its new cap
            await picker.acquire_from("sales", timeout=0)
        assert picker.policy_version == 2


async def test_a_caller_waiting_when_a_cap_is_lowered_is_not_handed_a_slot_above_it(
    new_throttle: ThrottleFactory,
) -> None:
    """The waiter queued under the old cap (2), and its throttle has not looked for a new
    policy yet: when a slot frees, the backend does not hand it over (the new cap is 1, and
    one call is still up) but asks the waiter to ask again, under the new policy."""
    async with (
        new_throttle(config=config(2), policy="follow") as holder,
        new_throttle(config=config(2), policy="follow", lease_ttl=600) as waiting,
    ):
        await holder.publish_policy()
        first = await holder.acquire(N1, timeout=0)
        second = await holder.acquire(N1, timeout=0)
        got: list[object] = []

        async def wait() -> None:
            got.append(await waiting.acquire(N1, timeout=30))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                while (await holder.usage(N1)).waiting == 0:
                    await anyio.sleep(0.01)
                await holder.publish_policy(config(1))
                await holder.release(first)
                await anyio.sleep(0.3)  # the waiter asks again meanwhile, under cap 1
                usage = await holder.usage(N1)
                assert (usage.in_use, usage.waiting, got) == (1, 1, [])
                assert waiting.policy_version == 2
                await holder.release(second)
        assert len(got) == 1
        assert (await holder.usage(N1)).in_use == 1


async def test_a_caller_waiting_through_several_publishes_is_still_served(
    new_throttle: ThrottleFactory,
) -> None:
    """Each publish while the caller waits makes its next ask stale once (its throttle takes
    the new policy and asks again): four publishes in a long wait are no lost policy, and the
    caller is served when the slot frees, not told ``PolicyMismatch``."""
    async with (
        new_throttle(config=config(1), policy="follow", lease_ttl=3.0) as holder,
        new_throttle(config=config(1), policy="follow", lease_ttl=3.0) as waiting,
    ):
        await holder.publish_policy()
        held = await holder.acquire(N1, timeout=0)
        got: list[object] = []

        async def wait() -> None:
            got.append(await waiting.acquire(N1, timeout=60))

        with anyio.fail_after(40):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                while (await holder.usage(N1)).waiting == 0:
                    await anyio.sleep(0.01)
                for _ in range(4):
                    published = await holder.publish_policy(comment="the same caps again")
                    while waiting.policy_version != published.version:
                        await anyio.sleep(0.05)
                    await anyio.sleep(0.3)  # its waiter asked again meanwhile
                await holder.release(held)
        assert len(got) == 1


async def test_a_throttle_behind_the_published_policy_cannot_raise_a_pool_members_cap(
    new_throttle: ThrottleFactory,
) -> None:
    """The pool's members admit calls by the caps written with them (a pick reads them on the
    backend). A throttle opened before the publish (cap 3), that has not looked for a new
    policy yet, adds N1 to the pool again: it must not write the old cap 3 over the published
    cap 1, under which every throttle's picks are then decided."""
    async with (
        new_throttle(config=config(3, pool=[N1]), policy="follow", lease_ttl=600) as behind,
        new_throttle(config=config(1, pool=[N1]), policy="follow") as publisher,
    ):
        await publisher.publish_policy()
        assert behind.policy_version == 0
        await behind.add_to_pool("sales", [N1])
        await publisher.acquire_from("sales", timeout=0)
        with pytest.raises(AcquireTimeout):  # PoolExhausted: N1 is at its published cap
            await publisher.acquire_from("sales", timeout=0)
        assert (await publisher.usage(N1)).in_use == 1


async def test_a_throttle_opening_as_a_policy_is_published_leaves_its_pools_as_published(
    new_throttle: ThrottleFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A throttle opening reads the published policy (none yet), then writes its configured
    pools (cap 3). A publish of cap 1 that lands between the two (another process, one round
    trip apart) must not be undone by that write: every pick is decided under cap 1 after."""
    async with new_throttle(config=config(1, pool=[N1]), policy="follow") as publisher:
        original = PolicySource.open
        published: list[int] = []

        async def open_then_publish(self: PolicySource) -> None:
            await original(self)
            if not published:  # the opening throttle's read is done: the publish lands now
                published.append((await publisher.publish_policy()).version)

        monkeypatch.setattr(PolicySource, "open", open_then_publish)
        async with new_throttle(config=config(3, pool=[N1]), policy="follow") as opening:
            monkeypatch.undo()
            assert published == [1]
            await publisher.acquire_from("sales", timeout=0)
            with pytest.raises(AcquireTimeout):  # PoolExhausted: N1 is at its published cap
                await opening.acquire_from("sales", timeout=0)
            assert (await publisher.usage(N1)).in_use == 1


@pytest.mark.parametrize("expected", ["1", True, 1.0], ids=["str", "bool", "float"])
async def test_an_expected_version_that_is_no_version_number_is_refused_and_nothing_written(
    new_throttle: ThrottleFactory, expected: object
) -> None:
    async with new_throttle(config=config(3), policy="follow") as throttle:
        await throttle.publish_policy()
        with pytest.raises(InvalidArgument, match="expected"):
            await throttle.publish_policy(config(1), expected=expected)  # type: ignore[arg-type]
        published = await throttle.published_policy()
        assert published is not None
        assert published.version == 1


async def test_a_throttle_reads_the_document_only_when_a_newer_one_is_published(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(config=config(2)) as throttle:
        backend = throttle.backend
        assert await backend.published_policy(newer_than=1) is None  # none published
        await throttle.publish_policy()
        first = await backend.published_policy()
        assert first is not None
        assert await backend.published_policy(newer_than=first.stamp) is None
        assert await backend.published_policy(newer_than=first.stamp - 1) == first
        await throttle.publish_policy(config(3))
        second = await backend.published_policy(newer_than=first.stamp)
        assert second is not None
        assert (second.version, second.stamp > first.stamp) == (2, True)
