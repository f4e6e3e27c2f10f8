"""The simulated dialing campaign (``python -m callthrottle.simulate``)."""

from __future__ import annotations

import pytest

from callthrottle.simulate import caller_ids, main, run_campaign, sparkline


async def test_campaign_fills_every_number_to_its_cap_and_never_over() -> None:
    caps = (4, 2)
    # 12 agents against 6 slots in all: every number is contended.
    result = await run_campaign(caps, agents=12, duration=1.0, mean_call=0.2, timeout=0.3)

    assert [n.number for n in result.numbers] == caller_ids(2)
    assert result.within_caps
    for report, cap in zip(result.numbers, caps, strict=True):
        assert report.cap == cap
        assert report.calls > 0
        assert report.peak == cap, report  # counted by the simulation itself
        assert report.peak_reported <= cap, report  # sampled from throttle.usage()
        assert len(report.waits) == report.calls
        assert report.leftover == 0  # every slot came back when the agents hung up
        assert len(report.timeline) == 60
        assert max(report.timeline) == cap
    assert result.calls == sum(n.calls for n in result.numbers)
    assert result.elapsed >= 1.0


def test_sparkline_draws_against_the_cap() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5], 4) == " ▂▄▆█!"


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_main_prints_a_table_of_every_number(loop: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--agents", "10", "--caps", "3,2,1", "--duration", "0.5", "--mean-call", "0.1"]
    status = main([*argv, "--timeout", "0.2", "--loop", loop])

    out = capsys.readouterr().out
    assert status == 0, out
    table = out[out.index("number") :]
    for number in caller_ids(3):
        assert table.count(number) == 2, out  # a table row and a chart row
    assert "every number stayed within its cap" in out
    assert "✗" not in out


def test_main_refuses_numbers_that_disagree_with_caps(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--numbers", "3", "--caps", "20,15"])
    assert exited.value.code == 2
    assert "--caps lists 2 caps" in capsys.readouterr().err


def test_main_refuses_a_cap_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--caps", "20,0"])
    assert "must be > 0" in capsys.readouterr().err
