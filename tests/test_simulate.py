"""The simulated dialing campaign engine (``callthrottle.simulate``); the command that drives it
is tested in ``tests/cli/test_simulate.py``."""

from __future__ import annotations

import random

import pytest

from callthrottle import InvalidArgument
from callthrottle.simulate import CallLength, caller_ids, run_campaign, sparkline


async def test_campaign_fills_every_number_to_its_cap_and_never_over() -> None:
    numbers = list(zip(caller_ids(2), (4, 2), strict=True))
    # 12 agents against 6 slots in all: every number is contended.
    result = await run_campaign(
        numbers, agents=12, duration=60, speed=60, call_length="exp:12", timeout=18
    )

    assert [n.number for n in result.numbers] == caller_ids(2)
    assert result.within_caps
    for report, (_, cap) in zip(result.numbers, numbers, strict=True):
        assert report.cap == cap
        assert report.calls > 0
        assert report.peak == cap, report  # counted by the simulation itself
        assert report.peak_reported <= cap, report  # sampled from throttle.usage()
        assert len(report.waits) == report.calls
        assert report.leftover == 0  # every slot came back when the agents hung up
        assert len(report.timeline) == 200
        assert max(report.timeline) == cap
    assert result.calls == sum(n.calls for n in result.numbers)
    assert result.elapsed >= 1.0
    assert result.waited > 0


async def test_a_pool_campaign_spreads_calls_over_its_numbers() -> None:
    numbers = list(zip(caller_ids(3), (2, 2, 1), strict=True))
    result = await run_campaign(
        numbers, pool="campaign", agents=10, duration=30, speed=60, call_length="fixed:6",
        timeout=3,
    )  # fmt: skip
    assert result.within_caps
    assert all(n.calls > 0 for n in result.numbers)
    assert max(n.max_concurrency for n in result.numbers) == 2
    assert result.refusals["pool exhausted (timed out)"] > 0  # 10 agents, 5 slots


async def test_carrier_rejections_are_reported_to_the_throttle() -> None:
    # 477 cools a number down: after its first rejection, calls on it are refused.
    result = await run_campaign(
        [(caller_ids(1)[0], 5)], agents=5, duration=30, speed=60, call_length="fixed:3",
        reject_rate=1.0, reject_code=477,
    )  # fmt: skip
    [report] = result.numbers
    assert report.rejected == report.calls >= 1
    assert result.refusals["carrier answered 477"] == report.calls
    assert result.refusals["number cooling"] > 0


@pytest.mark.parametrize(
    ("text", "mean"),
    [("exp:90", 90.0), ("lognormal:60:0.8", 60.0), ("fixed:30", 30.0), ("uniform:10:20", 15.0)],
)
def test_call_lengths(text: str, mean: float) -> None:
    length = CallLength.parse(text)
    assert str(length) == text
    assert length.mean == mean
    rng = random.Random(7)
    samples = [length.sample(rng) for _ in range(20000)]
    assert all(s > 0 for s in samples)
    assert sum(samples) / len(samples) == pytest.approx(mean, rel=0.05)


@pytest.mark.parametrize(
    "text", ["exp", "exp:0", "exp:-3", "normal:90", "lognormal:60", "uniform:20:10", "fixed:x"]
)
def test_call_length_refuses_bad_input(text: str) -> None:
    with pytest.raises(InvalidArgument, match="call_length"):
        CallLength.parse(text)


def test_sparkline_draws_against_the_cap() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5], 4) == " ▂▄▆█!"
    assert sparkline([0, 4, 0, 0, 1, 1], 4, width=3) == "█ ▂"
