"""A short simulated outbound dialing campaign: per-number concurrency against its cap.

Agents (coroutines) keep placing calls from a few caller IDs: each takes a slot with
``throttle.slot(number, limit=cap)``, holds the "call" for an exponentially distributed time and
hangs up; an agent that waits longer than ``--timeout`` counts a refusal and retries later. At the
end a table and a chart per number show the peak concurrency against the cap; the exit status is
0 if no number ever exceeded its cap, 1 if one did, 2 on bad arguments or a backend error::

    python -m callthrottle.simulate --agents 120 --caps 20,15,3
"""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import math
import random
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO, TypeVar

import anyio

from ._errors import AcquireTimeout, ThrottleError
from ._throttle import Throttle

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ("CampaignResult", "NumberReport", "caller_ids", "main", "run_campaign", "sparkline")

_N = TypeVar("_N", int, float)
_BLOCKS = "▁▂▃▄▅▆▇█"
_CHART_COLUMNS = 60


def caller_ids(count: int) -> list[str]:
    """``count`` caller-ID numbers: +8657188880001, +8657188880002, ..."""
    return [f"+{8657188880000 + i}" for i in range(1, count + 1)]


@dataclass
class NumberReport:
    """What the campaign saw on one caller-ID number."""

    number: str
    cap: int
    calls: int = 0  # calls placed (slots granted)
    timeouts: int = 0  # acquires that gave up after --timeout
    peak: int = 0  # most calls up at once, counted by the simulation itself
    peak_reported: int = 0  # most in_use that throttle.usage() reported in the samples
    leftover: int = 0  # in_use after the campaign ended and every agent hung up (should be 0)
    waits: list[float] = field(default_factory=list, repr=False)  # seconds, per placed call
    timeline: list[int] = field(default_factory=list, repr=False)  # peak per time bucket
    active: int = field(default=0, repr=False)  # calls up right now
    window: int = field(default=0, repr=False)  # peak since the last sample

    @property
    def within_cap(self) -> bool:
        return max(self.peak, self.peak_reported) <= self.cap

    def wait_ms(self, quantile: float) -> float:
        """The ``quantile`` (0..1) of the placed calls' waits for a slot, in milliseconds."""
        if not self.waits:
            return 0.0
        ordered = sorted(self.waits)
        rank = min(max(math.ceil(quantile * len(ordered)) - 1, 0), len(ordered) - 1)
        return ordered[rank] * 1000


@dataclass
class CampaignResult:
    numbers: list[NumberReport]
    duration: float  # the campaign's planned length, seconds
    elapsed: float  # how long it really ran, seconds

    @property
    def within_caps(self) -> bool:
        return all(n.within_cap for n in self.numbers)

    @property
    def calls(self) -> int:
        return sum(n.calls for n in self.numbers)


async def run_campaign(
    caps: Sequence[int] = (20, 20, 20, 20),
    *,
    url: str = "memory://",
    agents: int = 60,
    duration: float = 6.0,
    mean_call: float = 0.8,
    timeout: float = 2.0,
    lease_ttl: float = 30.0,
    seed: int = 1,
    progress: TextIO | None = None,
) -> CampaignResult:
    """Dial for ``duration`` seconds from ``len(caps)`` numbers; write progress if asked."""
    rng = random.Random(seed)
    reports = [NumberReport(n, cap) for n, cap in zip(caller_ids(len(caps)), caps, strict=True)]
    tick = duration / _CHART_COLUMNS

    async def agent(throttle: Throttle) -> None:
        while True:
            report = rng.choice(reports)
            asked = anyio.current_time()
            try:
                async with throttle.slot(report.number, limit=report.cap, timeout=timeout):
                    report.waits.append(anyio.current_time() - asked)
                    report.calls += 1
                    report.active += 1
                    report.peak = max(report.peak, report.active)
                    report.window = max(report.window, report.active)
                    try:
                        await anyio.sleep(rng.expovariate(1 / mean_call))
                    finally:
                        report.active -= 1
            except AcquireTimeout:
                report.timeouts += 1
                await anyio.sleep(rng.uniform(0, mean_call))

    def close_bucket() -> None:
        for report in reports:
            report.timeline.append(report.window)
            report.window = report.active

    async def sample(throttle: Throttle, started: float) -> None:
        for bucket in range(1, _CHART_COLUMNS):  # the last bucket closes when the campaign ends
            await anyio.sleep_until(started + bucket * tick)
            close_bucket()
            for report in reports:
                usage = await throttle.usage(report.number, limit=report.cap)
                report.peak_reported = max(report.peak_reported, usage.in_use)

    async def show_progress(out: TextIO, started: float) -> None:
        tty = out.isatty()
        for step in itertools.count(1):
            await anyio.sleep_until(started + step * (0.2 if tty else 1.0))
            in_use = " ".join(f"{r.active}/{r.cap}" for r in reports)
            calls = sum(r.calls for r in reports)
            line = f"{anyio.current_time() - started:5.1f}/{duration:.1f} s  calls {calls:6}"
            line += f"  in use {in_use}"
            out.write(f"\r{line:79}" if tty else f"{line}\n")
            out.flush()

    async with Throttle.from_url(url, lease_ttl=lease_ttl) as throttle:
        started = anyio.current_time()
        with anyio.move_on_after(duration):
            async with anyio.create_task_group() as tg:
                for _ in range(agents):
                    tg.start_soon(agent, throttle)
                tg.start_soon(sample, throttle, started)
                if progress is not None:
                    tg.start_soon(show_progress, progress, started)
        elapsed = anyio.current_time() - started
        close_bucket()
        if progress is not None and progress.isatty():
            progress.write("\n")
        for report in reports:
            report.leftover = (await throttle.usage(report.number, limit=report.cap)).in_use
    return CampaignResult(reports, duration, elapsed)


def sparkline(values: Sequence[int], cap: int) -> str:
    """One character per value, ``█`` at the cap, blank at 0, ``!`` above the cap."""
    return "".join(
        " " if v <= 0 else "!" if v > cap else _BLOCKS[math.ceil(v / cap * len(_BLOCKS)) - 1]
        for v in values
    )


def _format_report(result: CampaignResult) -> str:
    """The summary table and the concurrency chart."""
    width = max(len(n.number) for n in result.numbers)
    lines = [
        (
            f"{'number':{width}}  {'cap':>4} {'calls':>6} {'peak':>5} {'<=cap':>5} "
            f"{'timeouts':>8} {'wait p50':>9} {'wait p99':>9}"
        )
    ]
    for n in result.numbers:
        mark = "✓" if n.within_cap else "✗"
        lines.append(
            f"{n.number:{width}}  {n.cap:4} {n.calls:6} {max(n.peak, n.peak_reported):5} "
            f"{mark:>5} {n.timeouts:8} {n.wait_ms(0.5):6.0f} ms {n.wait_ms(0.99):6.0f} ms"
        )
    tick = result.duration / _CHART_COLUMNS
    lines += ["", f"concurrency over time (█ = cap, one column per {tick:.2f} s):"]
    lines += [
        f"{n.number:{width}}  {n.cap:4} |{sparkline(n.timeline, n.cap)}|" for n in result.numbers
    ]
    lines.append("")
    calls = f"{result.calls} calls in {result.elapsed:.1f} s"
    if result.within_caps:
        lines.append(f"{calls}; every number stayed within its cap")
    else:
        over = ", ".join(n.number for n in result.numbers if not n.within_cap)
        lines.append(f"{calls}; CAP EXCEEDED on {over}")
    leaked = [f"{n.number} ({n.leftover})" for n in result.numbers if n.leftover]
    if leaked:
        lines.append("slots still in use after every agent hung up: " + ", ".join(leaked))
    return "\n".join(lines)


def _positive(kind: Callable[[str], _N]) -> Callable[[str], _N]:
    def parse(text: str) -> _N:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = getattr(kind, "__name__", "value")  # argparse names it in its errors
    return parse


def _caps(text: str) -> list[int]:
    parse = _positive(int)
    return [parse(part) for part in text.split(",")]


#: Four numbers from carriers with different rules: two at the common 20, one at 15, one at 3.
DEFAULT_CAPS = (20, 20, 15, 3)


def _parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="callthrottle-simulate", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--url", default="memory://", help="backend URL (default: %(default)s)")
    add("--agents", type=_positive(int), default=80, help="concurrent agents (default: 80)")
    add("--numbers", type=_positive(int), help="caller-ID numbers to dial from (default: 4)")
    add("--cap", type=_positive(int), help="the same cap for every number (default: 20)")
    add("--caps", type=_caps, help="one cap per number (default: 20,20,15,3; sets --numbers)")
    add("--duration", type=_positive(float), default=6.0, help="seconds (default: 6)")
    add("--mean-call", type=_positive(float), default=0.8, help="mean call s (default: 0.8)")
    add("--timeout", type=_positive(float), default=2.0, help="acquire timeout s (default: 2)")
    add("--lease-ttl", type=_positive(float), default=30.0, help="lease TTL s (default: 30)")
    add("--seed", type=int, default=1, help="random seed (default: 1)")
    add("--loop", choices=("asyncio", "trio"), default="asyncio", help="event loop")
    args = parser.parse_args(argv)
    if args.caps is None and args.cap is None and args.numbers is None:
        args.caps = list(DEFAULT_CAPS)
    elif args.caps is None:
        args.caps = [args.cap or 20] * (args.numbers or 4)
    elif args.numbers is not None and args.numbers != len(args.caps):
        parser.error(f"--numbers {args.numbers} but --caps lists {len(args.caps)} caps")
    return args


def main(argv: list[str] | None = None) -> int:
    """The ``callthrottle-simulate`` command; returns the exit status."""
    args = _parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")  # a non-UTF-8 terminal shows ? for the blocks
    print(
        f"{args.agents} agents dialing {len(args.caps)} numbers for {args.duration} s on {args.url}"
    )
    campaign = functools.partial(
        run_campaign,
        args.caps,
        url=args.url,
        agents=args.agents,
        duration=args.duration,
        mean_call=args.mean_call,
        timeout=args.timeout,
        lease_ttl=args.lease_ttl,
        seed=args.seed,
        progress=sys.stdout,
    )
    try:
        result = anyio.run(campaign, backend=args.loop)
    except ThrottleError as exc:
        print(f"callthrottle-simulate: {exc}", file=sys.stderr)
        return 2
    print(_format_report(result))
    return 0 if result.within_caps else 1


if __name__ == "__main__":
    sys.exit(main())
