"""The simulated dialing campaign engine (``callthrottle.simulate``); the command that drives it
is tested in ``tests/cli/test_simulate.py``."""

from __future__ import annotations

import datetime as dt
import math
import random
import re
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from callthrottle import Config, InvalidArgument
from callthrottle.simulate import (
    CallLength,
    CampaignResult,
    Departure,
    NumberReport,
    SimulatedCalendar,
    caller_ids,
    run_campaign,
    sparkline,
)
from callthrottle.simulate._calendar import check_start
from callthrottle.simulate._explain import Finding, collapsed, departures, findings, number_cells


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


# -- the simulated calendar: a campaign across the day a number's paid period ends -----------

#: Three numbers in Shanghai; the third is paid until January 31st, so it lapses at midnight
#: between January 31st and February 1st, Shanghai time (16:00 UTC).
LAPSING = caller_ids(3)[2]
SHANGHAI = {
    "timezone": "Asia/Shanghai",
    "numbers": {
        **{n: {"cap": 3} for n in caller_ids(2)},
        LAPSING: {"cap": 3, "paid_until": "2027-01-31"},
    },
}
#: The campaign runs 4 simulated hours from 22:00 Shanghai time: the number lapses 2 hours in.
LAPSES = 2 * 3600.0


async def _across_midnight(**more: object) -> CampaignResult:
    options: dict[str, Any] = {
        "config": Config.from_dict(SHANGHAI), "agents": 8, "duration": 4 * 3600,
        "speed": 4800, "call_length": "exp:60", "timeout": 30, "start": "2027-01-31T22:00",
    }  # fmt: skip
    return await run_campaign(list(zip(caller_ids(3), (3, 3, 3), strict=True)), **(options | more))


async def test_a_number_leaves_at_the_simulated_midnight_its_paid_period_ends() -> None:
    # Needs Line.acquire to refuse a lapsed number (NumberUnavailable, state "expired").
    result = await _across_midnight()
    first, second, lapsing = result.numbers
    # The day before, it is in: it places calls up to the last minutes of January 31st (the
    # last one asked for before midnight; it may begin a few simulated seconds after it: a
    # real millisecond is 4.8 simulated seconds).
    assert lapsing.began
    assert LAPSES - 900 < max(lapsing.began) < LAPSES + 60
    # After midnight it is out: refused as expired, the first refusal right after midnight
    # (Shanghai time: read as UTC, 22:00 would already be February 1st 06:00, past it).
    assert lapsing.left is not None
    assert lapsing.left.state == "expired"
    assert LAPSES <= lapsing.left.at < LAPSES + 900
    assert lapsing.causes["expired"] == lapsing.refused > 0
    assert result.refusals[
        "refused: expired (paid until 2027-01-31; the carrier releases it on 2027-02-08 unless "
        "it is renewed)"
    ] == lapsing.refused  # fmt: skip
    # The other numbers stay in and carry the calls after midnight.
    assert first.left is None
    assert second.left is None
    assert first.calls_between(LAPSES, math.inf) > 0
    assert second.calls_between(LAPSES, math.inf) > 0
    [said] = [f.text for f in findings(result) if " left the campaign " in f.text]
    after = first.calls_between(lapsing.left.at, math.inf) + second.calls_between(
        lapsing.left.at, math.inf
    )
    assert re.fullmatch(
        rf"\{LAPSING} left the campaign on 2027-02-01 00:[01]\d \(Asia/Shanghai\): paid until "
        r"2027-01-31, expired; its last call began (2027-01-31 23:[45]\d|2027-02-01 00:00); the "
        r"other numbers "
        rf"placed {after} calls after it left \(\d+ an hour, against \d+ an hour before; it "
        r"carried \d+ an hour\)",
        said,
    ), said
    assert result.within_caps


async def test_a_campaign_up_to_the_end_of_the_last_day_paid_for_keeps_the_number() -> None:
    # January 31st from 19:50 to 23:50 Shanghai time: the last day paid for, to its last
    # minutes (read as UTC, 19:50 would be February 1st 03:50 in Shanghai: lapsed).
    result = await _across_midnight(start="2027-01-31T19:50")
    lapsing = result.numbers[2]
    assert lapsing.left is None
    assert lapsing.refused == 0
    assert max(lapsing.began) > 4 * 3600 - 900  # still dialing in its last minutes
    assert not any(" left the campaign " in f.text for f in findings(result))
    assert any(
        "2027-01-31 19:50 to 2027-01-31 23:50 (Asia/Shanghai)" in f.text for f in findings(result)
    )


async def test_the_campaign_calendar_starts_at_start_in_the_configured_time_zone() -> None:
    result = await run_campaign(
        [(LAPSING, 2)], config=Config.from_dict(SHANGHAI), agents=2, duration=3600,
        speed=3600, start="2027-01-31T22:00",
    )  # fmt: skip
    # 22:00 in Shanghai (UTC+8) is 14:00 UTC.
    assert result.start == dt.datetime(2027, 1, 31, 14, tzinfo=dt.timezone.utc).timestamp()
    [traffic] = [f.text for f in findings(result) if "calls placed" in f.text]
    assert "3600 simulated s (2027-01-31 22:00 to 2027-01-31 23:00 (Asia/Shanghai);" in traffic
    notes = [f.text for f in findings(result) if f.text.startswith("the calendar runs")]
    assert notes == [
        (
            "the calendar runs on simulated time (2027-01-31 22:00 to 2027-01-31 23:00 "
            "(Asia/Shanghai)): paid periods end at simulated midnights; rate windows, the "
            "lease TTL and a Redis fence count real time"
        )
    ]


def test_the_simulated_calendar_advances_with_simulated_time() -> None:
    calendar = SimulatedCalendar(1_800_000_000.0, 3600.0, None)
    assert calendar() == 1_800_000_000.0  # the campaign has not begun
    assert calendar.at(90) == 1_800_000_090.0
    calendar.begin()
    time.sleep(0.05)
    # 0.05 real seconds are 180 simulated ones (more if this machine is slow).
    assert 1_800_000_180.0 <= calendar() < 1_800_000_000.0 + 3600


@pytest.mark.parametrize(
    ("start", "duration"),
    [
        ("2027-02-30T09:00", 60), ("tomorrow", 60), ("", 60), ("2027-01-30T25:00", 60),
        ("9999-12-31T23:00", 7200), (True, 60), ([2027, 1, 30], 60),
    ],
)  # fmt: skip
async def test_a_bad_start_is_refused_before_the_campaign(start: object, duration: float) -> None:
    with pytest.raises(InvalidArgument, match=r"start.*a date and time such as 2027-01-30T09:00"):
        await run_campaign([(caller_ids(1)[0], 2)], duration=duration, start=start)


def test_start_reads_iso_text_dates_and_offsets() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    utc = dt.timezone.utc
    assert (
        check_start("2027-01-30T09:00", shanghai)
        == dt.datetime(2027, 1, 30, 1, tzinfo=utc).timestamp()
    )
    assert check_start("2027-01-30", None) == dt.datetime(2027, 1, 30, tzinfo=utc).timestamp()
    assert (
        check_start("2027-01-30 09:00+00:00", shanghai)
        == dt.datetime(2027, 1, 30, 9, tzinfo=utc).timestamp()
    )


def test_the_summary_says_when_a_number_left_and_what_the_others_took_over() -> None:
    # The words, from a campaign's figures as the engine records them.
    gone, kept = (NumberReport(n, 2) for n in caller_ids(2))
    gone.began = [10.0, 3000.0, 3500.0]
    gone.calls = 3
    kept.began = [100.0, 2000.0, 3700.0, 3800.0, 7000.0]
    kept.calls = 5
    reason = "paid until 2027-01-31; the carrier releases it on 2027-02-08 unless it is renewed"
    gone.saw(Departure(3650.0, "expired", reason, "refused"))
    gone.saw(Departure(3700.0, "expired", "", "status"))  # a later sighting changes nothing
    start = dt.datetime(2027, 1, 31, 23, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    result = CampaignResult(
        [gone, kept], 7200.0, 60.0, 36.0, pool="sales", agents=10, mean_call=100.0,
        start=start, zone=ZoneInfo("Asia/Shanghai"),
    )  # fmt: skip
    assert departures(result) == [Finding("note", (
        f"{gone.number} left the pool sales on 2027-02-01 00:00 (Asia/Shanghai): paid until "
        "2027-01-31, expired; its last call began 2027-01-31 23:58; the other numbers placed 3 "
        "calls after it left (3 an hour, against 2 an hour before; it carried 3 an hour)"
    ))]  # fmt: skip
    # The caps allow calls on a number only while it is in: 4 slots, then 2 after 3650 s.
    assert result.capacity == pytest.approx((4 * 3650 + 2 * 3550) / 100)
    # Seen only in its status (a pool skips the number: no attempt is refused); calls that
    # began on it after that are said, not hidden.
    gone.left = None
    gone.saw(Departure(3700.0, "released", "", "status"))
    gone.began += [5000.0, 5100.0]
    [said] = departures(result)
    assert said.text.startswith(
        f"{gone.number} left the pool sales on 2027-02-01 00:01 (Asia/Shanghai): released; its "
        "last call began 2027-01-31 23:58; yet 2 calls began on it after that, the first at "
        "2027-02-01 00:23;"
    )
    assert result.capacity == pytest.approx((4 * 3700 + 2 * 3500) / 100)


async def test_a_pool_skips_a_number_from_the_simulated_midnight_its_paid_period_ends() -> None:
    # Needs pools to skip a lapsed number (acquire_from) and Throttle.status to show it
    # expired: a pool refuses nothing, so the campaign sees the number leave in its status.
    config = Config.from_dict({**SHANGHAI, "pools": {"sales": {"numbers": caller_ids(3)}}})
    # Five state samples (every 48 simulated minutes): the watch on its status sees it first.
    result = await _across_midnight(config=config, pool="sales", buckets=5)
    first, second, lapsing = result.numbers
    assert lapsing.number == LAPSING
    assert LAPSES - 900 < max(lapsing.began) < LAPSES + 60
    assert lapsing.left is not None
    assert lapsing.left.state == "expired"
    # Its status is looked at every simulated minute.
    assert LAPSES <= lapsing.left.at < LAPSES + 300
    assert lapsing.calls_between(lapsing.left.at, math.inf) == 0  # never picked again
    assert first.calls_between(LAPSES, math.inf) > 0
    assert second.calls_between(LAPSES, math.inf) > 0
    assert "expired" in lapsing.states
    [said] = [f.text for f in findings(result) if " left the pool " in f.text]
    assert re.match(
        rf"\{LAPSING} left the pool sales on 2027-02-01 00:0\d \(Asia/Shanghai\): paid until "
        r"2027-01-31, expired; its last call began ",
        said,
    ), said


async def test_the_states_say_the_number_active_until_the_midnight_it_left() -> None:
    """The number lapses at a bucket's end (2 of 4 simulated hours, 200 buckets): the states
    column gives it active for those 2 hours, as the summary's "left ... on 2027-02-01 00:00"
    and its calls say, not expired from the bucket before midnight."""
    result = await _across_midnight()
    lapsing = result.numbers[2]
    assert number_cells(lapsing, result)["states"] == "active 7200 s, expired 7200 s"
