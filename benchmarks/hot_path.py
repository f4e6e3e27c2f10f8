"""Timing of the hot path (acquire + release), used by ``suite.py`` (``python dev.py bench``).

:func:`compare` times several steps against each other in alternating blocks, so drift on the
machine hits all of them; :func:`bench_memory` times ``memory://`` against
``anyio.CapacityLimiter`` and ``asyncio.Semaphore``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import anyio

from callthrottle import Throttle

NUMBER = "+8657188880001"
Step = Callable[[], Awaitable[None]]


def summarize(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    p50 = ordered[len(ordered) // 2] / 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000
    mean = statistics.fmean(ordered) / 1000
    return {"p50_us": p50, "p99_us": p99, "mean_us": mean, "ops_per_s": 1e6 / mean}


async def compare(
    name: str, steps: dict[str, Step], rounds: int, block: int = 100
) -> dict[str, dict[str, float]]:
    samples: dict[str, list[int]] = {label: [] for label in steps}
    for step in steps.values():  # warm up: scripts loaded, connections open, caches hot
        for _ in range(min(200, rounds)):
            await step()
    done = 0
    while done < rounds:
        for label, step in steps.items():
            bucket = samples[label]
            for _ in range(block):
                start = time.perf_counter_ns()
                await step()
                bucket.append(time.perf_counter_ns() - start)
        done += block
        print(f"\r{name}: {min(done, rounds)}/{rounds}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {label: summarize(values) for label, values in samples.items()}


async def bench_memory(rounds: int) -> dict[str, dict[str, float]]:
    limiter = anyio.CapacityLimiter(20)
    semaphore = asyncio.Semaphore(20)

    async def capacity_limiter() -> None:
        await limiter.acquire()
        limiter.release()

    async def asyncio_semaphore() -> None:
        await semaphore.acquire()
        semaphore.release()

    async with Throttle.from_url("memory://") as throttle:

        async def pair() -> None:
            await throttle.release(await throttle.acquire(NUMBER, timeout=0))

        return await compare(
            "memory",
            {
                "anyio.CapacityLimiter": capacity_limiter,
                "asyncio.Semaphore": asyncio_semaphore,
                "callthrottle acquire+release": pair,
            },
            rounds,
        )
