"""A campaign's outcome in words: the sentences and table cells the command line and the HTML
report both show (their words come from ``_words.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._calendar import local_text, zone_name
from ._results import quantile_of
from ._words import COLUMNS, REFUSED, TIMED_OUT, cause_words, failure_kind, state_words

if TYPE_CHECKING:
    from ._results import CampaignResult, NumberReport

__all__ = ("Finding", "collapsed", "departures", "findings", "number_cells", "pool_cells")

#: A number timing out this share of its attempts at its cap, while at its cap at least
#: :data:`BUSY` of the time, is undersized.
SATURATED = 0.10
BUSY = 0.50
#: A number using less than this share of its cap on average, or with no call up this share
#: of the time, is idle.
IDLE = 0.10
UNUSED = 0.50
#: A state other than active held this share of the time is named as why a number was idle.
NOTABLE_STATE = 0.25


@dataclass(frozen=True)
class Finding:
    """One sentence of the summary. ``level``: ``"ok"``, ``"error"`` (the cap was exceeded),
    ``"collapse"`` (most attempts did not become calls), ``"warning"`` or ``"note"``."""

    level: str
    text: str


def _about(calls: float) -> str:
    return f"{calls:.0f}" if calls >= 10 else f"{calls:.1f}"


def _pct(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "0%"


def _detail(where: NumberReport | CampaignResult, cause: str) -> str:
    """The most frequent detail of ``cause``: the state's reason, the window, the group."""
    found = [(count, detail) for (c, detail), count in where.details.items() if c == cause]
    detail = max(found)[1] if found else ""
    return f" ({detail})" if detail else ""


def _why(report: NumberReport | CampaignResult) -> str:
    """Failed attempts by cause, the most frequent first: ``"552 cooling down, 9 at its cap"``
    (the details are in the refusals by reason)."""
    return ", ".join(f"{count} {cause_words(c)}" for c, count in report.causes.most_common())


def _states(report: NumberReport, result: CampaignResult) -> str:
    """How long it spent in each state: ``"active 48 s, cooling down 552 s"``."""
    spent = report.state_time(result.bucket)
    if list(spent) == ["active"]:
        return "active"
    return ", ".join(f"{state_words(state)} {seconds:.0f} s" for state, seconds in spent.items())


def number_cells(report: NumberReport, result: CampaignResult) -> dict[str, str]:
    """One row of the per-number table, by :data:`COLUMNS` (plain text)."""
    n = report
    cells = {
        "number": n.number,
        "cap": str(n.cap),
        "attempts": str(n.attempts),
        "placed": f"{n.calls} ({_pct(n.calls, n.attempts)})",
        TIMED_OUT: f"{n.timeouts} ({_pct(n.timeouts, n.attempts)})",
        REFUSED: f"{n.refused} ({_pct(n.refused, n.attempts)})",
        "why": _why(n) or "-",
        "states": _states(n, result),
        "max up": str(n.max_concurrency),
        "<= cap": "yes" if n.within_cap else "NO",
        "wait p50": f"{n.wait(0.5):.1f} s",
        "wait p99": f"{n.wait(0.99):.1f} s",
    }
    assert tuple(cells) == COLUMNS
    return cells


def pool_cells(result: CampaignResult) -> dict[str, str]:
    """The pool's row of the per-number table, when dialing from a pool: its callers ask the
    pool, and a failed ask (no number free, all cooling, ...) belongs to no number."""
    r = result
    waits = sorted(r.waits)
    return {
        "number": f"pool {r.pool}",
        "cap": str(sum(n.cap for n in r.numbers)),
        "attempts": str(r.attempts),
        "placed": f"{r.calls} ({_pct(r.calls, r.attempts)})",
        TIMED_OUT: f"{r.timeouts} ({_pct(r.timeouts, r.attempts)})",
        REFUSED: f"{r.refused} ({_pct(r.refused, r.attempts)})",
        "why": _why(r) or "-",
        "states": "-",
        "max up": "-",
        "<= cap": "-",
        "wait p50": f"{quantile_of(waits, 0.5):.1f} s",
        "wait p99": f"{quantile_of(waits, 0.99):.1f} s",
    }


def collapsed(result: CampaignResult) -> bool:
    """Most attempts did not become calls."""
    return result.failed > result.calls


def calendar_span(result: CampaignResult) -> str:
    """``2027-01-30 09:00 to 2027-02-02 09:00 (Asia/Shanghai)``: the campaign on its
    calendar."""
    first = local_text(result.start, result.zone)
    last = local_text(result.start + result.duration, result.zone)
    return f"{first} to {last} ({zone_name(result.zone)})"


def _traffic(result: CampaignResult) -> Finding:
    text = (
        f"{result.calls} calls placed of {result.attempts} attempts in {result.duration:g} "
        f"simulated s ({calendar_span(result)}; {result.elapsed:.1f} s real), "
        f"{result.waited} waited for a slot; the caps allow about "
        f"{_about(result.capacity)} calls"
    )
    if result.rejected:
        text += (
            f"; the carrier answered {result.reject_code} to {result.rejected} calls "
            f"(reaction: {result.reaction}, in simulated time)"
        )
    return Finding("note", text)


def _collapse(result: CampaignResult) -> Finding:
    """Most attempts failed: by how much, and the causes, the main one first."""
    parts: list[str] = []
    for cause, count in result.causes.most_common():
        kind = failure_kind(cause)
        part = f"{count} {kind}: " if parts else f"{count} of {result.attempts} attempts {kind}: "
        if kind == REFUSED:  # a state: say what put the numbers in it
            part += f"numbers {cause_words(cause)}"
            if result.rejected:
                part += f" after the carrier answered {result.reject_code}"
        else:
            part += cause_words(cause)
        parts.append(part + _detail(result, cause))
    share = _pct(result.calls, result.capacity)
    return Finding(
        "collapse",
        "most attempts did not become calls: " + "; ".join(parts) + f". {result.calls} calls "
        f"placed, {share} of the about {_about(result.capacity)} the caps allow",
    )


def _verdict(result: CampaignResult) -> Finding:
    # Never above the cap is the throttle's guarantee: said whatever else went wrong.
    if result.within_caps:
        return Finding("ok", "every number stayed within its cap")
    over = ", ".join(n.number for n in result.numbers if not n.within_cap)
    return Finding("error", f"CAP EXCEEDED on {over}")


def _warnings(result: CampaignResult) -> list[Finding]:
    found = []
    for n in result.numbers:
        at_cap, cap_timeouts = n.at_cap(), n.causes["cap"]
        if n.attempts and cap_timeouts >= SATURATED * n.attempts and at_cap >= BUSY:
            found.append(Finding("warning", (
                f"{n.number} undersized: at its cap of {n.cap} {at_cap:.0%} of the time, and "
                f"{cap_timeouts} of {n.attempts} attempts ({_pct(cap_timeouts, n.attempts)}) "
                f"{TIMED_OUT} waiting for a slot"
            )))  # fmt: skip
        use, unused = n.use(result.duration), n.unused()
        if use < IDLE or unused >= UNUSED:
            text = (
                f"{n.number} idle: no call up {unused:.0%} of the time, {use:.0%} of its cap "
                "used on average"
            )
            for state, seconds in n.state_time(result.bucket).items():
                if state != "active" and seconds >= NOTABLE_STATE * result.duration:
                    text += f"; {state_words(state)} {_pct(seconds, result.duration)} of the time"
            if n.attempts < n.cap:
                text += f"; only {n.attempts} attempts"
            found.append(Finding("warning", text))
    return found


def _time_notes(result: CampaignResult) -> list[Finding]:
    """Rate windows count real time: in a compressed run they do not mean what they say."""
    if result.speed == 1 or not result.windows:
        return []
    said = []
    for name, seconds in result.windows:
        span = seconds * result.speed
        if span >= result.duration:
            said.append(
                f"{name} spans {span:g} simulated s, longer than the campaign, so it only caps "
                "the campaign's total"
            )
        else:
            said.append(f"{name} spans {span:g} simulated s")
    return [Finding("note", (
        f"rate windows count real time, not simulated time (carrier reactions are scaled, "
        f"windows are not): at {result.speed:g}x " + "; ".join(said)
    ))]  # fmt: skip


def _calendar_note(result: CampaignResult) -> list[Finding]:
    if not result.terms:
        return []
    return [Finding("note", (
        f"the calendar runs on simulated time ({calendar_span(result)}): paid periods end at "
        "simulated midnights; rate windows, the lease TTL and a Redis fence count real time"
    ))]  # fmt: skip


def _fence_note(result: CampaignResult) -> list[Finding]:
    if not result.causes["fence"]:
        return []
    return [Finding("note", (
        "a Redis server that may have lost its data (restarted, flushed, or up for less than "
        "a lease TTL) admits no new call for a lease TTL, in real time; `callthrottle "
        "lift-fence` ends that at once when no call can be up"
    ))]  # fmt: skip


def _hourly(calls: int, seconds: float) -> str:
    return f"{calls / seconds * 3600:.0f} an hour" if seconds > 0 else "none an hour"


def _why_left(report: NumberReport) -> str:
    """``paid until 2027-01-31, expired``: the throttle's reason (its first clause, which
    names the date) and the state it gave."""
    assert report.left is not None
    reason = report.left.reason.partition(";")[0].strip()
    return f"{reason}, {report.left.state}" if reason else report.left.state


def departures(result: CampaignResult) -> list[Finding]:
    """Each number the campaign saw leave for its paid period (an attempt on it refused, or
    its status, as expired or released): when on the calendar (the first time it was seen out;
    its last call before says since when it may have been), why, and the calls the other
    numbers placed after it left against before (all counted in the run)."""
    said = []
    where = f"the pool {result.pool}" if result.pool else "the campaign"
    zone = zone_name(result.zone)
    gone = [(n.left, n) for n in result.numbers if n.left is not None]
    for left, n in sorted(gone, key=lambda pair: pair[0].at):
        text = (
            f"{n.number} left {where} on {local_text(result.at(left.at), result.zone)} "
            f"({zone}): {_why_left(n)}"
        )
        before = [t for t in n.began if t < left.at]
        if before:
            text += f"; its last call began {local_text(result.at(max(before)), result.zone)}"
        later = [t for t in n.began if t >= left.at]
        if later:  # a caller in line since before, or a renewal: said, not hidden
            first = local_text(result.at(min(later)), result.zone)
            text += f"; yet {len(later)} calls began on it after that, the first at {first}"
        others = [o for o in result.numbers if o is not n]
        if others:
            after = sum(o.calls_between(left.at, math.inf) for o in others)
            earlier = sum(o.calls_between(0.0, left.at) for o in others)
            text += (
                f"; the other numbers placed {after} calls after it left "
                f"({_hourly(after, result.duration - left.at)}, against "
                f"{_hourly(earlier, left.at)} before; it carried "
                f"{_hourly(len(before), left.at)})"
            )
        said.append(Finding("note", text))
    return said


def findings(result: CampaignResult) -> list[Finding]:
    """The summary's sentences, in the order shown."""
    said = [_traffic(result), *departures(result)]
    if collapsed(result):
        said.append(_collapse(result))
    said.append(_verdict(result))
    said += _warnings(result)
    leaked = [f"{n.number} ({n.leftover})" for n in result.numbers if n.leftover]
    if leaked:
        said.append(
            Finding("error", "slots still in use after every agent hung up: " + ", ".join(leaked))
        )
    return said + _calendar_note(result) + _fence_note(result) + _time_notes(result)
