"""The carrier's view of the calls: read from the message log of the sipp carrier (``-trace_msg``).

Only what reached the carrier counts here, never the throttle's own bookkeeping: a call is up
from the moment the carrier answered it (its first ``200 OK`` to the INVITE) until the caller's
``BYE`` (or a ``CANCEL``) reached it, or the carrier sent its own ``BYE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ("CarrierCall", "parse_trace", "peak", "peaks")

# sipp writes each message after a line of dashes and the wall-clock time it was sent or read.
_SEPARATOR = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)$", re.MULTILINE)
_FROM_USER = re.compile(r"sips?:([^@;>\s]+)@")


@dataclass
class CarrierCall:
    """One call as the carrier saw it (times in seconds since the epoch).

    :ivar number: the caller-ID number: the user part of the INVITE's From
    :ivar offered: when the INVITE reached the carrier
    :ivar answered: when the carrier sent its 200 OK (None: never answered)
    :ivar ended: when the caller's BYE or CANCEL reached the carrier, or the carrier sent a BYE
        (None: not yet)
    """

    call_id: str
    number: str
    offered: float
    answered: float | None = None
    ended: float | None = None


def _header(lines: list[str], name: str) -> str:
    prefix = name.lower() + ":"
    for line in lines:
        if line.lower().startswith(prefix):
            return line[len(prefix) :].strip()
    return ""


def parse_trace(text: str) -> dict[str, CarrierCall]:
    """The calls in a carrier's message log, by Call-ID."""
    calls: dict[str, CarrierCall] = {}
    parts = _SEPARATOR.split(text)
    # parts: [before the first separator, time, block, time, block, ...]
    for stamp, block in zip(parts[1::2], parts[2::2], strict=True):
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        head, _, body = block.strip("\n").partition("\n")
        sent = "message sent" in head
        lines = body.strip("\n").splitlines()
        if not lines:
            continue
        start = lines[0]
        call_id = _header(lines, "Call-ID")
        if not call_id:
            continue
        cseq = _header(lines, "CSeq").split()
        method = cseq[-1].upper() if cseq else ""
        if not sent and start.startswith("INVITE ") and call_id not in calls:
            found = _FROM_USER.search(_header(lines, "From"))
            calls[call_id] = CarrierCall(call_id, found.group(1) if found else "", at)
            continue
        call = calls.get(call_id)
        if call is None:
            continue
        if sent and start.startswith("SIP/2.0 200") and method == "INVITE":
            if call.answered is None:
                call.answered = at
        elif call.ended is None and (
            start.startswith("BYE ") or (not sent and start.startswith("CANCEL "))
        ):  # the caller's BYE or CANCEL reached the carrier, or the carrier hung up
            call.ended = at
    return calls


def peak(intervals: Iterable[tuple[float, float | None]]) -> int:
    """The most intervals ``[start, end)`` open at one instant; an end of None never comes.

    An interval that ends at the instant another starts does not overlap it: a call hung up
    exactly when the next one is answered leaves the number at the same count.
    """
    events: list[tuple[float, int]] = []
    for start, end in intervals:
        if end is not None and end <= start:
            continue  # over before it was up (a CANCEL that crossed the answer)
        events.append((start, 1))
        if end is not None:
            events.append((end, -1))
    events.sort()  # at one instant, ends (-1) come before starts (+1)
    now = top = 0
    for _, step in events:
        now += step
        top = max(top, now)
    return top


def peaks(calls: Iterable[CarrierCall]) -> dict[str, int]:
    """Per caller-ID number, the most calls up at the carrier at one instant."""
    by_number: dict[str, list[tuple[float, float | None]]] = {}
    for call in calls:
        if call.answered is not None:
            by_number.setdefault(call.number, []).append((call.answered, call.ended))
    return {number: peak(intervals) for number, intervals in sorted(by_number.items())}
