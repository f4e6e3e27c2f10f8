"""Hot-path benchmark: acquire + release, each against its floor, measured in one run.

    python dev.py bench              # starts a throwaway Redis-protocol server
    python dev.py bench --url redis://host:6379/0 --rounds 5000

- Redis: ``acquire(timeout=0)`` + ``release`` on one number, against the floor of two raw
  EVALSHA calls of a trivial script through the same redis-py client and server.
- Memory: the same pair on ``memory://``, against ``anyio.CapacityLimiter`` and
  ``asyncio.Semaphore``.

The two sides of each comparison run in alternating blocks, so drift on the machine hits both.
Results go to stdout as a Markdown table and to ``benchmarks/results/hot_path.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import anyio
import redis.asyncio as aioredis

import callthrottle
import redis
from callthrottle import Throttle

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests._servers import redis_server

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


async def bench_redis(url: str, rounds: int) -> dict[str, dict[str, float]]:
    client = aioredis.Redis.from_url(url)
    trivial = client.register_script("return 1")
    await trivial()

    async def floor() -> None:
        await client.evalsha(trivial.sha, 0)
        await client.evalsha(trivial.sha, 0)

    async with Throttle.from_url(url, key_prefix="bench:") as throttle:

        async def pair() -> None:
            await throttle.release(await throttle.acquire(NUMBER, timeout=0))

        results = await compare(
            "redis", {"floor: 2x EVALSHA": floor, "callthrottle acquire+release": pair}, rounds
        )
    await client.aclose()
    return results


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


def table(title: str, results: dict[str, dict[str, float]], floor: str) -> str:
    base = results[floor]["p50_us"]
    lines = [
        f"**{title}**",
        "",
        "| operation | p50 µs | p99 µs | ops/s | p50 vs floor |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, r in results.items():
        lines.append(
            f"| {label} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | {r['ops_per_s']:,.0f} "
            f"| {r['p50_us'] / base:.2f}x |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    server: AbstractContextManager[str] = nullcontext(args.url) if args.url else redis_server()
    with server as url:
        info = redis.Redis.from_url(url).info("server")
        redis_results = await bench_redis(url, args.rounds)
    memory_results = await bench_memory(args.rounds)
    return {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "server": f"{info.get('server_name', 'redis')} {info.get('valkey_version') or info['redis_version']}",
            "redis_py": redis.__version__,
            "callthrottle": callthrottle.__version__,
        },
        "redis": redis_results,
        "memory": memory_results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="benchmark this Redis server instead of starting one")
    parser.add_argument("--rounds", type=int, default=3000, help="timed pairs per operation")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "hot_path.json"
    )
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    machine = report["machine"]
    print(f"machine: {machine}\n")
    print(table("Redis, uncontended, one number", report["redis"], "floor: 2x EVALSHA"))  # type: ignore[arg-type]
    print()
    print(table("Memory, uncontended, one number", report["memory"], "anyio.CapacityLimiter"))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
