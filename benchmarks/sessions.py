"""Session leases: what keeping a session alive costs as its leases grow, and the thread-free
blocking client against the async path on the same server (sections of ``suite.py``).

    python benchmarks/sessions.py [--url redis://...] [--rounds N]   # these two sections alone
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

import redis
from callthrottle import Throttle
from callthrottle.blocking import SessionClient

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import Row, Section, latency_row, log, script_usec, with_ratios
from tests._servers import redis_server

NUMBER = "+8657188880001"
HELD = (10, 10_000)  # leases held while the keep-alive is measured
CAP = 20  # per number: the leases spread over HELD / CAP numbers


def numbers(count: int) -> list[str]:
    return [f"+86571888{i:05d}" for i in range(count)]


async def bench_keepalive(url: str, calls: int) -> Section:
    """Server time and latency of one keep-alive of a session holding 10 and 10,000 leases,
    beside one heartbeat's renewal of as many per-process leases (renewed lease by lease)."""
    sync = redis.Redis.from_url(url)
    rows: list[Row] = []
    for held in HELD:
        on = numbers(max(held // CAP, 1))
        prefix = f"bench-ka-{held}:"
        async with (
            Throttle.from_url(
                url, key_prefix=prefix, session="bench", keepalive=False, default_limit=CAP
            ) as session,
            Throttle.from_url(url, key_prefix=prefix + "p:", default_limit=CAP) as process,
        ):
            log(f"keep-alive: taking {held:,} session leases and {held:,} per-process ones")
            for i in range(held):
                await session.acquire(on[i % len(on)], timeout=0)
                await process.acquire(on[i % len(on)], timeout=0)
            samples: list[float] = []
            before = sync.info("commandstats")
            for _ in range(calls):
                started = time.perf_counter_ns()
                await session.keepalive()
                samples.append((time.perf_counter_ns() - started) / 1000)
            after = sync.info("commandstats")
            row = latency_row(f"keep-alive, {held:,} session leases", samples)
            row.extra = {"server_usec_per_call": script_usec(before, after) / calls}
            rows.append(row)
            # One heartbeat of the per-process throttle: every lease renewed, number by number.
            beats: list[float] = []
            before = sync.info("commandstats")
            for _ in range(max(calls // 20, 3)):
                started = time.perf_counter_ns()
                await process._renew_all()
                beats.append((time.perf_counter_ns() - started) / 1000)
            after = sync.info("commandstats")
            row = latency_row(f"heartbeat renewing {held:,} per-process leases", beats)
            row.extra = {"server_usec_per_call": script_usec(before, after) / len(beats)}
            rows.append(row)
    sync.close()
    return Section(
        "sessions_keepalive",
        "Keeping leases alive: one session keep-alive against one heartbeat of per-process leases",
        "count",
        rows,
        [
            (
                "server µs: the delta of FCALL time in `INFO commandstats` per keep-alive (or per "
                "heartbeat); latency: the call from the client, p50/p99. A session's keep-alive is "
                "one field of one hash on a single server, whatever it holds; a per-process "
                "heartbeat renews every lease (one batch per number)."
            ),
        ],
    )


def timed(step: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        step()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


async def bench_blocking(url: str, rounds: int) -> Section:
    """acquire+release of a session lease: the thread-free blocking client, the async throttle,
    and their floors (two EVALSHA of ``return 1``, blocking and async), in blocks of 100."""
    sync = redis.Redis.from_url(url)
    sync_trivial = sync.register_script("return 1")
    client = aioredis.Redis.from_url(url)
    async_trivial = client.register_script("return 1")
    await async_trivial()
    sync_trivial()
    samples: dict[str, list[float]] = {
        "floor: 2x EVALSHA (redis-py, blocking)": [],
        "floor: 2x EVALSHA (redis-py, asyncio)": [],
        "SessionClient acquire+end_call (blocking, no thread)": [],
        "Throttle acquire+release (asyncio, same session)": [],
    }
    labels = list(samples)
    blocking = SessionClient.from_url(url, session="bench-b", key_prefix="bench-bl:")
    async with Throttle.from_url(
        url, key_prefix="bench-bl:", session="bench-a", keepalive=False
    ) as throttle:

        def sync_floor() -> None:
            sync.evalsha(sync_trivial.sha, 0)
            sync.evalsha(sync_trivial.sha, 0)

        def blocking_pair() -> None:
            blocking.end_call(blocking.acquire(NUMBER, limit=CAP))

        async def async_floor() -> None:
            await client.evalsha(async_trivial.sha, 0)
            await client.evalsha(async_trivial.sha, 0)

        async def async_pair() -> None:
            await throttle.release(await throttle.acquire(NUMBER, limit=CAP, timeout=0))

        async def async_timed(step: Callable[[], object], count: int) -> list[float]:
            out = []
            for _ in range(count):
                started = time.perf_counter_ns()
                await step()  # type: ignore[misc]
                out.append((time.perf_counter_ns() - started) / 1000)
            return out

        for _ in range(2):  # warm up
            timed(sync_floor, 50)
            timed(blocking_pair, 50)
            await async_timed(async_floor, 50)
            await async_timed(async_pair, 50)
        for _ in range(max(rounds // 100, 1)):
            samples[labels[0]] += timed(sync_floor, 100)
            samples[labels[1]] += await async_timed(async_floor, 100)
            samples[labels[2]] += timed(blocking_pair, 100)
            samples[labels[3]] += await async_timed(async_pair, 100)
    blocking.close()
    sync.close()
    await client.aclose()
    rows = [
        latency_row(label, s, floor=label.startswith("floor: 2x EVALSHA (redis-py, b"))
        for label, s in samples.items()
    ]
    ratio = statistics.median(samples[labels[2]]) / statistics.median(samples[labels[3]])
    return Section(
        "sessions_blocking",
        "Session leases, uncontended: the blocking client (no thread) against the async path",
        "latency",
        with_ratios(rows, "latency"),
        [
            f"blocking / async p50: {ratio:.2f}x (goal: at most 1.3x).",
            (
                "vs floor: against the blocking floor (two EVALSHA through redis-py's blocking "
                "client); steps alternate in blocks of 100."
            ),
        ],
    )


async def run(url: str, rounds: int, calls: int) -> list[Section]:
    log(f"sessions: keep-alive with {HELD[0]:,} and {HELD[1]:,} leases held")
    sections = [await bench_keepalive(url, calls)]
    log(f"sessions: blocking client against the async path, {rounds} rounds")
    sections.append(await bench_blocking(url, rounds))
    return sections


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="benchmark this Redis server instead of starting one")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=200, help="keep-alives timed per size")
    args = parser.parse_args()
    if args.url:
        sections = asyncio.run(run(args.url, args.rounds, args.calls))
    else:
        with redis_server() as url:
            sections = asyncio.run(run(url, args.rounds, args.calls))
    for section in sections:
        print(f"\n{section.title}")
        for row in section.rows:
            extra = " ".join(f"{k}={v:.1f}" for k, v in row.extra.items())
            ratio = "" if row.vs_floor is None else f" x{row.vs_floor:.2f}"
            print(
                f"  {row.label:58} p50 {row.p50_us:8.1f} µs p99 {row.p99_us:8.1f} µs{ratio} {extra}"
            )
        for note in section.notes:
            print(f"  - {note}")


if __name__ == "__main__":
    main()
