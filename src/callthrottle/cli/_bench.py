"""``callthrottle bench``: the hot path's latency on one backend, next to its floor (on Redis,
two raw EVALSHA calls of a trivial script on the same server, measured in the same run). The
full suite, with peers and charts, is ``python dev.py bench``."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

import click
from rich.table import Table

from ..backends import RedisBackend
from ._common import Target, backend_options, console, run

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ("bench",)

NUMBER = "+8657199990001"


async def _timed(step: Callable[[], Awaitable[object]], iterations: int) -> list[float]:
    """Microseconds per call of ``step``, after a warm-up."""
    for _ in range(max(iterations // 10, 10)):
        await step()
    samples = []
    clock = time.perf_counter
    for _ in range(iterations):
        started = clock()
        await step()
        samples.append((clock() - started) * 1e6)
    return samples


def _quantiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49], cuts[98]


async def measure(target: Target, iterations: int) -> dict[str, tuple[float, float]]:
    """p50 and p99 in µs: ``acquire+release``, and on Redis ``2x EVALSHA`` (the floor)."""
    results: dict[str, tuple[float, float]] = {}
    async with target.throttle(owner_id="callthrottle-bench") as throttle:

        async def cycle() -> None:
            await throttle.release(await throttle.acquire(NUMBER, timeout=0))

        results["acquire+release"] = _quantiles(await _timed(cycle, iterations))
        backend = throttle.backend
        if isinstance(backend, RedisBackend):
            # The backend's own redis-py client: the same server (or Cluster, or Sentinel's
            # master), through redis-py's connection pool rather than the backend's lane.
            client = backend.client
            sha = await client.script_load("return 1")

            async def floor() -> None:
                await client.evalsha(sha, 0)
                await client.evalsha(sha, 0)

            results["2x EVALSHA 'return 1' (floor)"] = _quantiles(await _timed(floor, iterations))
    return results


@click.command()
@backend_options
@click.option("--iterations", type=click.IntRange(min=100), default=2000, show_default=True)
def bench(target: Target, iterations: int) -> None:
    """Time acquire+release on the backend (p50, p99), and on Redis the floor: two raw
    EVALSHA calls of a trivial script on the same server, in the same run."""
    results = run(measure, target, iterations)
    table = Table(title=f"{iterations} iterations on {target.shown_url}", title_justify="left")
    for column in ("measurement", "p50 µs", "p99 µs", "p50 ratio"):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    floor = next((v for k, v in results.items() if "floor" in k), None)
    for name, (p50, p99) in results.items():
        ratio = "" if floor is None else f"{p50 / floor[0]:.2f}x"
        table.add_row(name, f"{p50:.1f}", f"{p99:.1f}", ratio)
    console().print(table)
