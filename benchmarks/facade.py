"""The blocking facade (``SyncThrottle``) against the async ``Throttle`` on the same server (a
section of ``suite.py``).

    python benchmarks/facade.py [--url redis://...] [--rounds N]   # this section alone
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from callthrottle import Throttle
from callthrottle.sync import SyncThrottle

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hot_path import NUMBER
from suite import CAP, Section, latency_row, log, section_markdown, with_ratios
from tests._servers import redis_server

GOAL = 1.3  # SyncThrottle acquire+release at most 1.3x the async path's, p50
ASYNC = "floor: Throttle acquire+release (asyncio)"
SYNC = "SyncThrottle acquire+release (blocking, from a plain thread)"


async def bench_facade(url: str, rounds: int, block: int = 100) -> Section:
    """acquire+release of a per-process lease through ``SyncThrottle`` (called from a plain
    thread, as a blocking dialer would) and through ``Throttle`` on asyncio, alternating in
    blocks; each under a key prefix of its own on the one server."""
    samples: dict[str, list[float]] = {ASYNC: [], SYNC: []}
    blocking = SyncThrottle.from_url(url, key_prefix="bench-fs:")
    await asyncio.to_thread(blocking.__enter__)
    try:
        async with Throttle.from_url(url, key_prefix="bench-fa:") as throttle:

            def sync_block(count: int) -> list[float]:
                out = []
                for _ in range(count):
                    started = time.perf_counter_ns()
                    blocking.release(blocking.acquire(NUMBER, limit=CAP, timeout=0))
                    out.append((time.perf_counter_ns() - started) / 1000)
                return out

            async def async_block(count: int) -> list[float]:
                out = []
                for _ in range(count):
                    started = time.perf_counter_ns()
                    await throttle.release(await throttle.acquire(NUMBER, limit=CAP, timeout=0))
                    out.append((time.perf_counter_ns() - started) / 1000)
                return out

            await asyncio.to_thread(sync_block, 200)  # warm up
            await async_block(200)
            for _ in range(max(rounds // block, 1)):
                samples[ASYNC] += await async_block(block)
                samples[SYNC] += await asyncio.to_thread(sync_block, block)
    finally:
        await asyncio.to_thread(blocking.__exit__, None, None, None)
    rows = [latency_row(label, s, floor=label == ASYNC) for label, s in samples.items()]
    ratio = statistics.median(samples[SYNC]) / statistics.median(samples[ASYNC])
    return Section(
        "facade",
        "The blocking facade: SyncThrottle against Throttle on asyncio, same server",
        "latency",
        with_ratios(rows, "latency"),
        [
            f"SyncThrottle / Throttle p50: {ratio:.2f}x (goal: at most {GOAL}x).",
            (
                "Per-process leases on one number each (key prefixes of their own), "
                f"`limit={CAP}, timeout=0`; blocks of {block} alternate. SyncThrottle is called "
                "from a thread of its own (as a blocking dialer calls it): each call crosses to "
                "the facade's event loop thread and back; the async path runs on this process's "
                "asyncio loop, idle while the blocking block runs."
            ),
        ],
    )


async def run(url: str, rounds: int) -> list[Section]:
    log(f"blocking facade: SyncThrottle against Throttle, {rounds} rounds")
    return [await bench_facade(url, rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="benchmark this Redis server instead of starting one")
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    if args.url:
        sections = asyncio.run(run(args.url, args.rounds))
    else:
        with redis_server() as url:
            sections = asyncio.run(run(url, args.rounds))
    for section in sections:
        print("\n".join(section_markdown(section)) + "\n")


if __name__ == "__main__":
    main()
