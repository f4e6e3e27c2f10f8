"""The simulated dialing campaign engine (``callthrottle.simulate``); the command that drives it
is tested in ``tests/cli/test_simulate.py``."""

from __future__ import annotations

import random

import pytest

from callthrottle import Config, InvalidArgument
from callthrottle.simulate import CallLength, caller_ids, run_campaign, sparkline
from callthrottle.simulate._explain import collapsed, findings, number_cells


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
    assert result.causes["pool"] > 0  # 10 agents, 5 slots
    assert result.refusals["timed out: no number of the pool free"] == result.causes["pool"]
    assert result.attempts == result.calls + result.failed


async def test_carrier_rejections_are_reported_to_the_throttle() -> None:
    # 477 cools a number down: after its first rejection, calls on it are refused.
    result = await run_campaign(
        [(caller_ids(1)[0], 5)], agents=5, duration=30, speed=60, call_length="fixed:3",
        reject_rate=1.0, reject_code=477,
    )  # fmt: skip
    [report] = result.numbers
    assert report.rejected == report.calls >= 1
    assert result.refusals["carrier answered 477"] == report.calls
    assert report.causes["cooling"] > 0
    assert result.refusals["refused: cooling down (477 caller number over-frequency)"] > 0


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


async def test_cooling_refusals_are_counted_per_number_and_named_in_the_summary() -> None:
    # 477 cools a number down for an hour (a minute of real time at 60x): after its first
    # refusal a number refuses every call for the rest of the campaign.
    result = await run_campaign(
        list(zip(caller_ids(2), (3, 3), strict=True)), agents=8, duration=120, speed=60,
        call_length="fixed:10", timeout=5, reject_rate=0.5, reject_code=477, seed=3,
    )  # fmt: skip
    assert result.attempts == result.calls + result.failed
    for n in result.numbers:
        assert n.attempts == n.calls + n.timeouts + n.refused, n
        assert n.refused == n.causes["cooling"] > 0, n
        assert "cooling" in n.states
        assert n.state_time(result.bucket)["cooling"] > 0
        cells = number_cells(n, result)
        assert cells["why"].startswith(f"{n.causes['cooling']} cooling down")
        assert "cooling down" in cells["states"]
    assert collapsed(result)
    said = {f.level: f.text for f in findings(result)}
    refused = result.causes["cooling"]
    assert said["collapse"].startswith(
        f"most attempts did not become calls: {refused} of {result.attempts} attempts "
        "refused: numbers cooling down after the carrier answered 477 "
        "(477 caller number over-frequency)"
    )
    assert said["ok"] == "every number stayed within its cap"  # the cap check still stands


async def test_undersized_and_idle_numbers_are_warned_about() -> None:
    # 6 agents share a number capped at 1 (they queue, then time out) and one capped at 40.
    small, big = caller_ids(2)
    result = await run_campaign(
        [(small, 1), (big, 40)], agents=6, duration=120, speed=60, call_length="fixed:20",
        timeout=5,
    )  # fmt: skip
    report = result.numbers[0]
    assert report.causes["cap"] > 0
    assert max(report.queue) > 1  # callers waiting, on average over a stretch of time
    assert max(result.numbers[1].queue) < 1  # never at its cap: nobody waits long
    warnings = [f.text for f in findings(result) if f.level == "warning"]
    assert any(w.startswith(f"{small} undersized: at its cap of 1") for w in warnings), warnings
    assert any(w.startswith(f"{big} idle:") for w in warnings), warnings


async def test_rate_windows_count_real_time_and_the_summary_says_so() -> None:
    # The campaign's 120 simulated seconds take 2 real ones: a window of 2 calls a minute
    # admits 2 calls in the whole campaign, not one every 30 simulated seconds.
    number = caller_ids(1)[0]
    config = Config.from_dict({"numbers": {number: {"cap": 5, "rates": "2/minute"}}})
    result = await run_campaign(
        [(number, 5)], config=config, agents=3, duration=120, speed=60, call_length="fixed:1",
        timeout=5,
    )  # fmt: skip
    assert result.calls == 2
    assert result.causes["window"] > 0
    assert result.windows == (("2 per 60 s", 60.0),)
    notes = [f.text for f in findings(result) if f.level == "note"]
    assert any(
        "rate windows count real time" in note
        and "2 per 60 s spans 3600 simulated s, longer than the campaign" in note
        for note in notes
    ), notes


async def test_a_lowered_cap_is_a_state_and_timeouts_under_it_say_so() -> None:
    # 503 halves the cap for a minute: callers then time out at the lowered cap, not the cap.
    number = caller_ids(1)[0]
    result = await run_campaign(
        [(number, 4)], agents=8, duration=120, speed=60, call_length="fixed:10", timeout=3,
        reject_rate=0.5, reject_code=503,
    )  # fmt: skip
    [report] = result.numbers
    assert "lowered" in report.states
    assert min(report.limits) < 4
    assert len(report.limits) == len(report.states) == len(report.timeline)
    assert report.causes["lowered_cap"] > 0
    assert result.refusals["timed out: at its lowered cap"] == report.causes["lowered_cap"]
    assert "cap lowered" in number_cells(report, result)["states"]
