"""The carrier-side count itself: parsing sipp's message log and the peak of calls up."""

from __future__ import annotations

from datetime import datetime

from ._carrier import parse_trace, peak, peaks

DAY = "2026-12-04"


def _at(clock: str) -> float:
    return datetime.strptime(f"{DAY} {clock}", "%Y-%m-%d %H:%M:%S.%f").timestamp()


def _message(clock: str, sent: bool, lines: list[str]) -> str:
    head = "UDP message sent (100 bytes):" if sent else "UDP message received [100] bytes :"
    return f"{'-' * 47} {DAY} {clock}\n{head}\n\n" + "\n".join(lines) + "\n\n"


def _invite(clock: str, call_id: str, number: str) -> str:
    return _message(
        clock,
        False,
        [
            "INVITE sip:carrier@127.0.0.1:5080 SIP/2.0",
            "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1",
            f"From: <sip:{number}@127.0.0.1:5090>;tag=1",
            "To: <sip:carrier@127.0.0.1:5060>",
            f"Call-ID: {call_id}",
            "CSeq: 1 INVITE",
            "Content-Length: 0",
        ],
    )


def _ok(clock: str, call_id: str, method: str) -> str:
    return _message(
        clock,
        True,
        ["SIP/2.0 200 OK", f"Call-ID: {call_id}", f"CSeq: 1 {method}", "Content-Length: 0"],
    )


def _request(clock: str, method: str, call_id: str, *, sent: bool = False) -> str:
    return _message(
        clock,
        sent,
        [
            f"{method} sip:carrier@127.0.0.1:5080 SIP/2.0",
            f"Call-ID: {call_id}",
            f"CSeq: 2 {method}",
        ],
    )


A, B = "+8657188880001", "+8657188880004"

TRACE = "".join(
    [
        _invite("10:00:00.000", "c1", A),
        _ok("10:00:00.010", "c1", "INVITE"),
        _invite("10:00:00.100", "c2", A),
        _ok("10:00:00.110", "c2", "INVITE"),
        _ok("10:00:00.600", "c2", "INVITE"),  # a retransmission: the call was up already
        _invite("10:00:00.200", "c3", B),
        _ok("10:00:00.210", "c3", "INVITE"),
        _request("10:00:01.000", "BYE", "c1"),
        _ok("10:00:01.001", "c1", "BYE"),
        _invite("10:00:00.990", "c4", A),
        _ok("10:00:01.000", "c4", "INVITE"),  # answered as c1's BYE arrives: no overlap
        _invite("10:00:01.500", "c5", A),  # never answered: never up
        _request("10:00:02.000", "BYE", "c2"),
        _request("10:00:02.500", "BYE", "c4", sent=True),  # the carrier hung up
        _request("10:00:03.000", "BYE", "c3"),
        _request("10:00:03.100", "BYE", "c3"),  # a retransmitted BYE
    ]
)


def test_the_trace_gives_each_call_its_number_and_times() -> None:
    calls = parse_trace("sipp's header line\n" + TRACE)
    assert set(calls) == {"c1", "c2", "c3", "c4", "c5"}
    assert calls["c1"].number == A
    assert calls["c1"].offered == _at("10:00:00.000")
    assert calls["c3"].number == B
    assert calls["c2"].answered == _at("10:00:00.110")  # the first 200, not its retransmission
    assert calls["c3"].ended == _at("10:00:03.000")  # the first BYE
    assert calls["c4"].ended == _at("10:00:02.500")
    assert calls["c5"].answered is None


def test_peaks_count_calls_answered_and_not_yet_hung_up() -> None:
    assert peaks(parse_trace(TRACE).values()) == {A: 2, B: 1}


def test_a_call_not_hung_up_stays_up() -> None:
    trace = TRACE + _invite("10:00:02.700", "c6", A) + _ok("10:00:02.710", "c6", "INVITE")
    trace += _invite("10:00:02.800", "c7", A) + _ok("10:00:02.810", "c7", "INVITE")
    trace += _invite("10:01:00.000", "c8", A) + _ok("10:01:00.010", "c8", "INVITE")
    assert peaks(parse_trace(trace).values())[A] == 3  # c6, c7 (never hung up) and c8
    assert parse_trace(trace)["c7"].ended is None


def test_peak_of_intervals() -> None:
    assert peak([]) == 0
    assert peak([(0, 1), (1, 2), (2, 3)]) == 1  # back to back
    assert peak([(0, 10), (1, 2), (1.5, None), (3, 4)]) == 3
    assert peak([(5, 4)]) == 0  # over before it was up
