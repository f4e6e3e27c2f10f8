"""A simulated outbound dialing campaign, in accelerated time: per-number concurrency against
its cap.

Agents (coroutines) keep placing calls from a few caller-ID numbers, or from a pool: each takes a
slot (``throttle.slot(number)`` or ``throttle.slot_from(pool)``), holds the "call" for a time
drawn from the call-length distribution and hangs up; the carrier may refuse a share of the
calls, and the refusal is reported (``throttle.report``), which applies the configured reaction.
An agent that waits longer than the timeout counts a refusal and tries again later.

Times are *simulated* seconds: with ``speed=60`` a 10-minute campaign of 90-second calls runs in
10 s. The campaign is driven from the command line by ``callthrottle simulate`` (and
``python -m callthrottle.simulate``, the same command: ``__main__.py``). This engine does not
depend on the command line; the command line depends on it."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import anyio

from .._config import Config
from .._errors import AcquireTimeout, InvalidArgument, NumberUnavailable, PoolExhausted
from .._health import DEFAULT_FEEDBACK
from .._throttle import Throttle
from .._validate import check_outcome

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .._health import Reaction

__all__ = (
    "DEFAULT_CAPS", "CallLength", "CampaignResult", "NumberReport", "caller_ids", "run_campaign",
    "sparkline",
)  # fmt: skip

_BLOCKS = "▁▂▃▄▅▆▇█"

#: Four numbers from carriers with different rules: two at the common 20, one at 15, one at 3.
DEFAULT_CAPS = (20, 20, 15, 3)


def caller_ids(count: int) -> list[str]:
    """``count`` caller-ID numbers: +8657188880001, +8657188880002, ..."""
    return [f"+{8657188880000 + i}" for i in range(1, count + 1)]


_ARITY = {"exp": 1, "lognormal": 2, "fixed": 1, "uniform": 2}  # parameters of each distribution
_CALL_LENGTH_RULE = (
    "exp:MEAN, lognormal:MEAN:SIGMA, fixed:SECONDS or uniform:LOW:HIGH, in seconds > 0 "
    "(e.g. exp:90)"
)


@dataclass(frozen=True)
class CallLength:
    """How long calls last (simulated seconds):

    - ``exp:MEAN``: exponential with that mean (the default, ``exp:90``)
    - ``lognormal:MEAN:SIGMA``: log-normal with that mean, ``SIGMA`` the spread of its log
      (real call lengths are close to this: many short calls, a long tail)
    - ``fixed:SECONDS``: every call the same length
    - ``uniform:LOW:HIGH``: evenly spread between the two
    """

    kind: str
    params: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> CallLength:
        kind, _, rest = text.partition(":")
        arity = _ARITY.get(kind)
        try:
            params = tuple(float(part) for part in rest.split(":")) if rest else ()
        except ValueError:
            params = ()
        if arity is None or len(params) != arity or not all(0 < p < math.inf for p in params):
            raise InvalidArgument("call_length", text, _CALL_LENGTH_RULE)
        if kind == "uniform" and params[0] > params[1]:
            raise InvalidArgument("call_length", text, "uniform:LOW:HIGH with LOW <= HIGH")
        return cls(kind, params)

    @property
    def mean(self) -> float:
        if self.kind == "uniform":
            return (self.params[0] + self.params[1]) / 2
        return self.params[0]

    def sample(self, rng: random.Random) -> float:
        if self.kind == "exp":
            return rng.expovariate(1 / self.params[0])
        if self.kind == "lognormal":
            mean, sigma = self.params
            return rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)
        if self.kind == "uniform":
            return rng.uniform(*self.params)
        return self.params[0]

    def __str__(self) -> str:
        return ":".join([self.kind, *(f"{p:g}" for p in self.params)])


@dataclass
class NumberReport:
    """What the campaign saw on one caller-ID number (times in simulated seconds)."""

    number: str
    cap: int
    calls: int = 0  # calls placed (slots granted)
    rejected: int = 0  # of which the carrier refused
    timeouts: int = 0  # acquires on this number that gave up after the timeout
    peak: int = 0  # most calls up at once, counted by the simulation itself
    peak_reported: int = 0  # most in_use that throttle.usage() reported in the samples
    leftover: int = 0  # in_use after the campaign ended and every agent hung up (should be 0)
    waits: list[float] = field(default_factory=list, repr=False)  # per placed call
    timeline: list[int] = field(default_factory=list, repr=False)  # peak per time bucket
    active: int = field(default=0, repr=False)  # calls up right now
    window: int = field(default=0, repr=False)  # peak since the last sample

    @property
    def max_concurrency(self) -> int:
        return max(self.peak, self.peak_reported)

    @property
    def within_cap(self) -> bool:
        return self.max_concurrency <= self.cap

    def wait(self, quantile: float) -> float:
        """The ``quantile`` (0..1) of the placed calls' waits for a slot, in seconds."""
        return _quantile(self.waits, quantile)


def _quantile(values: Sequence[float], quantile: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(max(math.ceil(quantile * len(ordered)) - 1, 0), len(ordered) - 1)]


#: A call that waited longer than this (simulated seconds) for its slot counts as a wait.
WAITED = 1.0


@dataclass
class CampaignResult:
    """A campaign's outcome. Times are simulated seconds unless said otherwise."""

    numbers: list[NumberReport]
    duration: float  # the campaign's planned length
    speed: float  # simulated seconds per real second
    bucket: float  # the length of one timeline bucket
    pool: str | None = None
    call_length: str = ""
    agents: int = 0
    elapsed: float = 0.0  # how long it really ran (real seconds)
    refusals: Counter[str] = field(default_factory=Counter)  # by reason

    @property
    def within_caps(self) -> bool:
        return all(n.within_cap for n in self.numbers)

    @property
    def calls(self) -> int:
        return sum(n.calls for n in self.numbers)

    @property
    def waits(self) -> list[float]:
        return [w for n in self.numbers for w in n.waits]

    @property
    def waited(self) -> int:
        """Placed calls that waited for their slot (longer than :data:`WAITED`)."""
        return sum(1 for w in self.waits if w > WAITED)


def _scaled_feedback(config: Config, speed: float) -> dict[str | int, Reaction]:
    """The reactions to carrier answers, their durations in simulated time."""
    reactions = {**DEFAULT_FEEDBACK, **config.feedback}
    return {
        code: reaction if reaction.seconds is None else replace(
            reaction, seconds=reaction.seconds / speed
        )
        for code, reaction in reactions.items()
    }  # fmt: skip


def _refusal_reason(exc: Exception) -> str:
    if isinstance(exc, NumberUnavailable):
        return f"number {exc.state}"
    if isinstance(exc, PoolExhausted):
        return "pool exhausted (timed out)"
    if isinstance(exc, AcquireTimeout):
        return f"timed out: {exc.refused_by}"
    raise exc


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
    ``options`` go to :meth:`Throttle.from_url` (``key_prefix``)."""
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
    rng = random.Random(seed)
    reports = {n: NumberReport(n, cap) for n, cap in numbers}
    by_index = list(reports.values())
    real = duration / speed
    tick = real / buckets
    result = CampaignResult(
        by_index, duration, speed, duration / buckets, pool, str(length), agents
    )

    def report_on(number: str, throttle: Throttle) -> NumberReport:
        """The report of ``number``; one joining during the campaign (a pool member added by
        another process) starts with an empty timeline up to now."""
        report = reports.get(number)
        if report is None:
            report = reports[number] = NumberReport(
                number, config.cap_for(number, throttle.default_limit)
            )
            report.timeline = [0] * (len(by_index[0].timeline) if by_index else 0)
            by_index.append(report)
        return report

    async def agent(throttle: Throttle) -> None:
        while True:
            report = None if pool is not None else rng.choice(by_index)
            asked = anyio.current_time()
            try:
                if report is None:
                    slot = throttle.slot_from(pool or "", timeout=timeout / speed)
                else:
                    slot = throttle.slot(report.number, timeout=timeout / speed)
                async with slot as lease:
                    report = report_on(lease.number, throttle)
                    report.waits.append((anyio.current_time() - asked) * speed)
                    report.calls += 1
                    report.active += 1
                    report.peak = max(report.peak, report.active)
                    report.window = max(report.window, report.active)
                    try:
                        if reject_rate and rng.random() < reject_rate:
                            report.rejected += 1
                            result.refusals[f"carrier answered {reject}"] += 1
                            await anyio.sleep(rng.uniform(1, 5) / speed)  # ringing, then refused
                            await throttle.report(lease.number, reject)
                        else:
                            await anyio.sleep(length.sample(rng) / speed)
                    finally:
                        report.active -= 1
            except (AcquireTimeout, NumberUnavailable) as exc:
                result.refusals[_refusal_reason(exc)] += 1
                if report is not None and isinstance(exc, AcquireTimeout):
                    report.timeouts += 1
                await anyio.sleep(rng.uniform(0, length.mean) / speed)

    def close_bucket() -> None:
        for report in by_index:
            report.timeline.append(report.window)
            report.window = report.active

    async def sample(throttle: Throttle, started: float) -> None:
        for bucket in range(1, buckets):  # the last bucket closes when the campaign ends
            await anyio.sleep_until(started + bucket * tick)
            close_bucket()
            for report in by_index:
                usage = await throttle.usage(report.number)
                report.peak_reported = max(report.peak_reported, usage.in_use)

    async def show_progress(started: float) -> None:
        assert progress is not None
        while True:
            progress(min((anyio.current_time() - started) / real, 1.0), result)
            await anyio.sleep(0.1)

    feedback = _scaled_feedback(config, speed)
    async with Throttle.from_url(
        url, lease_ttl=lease_ttl, config=config, feedback=feedback, **(options or {})
    ) as throttle:
        if pool is not None and pool not in config.pools:
            await throttle.add_to_pool(pool, list(reports))
        elif pool is not None:
            reports.clear()
            by_index.clear()
            for name in _pool_chain(config, pool):
                for number in await throttle.pool_members(name):
                    report_on(number, throttle)
        started = anyio.current_time()
        with anyio.move_on_after(real):
            async with anyio.create_task_group() as tg:
                for _ in range(agents):
                    tg.start_soon(agent, throttle)
                tg.start_soon(sample, throttle, started)
                if progress is not None:
                    tg.start_soon(show_progress, started)
        result.elapsed = anyio.current_time() - started
        close_bucket()
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
