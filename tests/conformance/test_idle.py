"""Nothing left behind, as every view shows it: a carrier's reaction (a lowered cap, a
cool-down) lasts a while and then leaves no trace (the number reads active with no reason, and
a number that had nothing else set is no longer known), while what an operator sets for good
stays; a pool emptied of its numbers starts afresh."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from callthrottle import NumberState, NumberStatus, Reaction, Usage
from callthrottle.backends import RuntimePolicy

from .test_fifo import NUMBER

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

OTHER = "+8657188880002"
THIRD = "+8657188880003"
LAPSE = 0.6  # how long the reactions here last (seconds)
FEEDBACK = {
    475: Reaction("lower_cap", seconds=LAPSE, cap=1),
    477: Reaction("cooldown", seconds=LAPSE, reason="477 over-frequency"),
}


async def test_a_lapsed_reaction_leaves_nothing_behind(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(feedback=FEEDBACK) as throttle:
        await throttle.report(NUMBER, 475)
        await throttle.report(OTHER, 477)
        await throttle.set_state(THIRD, "cooling", reason="resting", duration=LAPSE)
        assert await throttle.known_numbers() == [NUMBER, OTHER, THIRD]
        assert (await throttle.status(NUMBER)).lowered_cap == 1
        await anyio.sleep(LAPSE + 0.1)
        assert await throttle.known_numbers() == []
        for number in (NUMBER, OTHER, THIRD):
            assert await throttle.status(number) == NumberStatus(NumberState.ACTIVE)
            assert await throttle.backend.get_policy(number) == RuntimePolicy()
            assert await throttle.usage(number) == Usage(in_use=0, limit=20, waiting=0)


async def test_a_lapsed_cool_down_reads_active_without_its_reason(
    new_throttle: ThrottleFactory,
) -> None:
    """Beside a cap set for good, the lapsed reactions read as gone, exactly as when nothing
    else was set."""
    async with new_throttle(feedback=FEEDBACK) as throttle:
        await throttle.set_cap(NUMBER, 5)
        await throttle.report(NUMBER, 477)
        await throttle.report(NUMBER, 475)
        status = await throttle.status(NUMBER)
        assert (status.state, status.reason, status.lowered_cap) == (
            NumberState.COOLING,
            "477 over-frequency",
            1,
        )
        await anyio.sleep(LAPSE + 0.1)
        assert await throttle.status(NUMBER) == NumberStatus(NumberState.ACTIVE, cap=5)
        assert await throttle.backend.get_policy(NUMBER) == RuntimePolicy(cap=5)
        assert await throttle.known_numbers() == [NUMBER]
        await throttle.set_cap(NUMBER, None)
        assert await throttle.known_numbers() == []


async def test_a_reaction_does_not_end_what_an_operator_set_for_good(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle(feedback=FEEDBACK) as throttle:
        await throttle.report(NUMBER, 477)
        await throttle.set_rates(NUMBER, "5/second")
        await throttle.report(OTHER, 477)
        await throttle.set_state(OTHER, "disabled", reason="rental expired")
        await anyio.sleep(LAPSE + 0.1)
        assert await throttle.known_numbers() == [NUMBER, OTHER]
        assert (await throttle.status(NUMBER)).rates is not None
        assert await throttle.status(OTHER) == NumberStatus(
            NumberState.DISABLED, reason="rental expired"
        )


async def test_setting_a_number_active_again_leaves_nothing_behind(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle() as throttle:
        await throttle.set_state(NUMBER, "disabled", reason="rental expired")
        await throttle.set_state(NUMBER, NumberState.ACTIVE)
        assert await throttle.status(NUMBER) == NumberStatus(NumberState.ACTIVE)
        assert await throttle.known_numbers() == []
        await throttle.set_state(NUMBER, NumberState.ACTIVE, reason="checked by hand")
        assert await throttle.status(NUMBER) == NumberStatus(
            NumberState.ACTIVE, reason="checked by hand"
        )
        assert await throttle.known_numbers() == [NUMBER]


@pytest.mark.parametrize("pause", [0.0, 0.3], ids=["picks-recorded", "picks-lapsed"])
async def test_an_emptied_pool_starts_its_round_robin_afresh(
    new_throttle: ThrottleFactory, pause: float
) -> None:
    """Whether or not the pool still records the slots its picks took. (The numbers share a
    tenant, as a pool's numbers that the configuration does not list must on Redis Cluster.)"""
    numbers = [NUMBER, OTHER, THIRD]
    async with new_throttle(lease_ttl=0.2, config={"default_tenant": "acme"}) as throttle:
        await throttle.add_to_pool("a", numbers)
        lease = await throttle.acquire_from("a", strategy="round-robin", timeout=0)
        assert lease.number == NUMBER
        await throttle.release(lease)
        await anyio.sleep(pause)
        await throttle.remove_from_pool("a", numbers)
        await throttle.add_to_pool("a", numbers)
        picked = []
        for _ in range(4):
            lease = await throttle.acquire_from("a", strategy="round-robin", timeout=0)
            picked.append(lease.number)
            await throttle.release(lease)
        assert picked == [NUMBER, OTHER, THIRD, NUMBER]


async def test_calls_counted_in_rate_windows_alone_do_not_keep_a_number_known(
    new_throttle: ThrottleFactory,
) -> None:
    """An idle number is not listed, though its windows still count its last calls."""
    config = {"default_profile": "p", "profiles": {"p": {"rates": "5/minute"}}}
    async with new_throttle(config=config) as throttle:
        await throttle.release(await throttle.acquire(NUMBER, timeout=0))
        assert [w.used for w in await throttle.window_usage(NUMBER)] == [1]
        assert await throttle.known_numbers() == []
