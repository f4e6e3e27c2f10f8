"""A simulated outbound dialing campaign, in accelerated time: per-number concurrency against
its cap.

Agents (coroutines) keep placing calls from a few caller-ID numbers, or from a pool: each takes a
slot (``throttle.slot(number)`` or ``throttle.slot_from(pool)``), holds the "call" for a time
drawn from the call-length distribution and hangs up; the carrier may refuse a share of the
calls, and the refusal is reported (``throttle.report``), which applies the configured reaction.
An agent that waits longer than the timeout counts a refusal and tries again later.

Times are *simulated* seconds: with ``speed=60`` a 10-minute campaign of 90-second calls runs in
10 s. Simulated clocks: the calls, the waits and timeouts, the reactions to carrier answers
(cool-downs, lowered caps, scaled to simulated time) and the calendar (``_calendar.py``: from
``start``, the throttle's ``calendar``, so numbers lapse at the simulated midnight their paid
period ends and a campaign of a few simulated days crosses it). Real clocks (the throttle's
own): rate windows, the lease TTL and a Redis fence (the summary says what that means for the
configured windows). What the campaign saw is
in ``_results.py``, put into words by ``_explain.py``. The campaign is driven from the command line by ``callthrottle simulate`` (and
``python -m callthrottle.simulate``, the same command: ``__main__.py``). This engine does not
depend on the command line; the command line depends on it."""

from __future__ import annotations

import math
import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio

from .._config import Config
from .._errors import AcquireTimeout, InvalidArgument, NumberUnavailable
from .._health import DEFAULT_FEEDBACK, NumberState
from .._throttle import Throttle
from .._validate import check_outcome
from ._calendar import SimulatedCalendar, check_start
from ._call_length import CallLength
from ._results import LAPSED, WAITED, CampaignResult, Departure, NumberReport
from ._words import cause_of

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .._health import NumberStatus, Reaction
    from .._models import Lease

__all__ = (
    "DEFAULT_CAPS", "WAITED", "CallLength", "CampaignResult", "Departure", "NumberReport",
    "SimulatedCalendar", "caller_ids", "run_campaign", "sparkline",
)  # fmt: skip

_BLOCKS = "▁▂▃▄▅▆▇█"

#: How often the numbers with a paid period are looked at: every simulated minute, at most
#: every 10 real milliseconds.
_WATCH = 60.0
_WATCH_REAL = 0.01

#: Four numbers from carriers with different rules: two at the common 20, one at 15, one at 3.
DEFAULT_CAPS = (20, 20, 15, 3)


def caller_ids(count: int) -> list[str]:
    """``count`` caller-ID numbers: +8657188880001, +8657188880002, ..."""
    return [f"+{8657188880000 + i}" for i in range(1, count + 1)]


def _reaction(config: Config, code: str) -> str:
    """What the throttle does when the carrier answers ``code``, in words."""
    reaction = {**DEFAULT_FEEDBACK, **config.feedback}.get(code)
    if reaction is None or reaction.action == "none":
        return "none"
    words = {"cooldown": "cool down", "flag": "flag", "lower_cap": "lower the cap"}
    text = words.get(reaction.action, reaction.action)
    if reaction.action == "lower_cap":
        text += f" to {reaction.cap}" if reaction.cap is not None else f" x{reaction.factor:g}"
    if reaction.seconds is not None:
        text += f" for {reaction.seconds:g} s"
    return text


def _scaled_feedback(config: Config, speed: float) -> dict[str | int, Reaction]:
    """The reactions to carrier answers, their durations in simulated time."""
    reactions = {**DEFAULT_FEEDBACK, **config.feedback}
    return {
        code: reaction if reaction.seconds is None else replace(
            reaction, seconds=reaction.seconds / speed
        )
        for code, reaction in reactions.items()
    }  # fmt: skip


def _failure(exc: AcquireTimeout | NumberUnavailable) -> tuple[str, str]:
    """A failed attempt's cause and its detail (the full window, the group, the state's
    reason)."""
    if isinstance(exc, NumberUnavailable):
        return cause_of(None, exc.state), exc.reason or ""
    cause = cause_of(exc.refused_by, None)
    return cause, "" if cause in ("cap", "pool") else exc.refused_by


def _state(status: NumberStatus) -> str:
    """The state a number is in, ``lowered`` for an active one whose cap is lowered."""
    if status.state is NumberState.ACTIVE and status.lowered_cap is not None:
        return "lowered"
    return status.state.value


def _windows(config: Config, numbers: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """The rate windows in force on ``numbers`` (their own and their trunks' and tenants'):
    their names and lengths in seconds."""
    found: dict[str, float] = {}
    for number in numbers:
        plan = config.rate_plan_for(number)
        for window in plan.windows:
            found.setdefault(str(window), window.seconds)
        for group in plan.groups:
            for window in group.windows:
                found.setdefault(f"{window} of {group.group}", window.seconds)
    return tuple(found.items())


async def run_campaign(
    numbers: Sequence[tuple[str, int]] | None = None,
    *,
    url: str = "memory://",
    config: Config | None = None,
    pool: str | None = None,
    agents: int = 80,
    duration: float = 600.0,
    call_length: CallLength | str = "exp:90",
    timeout: float = 60.0,
    speed: float = 60.0,
    reject_rate: float = 0.0,
    reject_code: str | int = 503,
    lease_ttl: float = 30.0,
    seed: int = 1,
    start: object = None,
    buckets: int = 200,
    options: dict[str, Any] | None = None,
    progress: Callable[[float, CampaignResult], None] | None = None,
) -> CampaignResult:
    """Dial for ``duration`` simulated seconds from ``numbers`` (``(number, cap)`` pairs;
    default: four numbers with :data:`DEFAULT_CAPS`), or from ``pool`` (made of those numbers
    unless ``config`` defines it). ``config`` gives caps and everything else; without it each
    number gets its cap from ``numbers``. A pool that ``config`` defines is reported on its
    members and its fallbacks' (as the backend lists them), each with the cap the throttle
    gives it (its own, its profile's, else the default), whether or not it is listed under
    ``[numbers]``. ``progress(fraction, result so far)`` is called about ten times a second.
    ``options`` go to :meth:`Throttle.from_url` (``key_prefix``).

    ``start`` is when the campaign begins on its calendar (ISO text such as
    ``"2027-01-30T09:00"``, in the configured time zone unless it has an offset; a
    ``datetime``; or seconds since the epoch; None: now). The calendar then advances with
    simulated time, and is the throttle's ``calendar``: a number whose ``paid_until`` passes
    during the campaign leaves it (:attr:`NumberReport.left`)."""
    if numbers is None:
        numbers = list(zip(caller_ids(len(DEFAULT_CAPS)), DEFAULT_CAPS, strict=True))
    if not numbers:
        raise InvalidArgument("numbers", numbers, "at least one (number, cap)")
    if not 0 <= reject_rate <= 1:
        raise InvalidArgument("reject_rate", reject_rate, "a fraction in [0, 1]")
    reject = check_outcome(reject_code)
    length = CallLength.parse(call_length) if isinstance(call_length, str) else call_length
    if config is None:
        config = Config.from_dict({"numbers": {n: {"cap": cap} for n, cap in numbers}})
    first = check_start(time.time() if start is None else start, config.timezone, duration)
    calendar = SimulatedCalendar(first, speed, config.timezone)
    rng = random.Random(seed)
    reports = {n: NumberReport(n, cap) for n, cap in numbers}
    by_index = list(reports.values())
    real = duration / speed
    tick = real / buckets
    result = CampaignResult(
        by_index, duration, speed, duration / buckets, pool, str(length), agents,
        mean_call=length.mean, reject_code=reject, reaction=_reaction(config, reject),
        start=first, zone=config.timezone,
    )  # fmt: skip
    started = 0.0  # when the campaign began (anyio's clock), set once every agent is ready

    def elapsed() -> float:
        """Simulated seconds since the campaign began."""
        return (anyio.current_time() - started) * speed

    def report_on(number: str, throttle: Throttle) -> NumberReport:
        """The report of ``number``; one joining during the campaign (a pool member added by
        another process) starts with empty timelines up to now."""
        report = reports.get(number)
        if report is None:
            report = reports[number] = NumberReport(
                number, config.cap_for(number, throttle.default_limit)
            )
            if by_index:
                report.timeline = [0] * len(by_index[0].timeline)
                report.queue = [0.0] * len(by_index[0].queue)
                report.states = ["active"] * len(by_index[0].states)
                report.limits = [report.cap] * len(by_index[0].limits)
            by_index.append(report)
        return report

    def failed(report: NumberReport | None, exc: AcquireTimeout | NumberUnavailable) -> None:
        cause, detail = _failure(exc)
        if (
            cause == "cap"
            and report is not None
            and report.limits
            and report.limits[-1] < report.cap
        ):
            cause = "lowered_cap"  # (as last sampled: a carrier's answer lowered it)
        timed_out = isinstance(exc, AcquireTimeout)
        result.causes[cause] += 1
        result.details[cause, detail] += 1
        result.timeouts += timed_out
        if report is not None and isinstance(exc, NumberUnavailable) and exc.state in LAPSED:
            report.saw(Departure(elapsed(), exc.state, exc.reason or "", "refused"))
        if report is not None:
            report.causes[cause] += 1
            report.details[cause, detail] += 1
            report.timeouts += timed_out

    async def call(report: NumberReport, lease: Lease, throttle: Throttle) -> None:
        """The call, from the first ring to the hang-up (or to the carrier's refusal)."""
        report.calls += 1
        report.began.append(elapsed())
        report.active += 1
        report.peak = max(report.peak, report.active)
        report.window = max(report.window, report.active)
        began = anyio.current_time()
        try:
            if reject_rate and rng.random() < reject_rate:
                report.rejected += 1
                await anyio.sleep(rng.uniform(1, 5) / speed)  # ringing, then refused
                await throttle.report(lease.number, reject)
            else:
                await anyio.sleep(length.sample(rng) / speed)
        finally:
            report.active -= 1
            report.busy += (anyio.current_time() - began) * speed

    async def agent(throttle: Throttle) -> None:
        # An attempt counts when it ends (placed or failed): one still waiting when the
        # campaign ends is not counted.
        while True:
            report = None if pool is not None else rng.choice(by_index)
            line = (result if report is None else report).line  # where this agent waits
            asked = anyio.current_time()
            line.move(asked, 1)
            in_line = True
            try:
                if report is None:
                    slot = throttle.slot_from(pool or "", timeout=timeout / speed)
                else:
                    slot = throttle.slot(report.number, timeout=timeout / speed)
                async with slot as lease:
                    line.move(anyio.current_time(), -1)
                    in_line = False
                    report = report_on(lease.number, throttle)
                    report.attempts += 1
                    result.attempts += 1
                    report.waits.append((anyio.current_time() - asked) * speed)
                    await call(report, lease, throttle)
            except (AcquireTimeout, NumberUnavailable) as exc:
                if not in_line:
                    raise
                line.move(anyio.current_time(), -1)
                result.attempts += 1
                if report is not None:
                    report.attempts += 1
                failed(report, exc)
                await anyio.sleep(rng.uniform(0, length.mean) / speed)

    def close_bucket() -> None:
        now = anyio.current_time()
        result.queue.append(result.line.close(now, tick))
        for report in by_index:
            report.queue.append(report.line.close(now, tick))
            report.timeline.append(report.window)
            report.window = report.active

    async def sample(throttle: Throttle, started: float) -> None:
        for bucket in range(1, buckets):  # the last bucket closes when the campaign ends
            await anyio.sleep_until(started + bucket * tick)
            close_bucket()
            await record_states(throttle)
            for report in by_index:
                usage = await throttle.usage(report.number)
                report.peak_reported = max(report.peak_reported, usage.in_use)

    async def record_states(throttle: Throttle, *, keep: bool = True) -> None:
        """Each number's state and cap now: those of the bucket that begins now (``keep``;
        at the campaign's end none begins: only a departure is noted)."""
        for report in by_index:
            status = await throttle.status(report.number)
            state = _state(status)
            if state in LAPSED:
                report.saw(Departure(elapsed(), state, status.reason or "", "status"))
            if not keep:
                continue
            report.states.append(state)
            lowered = status.lowered_cap
            report.limits.append(report.cap if lowered is None else min(lowered, report.cap))

    async def watch_terms(throttle: Throttle) -> None:
        """Ask the throttle, every simulated minute (at most a hundred times a real second),
        whether the numbers with a paid period are still in service: a pool skips a lapsed
        number without refusing anything, so this is when the campaign sees it leave."""
        every = max(min(tick, _WATCH / speed), _WATCH_REAL)
        while True:
            await anyio.sleep(every)
            for report in by_index:
                if report.left is None and config.term_for(report.number) is not None:
                    status = await throttle.status(report.number)
                    if status.state.value in LAPSED:
                        seen = Departure(
                            elapsed(), status.state.value, status.reason or "", "status"
                        )
                        report.saw(seen)

    async def show_progress(started: float) -> None:
        assert progress is not None
        while True:
            progress(min((anyio.current_time() - started) / real, 1.0), result)
            await anyio.sleep(0.1)

    feedback = _scaled_feedback(config, speed)
    async with Throttle.from_url(
        url, lease_ttl=lease_ttl, config=config, feedback=feedback, calendar=calendar,
        **(options or {}),
    ) as throttle:  # fmt: skip
        if pool is not None and pool not in config.pools:
            await throttle.add_to_pool(pool, list(reports))
        elif pool is not None:
            reports.clear()
            by_index.clear()
            for name in _pool_chain(config, pool):
                for number in await throttle.pool_members(name):
                    report_on(number, throttle)
        result.windows = _windows(config, list(reports))
        result.terms = any(config.term_for(n) is not None for n in reports)
        started = anyio.current_time()
        calendar.begin()
        await record_states(throttle)  # the first bucket's
        with anyio.move_on_after(real):
            async with anyio.create_task_group() as tg:
                for _ in range(agents):
                    tg.start_soon(agent, throttle)
                tg.start_soon(sample, throttle, started)
                if result.terms:
                    tg.start_soon(watch_terms, throttle)
                if progress is not None:
                    tg.start_soon(show_progress, started)
        result.elapsed = anyio.current_time() - started
        close_bucket()
        await record_states(throttle, keep=False)
        if progress is not None:
            progress(1.0, result)
        for report in by_index:
            report.leftover = (await throttle.usage(report.number)).in_use
        if pool is not None and pool not in config.pools:
            await throttle.remove_from_pool(pool, list(reports))
    return result


def _pool_chain(config: Config, pool: str) -> list[str]:
    """``pool`` and the pools it falls back on, in the order they are tried."""
    chain: list[str] = []
    name: str | None = pool
    while name is not None and name not in chain:
        chain.append(name)
        settings = config.pools.get(name)
        name = None if settings is None else settings.fallback
    return chain


def sparkline(values: Sequence[int], cap: int, width: int | None = None) -> str:
    """One character per value (or per ``width``-th of them: the peak of each stretch), ``█``
    at the cap, blank at 0, ``!`` above the cap."""
    if width is not None and len(values) > width:
        step = len(values) / width
        values = [
            max(values[math.floor(i * step) : max(math.floor((i + 1) * step), 1)])
            for i in range(width)
        ]
    return "".join(
        " " if v <= 0 else "!" if v > cap else _BLOCKS[math.ceil(v / cap * len(_BLOCKS)) - 1]
        for v in values
    )
