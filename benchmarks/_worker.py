"""A worker process for the cross-process parts of ``benchmarks/suite.py``; not run by hand.

    python benchmarks/_worker.py cycle --url URL --kind callthrottle ...
    python benchmarks/_worker.py waiter --url URL --kind callthrottle ...

``cycle``: prints ``ready``, reads the start time (``time.monotonic()``, which is system-wide on
Linux) from stdin, runs ``--coroutines`` coroutines cycling acquire -> hold -> release on one
number from then for ``--duration`` seconds, and prints one JSON line: the cycles done, the wait
of each cycle (time inside acquire, in ns) and each hold as ``[start, end]`` (after acquire
returned, before release was called: inside the server's hold, so a peak over the cap in the
parent's sweep would prove a violation).

``waiter``: prints ``ready``; for each ``go`` line on stdin, waits for the slot (limit 1, no
timeout), notes ``time.monotonic()`` the moment it is granted, gives it back and prints that
time. ``quit`` (or end of input) ends it.

Kinds: ``callthrottle`` (the public API), ``limiters`` (redis-rate-limiters' AsyncSemaphore),
``floor`` (cycle: an in-process ``asyncio.Semaphore(cap // processes)`` around two raw EVALSHA
of a trivial script; waiter: a raw ``BLPOP`` woken by the holder's ``LPUSH``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypedDict

import anyio
import redis.asyncio as aioredis

from callthrottle import Throttle

Hold = Callable[[], AbstractAsyncContextManager[None]]


class Contended(TypedDict):
    cycles: int
    elapsed: float
    peak: int
    waits_ns: list[int]
    holds: list[tuple[float, float]]


@asynccontextmanager
async def hold_factory(
    kind: str,
    url: str,
    *,
    prefix: str,
    number: str,
    cap: int,
    share: int,
    connections: int,
) -> AsyncIterator[Hold]:
    """Yield a function returning a context manager that holds one slot of ``kind``.

    ``share`` is the cap of the in-process floors (``cap // processes`` across processes).
    """
    if kind == "callthrottle":
        throttle = (
            Throttle.from_url(url)
            if url.startswith("memory:")
            else Throttle.from_url(url, key_prefix=prefix)
        )
        async with throttle:

            @asynccontextmanager
            async def hold_callthrottle() -> AsyncIterator[None]:
                lease = await throttle.acquire(number, limit=cap, timeout=None)
                try:
                    yield
                finally:
                    await throttle.release(lease)

            yield hold_callthrottle
        return
    if kind in ("asyncio", "anyio"):
        limiter: asyncio.Semaphore | anyio.CapacityLimiter = (
            asyncio.Semaphore(share) if kind == "asyncio" else anyio.CapacityLimiter(share)
        )

        @asynccontextmanager
        async def hold_local() -> AsyncIterator[None]:
            async with limiter:
                yield

        yield hold_local
        return
    client = aioredis.Redis.from_url(url, max_connections=connections + 8)
    try:
        if kind == "limiters":
            from limiters import AsyncSemaphore

            semaphore = AsyncSemaphore(
                name=f"{prefix}{number}", capacity=cap, max_sleep=0, connection=client
            )

            @asynccontextmanager
            async def hold_limiters() -> AsyncIterator[None]:
                async with semaphore:
                    yield

            yield hold_limiters
        elif kind == "floor":
            trivial = client.register_script("return 1")
            await trivial()
            local = asyncio.Semaphore(share)

            @asynccontextmanager
            async def hold_floor() -> AsyncIterator[None]:
                async with local:
                    await client.evalsha(trivial.sha, 0)
                    try:
                        yield
                    finally:
                        await client.evalsha(trivial.sha, 0)

            yield hold_floor
        else:
            raise SystemExit(f"unknown kind {kind!r}")
    finally:
        await client.aclose()


async def contend(hold: Hold, coroutines: int, start_at: float, duration: float) -> Contended:
    """Cycle ``coroutines`` coroutines through ``hold`` from ``start_at`` for ``duration`` s."""
    waits: list[int] = []
    holds: list[tuple[float, float]] = []
    cycles = 0
    holders = peak = 0
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    deadline = start_at + duration

    async def loop() -> None:
        nonlocal cycles, holders, peak
        while time.monotonic() < deadline:
            began = time.perf_counter_ns()
            async with hold():
                start = time.monotonic()
                waits.append(time.perf_counter_ns() - began)
                holders += 1
                peak = max(peak, holders)
                await asyncio.sleep(0)  # hold across one turn of the event loop
                holders -= 1
                holds.append((start, time.monotonic()))
            cycles += 1

    async with anyio.create_task_group() as group:  # a failure cancels the others
        for _ in range(coroutines):
            group.start_soon(loop)
    return {
        "cycles": cycles,
        "elapsed": time.monotonic() - start_at,
        "peak": peak,
        "waits_ns": waits,
        "holds": holds,
    }


def stop_worker(proc: subprocess.Popen[str]) -> None:
    """End a worker process that reads orders on stdin: an empty line, then its exit (killed
    if it takes over 10 s)."""
    if proc.stdin is not None and proc.poll() is None:
        proc.stdin.write("\n")
        proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def read_line() -> str:
    line: str = await asyncio.to_thread(sys.stdin.readline)
    return line.strip()


async def run_cycles(args: argparse.Namespace) -> None:
    async with hold_factory(
        args.kind,
        args.url,
        prefix=args.prefix,
        number=args.number,
        cap=args.cap,
        share=max(1, args.cap // args.processes),
        connections=args.coroutines,
    ) as hold:
        async with hold():  # warm up: connections open, scripts loaded
            pass
        print("ready", flush=True)
        start_at = float(await read_line())
        result = await contend(hold, args.coroutines, start_at, args.duration)
    print(json.dumps(result), flush=True)


async def run_waiter(args: argparse.Namespace) -> None:
    if args.kind == "callthrottle":
        async with Throttle.from_url(args.url, key_prefix=args.prefix) as throttle:
            await throttle.release(await throttle.acquire(args.number, limit=1, timeout=0))

            async def grant_callthrottle() -> None:
                lease = await throttle.acquire(args.number, limit=1, timeout=None)
                granted = time.monotonic()
                await throttle.release(lease)
                print(repr(granted), flush=True)

            await serve(grant_callthrottle)
    else:
        client = aioredis.Redis.from_url(args.url)
        key = f"{args.prefix}handoff-floor"
        await client.ping()

        async def grant_floor() -> None:
            await client.blpop([key], 0)
            granted = time.monotonic()
            print(repr(granted), flush=True)

        await serve(grant_floor)
        await client.aclose()


async def serve(grant: Callable[[], Awaitable[None]]) -> None:
    print("ready", flush=True)
    while (await read_line()) == "go":
        await grant()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["cycle", "waiter"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--kind", default="callthrottle")
    parser.add_argument("--prefix", default="bench:")
    parser.add_argument("--number", default="+8657188880001")
    parser.add_argument("--cap", type=int, default=20)
    parser.add_argument("--coroutines", type=int, default=50)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(run_cycles(args) if args.mode == "cycle" else run_waiter(args))


if __name__ == "__main__":
    main()
