"""Never more holders than the cap, across processes.

Four OS processes dial at once through one Redis server, each with many coroutines competing
for three small-capped numbers. Every hold is timed with the system-wide monotonic clock; a
sweep over all of them finds the most simultaneous holders of each number.
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import redis
from callthrottle import Throttle, Usage

from .._servers import fence_mark
from ._dialer import spawn

if TYPE_CHECKING:
    from pathlib import Path

    from ._dialer import Child

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CAPS = {"+8657188880001": 2, "+8657188880002": 3, "+8657188880003": 5}
PROCESSES = 4
TASKS = 30  # coroutines per process
ROUNDS = 5  # slots each coroutine takes in turn, cycling over the numbers
LEASE_TTL = 5.0

#: (pid, start, end) of one hold
Hold = tuple[int, float, float]


def sweep(holds: list[Hold]) -> tuple[int, int]:
    """The most holds overlapping at one instant, and the most processes holding at one instant.

    At equal times an end is counted before a start: a hold that ends exactly when another
    starts does not overlap it.
    """
    events = sorted(
        [(start, 1, pid) for pid, start, _ in holds] + [(end, -1, pid) for pid, _, end in holds],
        key=lambda event: (event[0], event[1]),
    )
    by_process: Counter[int] = Counter()
    current = peak = peak_processes = 0
    for _, delta, pid in events:
        current += delta
        by_process[pid] += delta
        if by_process[pid] == 0:
            del by_process[pid]
        peak = max(peak, current)
        peak_processes = max(peak_processes, len(by_process))
    assert current == 0
    return peak, peak_processes


def test_sweep_counts_overlaps_not_touches() -> None:
    assert sweep([(1, 0.0, 1.0), (2, 1.0, 2.0)]) == (1, 1)
    assert sweep([(1, 0.0, 2.0), (1, 0.5, 1.5), (2, 1.0, 3.0)]) == (3, 2)
    assert sweep([(1, 0.0, 1.0), (1, 2.0, 3.0), (2, 0.5, 2.5)]) == (2, 2)


async def run_dialers(
    redis_url: str, prefix: str, tmp_path: Path, name: str, *options: str, within: float
) -> list[dict[str, Any]]:
    """Run PROCESSES dialers at once (each connected before any dials, so they really
    compete), each to finish ``within`` seconds; return what each wrote."""
    outputs = [tmp_path / f"{name}{index}.json" for index in range(PROCESSES)]
    async with AsyncExitStack() as stack:
        children: list[Child] = []
        for index, output in enumerate(outputs):
            child = await stack.enter_async_context(
                spawn(
                    "dial",
                    redis_url,
                    prefix,
                    str(output),
                    f"--ttl={LEASE_TTL}",
                    f"--tasks={TASKS}",
                    f"--rounds={ROUNDS}",
                    *options,
                    stderr_path=tmp_path / f"{name}{index}.err",
                )
            )
            children.append(child)
        for child in children:
            assert await child.read_line() == "ready", child.stderr()
        for child in children:
            await child.send_line("go")
        for child in children:
            assert await child.wait(within=within) == 0, child.stderr()
    return [json.loads(await anyio.Path(output).read_text(encoding="utf-8")) for output in outputs]


def keys_under(url: str, prefix: str) -> list[bytes]:
    """Every key under ``prefix``, on a server or on every master of a Cluster, but the
    prefix's marker (its one key that never expires: see fence_mark)."""
    if url.startswith("redis+cluster://"):
        host, _, port = url.removeprefix("redis+cluster://").split(",")[0].rpartition(":")
        cluster = redis.RedisCluster(host=host, port=int(port))
        try:
            return list(cluster.scan_iter(match=prefix + "*", count=1000))
        finally:
            cluster.close()
    client = redis.Redis.from_url(url)
    try:
        mark = fence_mark(prefix).encode()
        return [key for key in client.scan_iter(match=prefix + "*", count=1000) if key != mark]
    finally:
        client.close()


@pytest.mark.parametrize(
    ("server", "trunk_cap"),
    [
        pytest.param("redis_url", None, id="numbers"),
        pytest.param("redis_url", 4, id="numbers-on-a-trunk"),
        pytest.param("cluster_url", None, id="numbers-on-a-cluster", marks=pytest.mark.cluster),
    ],
)
async def test_never_more_holders_than_the_cap_across_processes(
    server: str, prefix: str, tmp_path: Path, trunk_cap: int | None, request: pytest.FixtureRequest
) -> None:
    """Per-number caps 2, 3 and 5; in the second run the three numbers also share a trunk
    whose cap (4) is lower than their sum, so the trunk binds across numbers and processes. The
    third run is the first on a Redis Cluster of three masters."""
    redis_url: str = request.getfixturevalue(server)
    numbers = [f"--number={number}:{cap}" for number, cap in CAPS.items()]
    if trunk_cap is not None:
        numbers.append(f"--trunk-cap={trunk_cap}")
    results = await run_dialers(redis_url, prefix, tmp_path, "dialer", *numbers, within=60)
    assert len({result["pid"] for result in results}) == PROCESSES
    assert len({result["owner"] for result in results}) == PROCESSES
    holds: dict[str, list[Hold]] = {number: [] for number in CAPS}
    for result in results:
        assert result["lost"] == []
        assert result["still_held"] == []
        assert len(result["intervals"]) == TASKS * ROUNDS  # no acquire was lost
        for number, start, end in result["intervals"]:
            assert start <= end
            holds[number].append((result["pid"], start, end))
    assert sum(len(per_number) for per_number in holds.values()) == PROCESSES * TASKS * ROUNDS
    assert {number: len(per_number) for number, per_number in holds.items()} == {
        number: PROCESSES * TASKS * ROUNDS // len(CAPS) for number in CAPS
    }

    peaks = {number: sweep(per_number) for number, per_number in holds.items()}
    if trunk_cap is None:
        # Never over the cap, and the cap was reached: the contention was real.
        assert {number: peak for number, (peak, _) in peaks.items()} == CAPS
        # ...and shared between processes, not only between coroutines of one process.
        assert all(processes >= 2 for _, processes in peaks.values()), peaks
    else:
        assert all(peak <= CAPS[number] for number, (peak, _) in peaks.items()), peaks
        every_hold = [hold for per_number in holds.values() for hold in per_number]
        trunk_peak, trunk_processes = sweep(every_hold)
        assert trunk_peak == trunk_cap  # never over the trunk's cap, and it was reached
        assert trunk_processes >= 2

    async with Throttle.from_url(redis_url, key_prefix=prefix) as throttle:
        for number, cap in CAPS.items():
            assert await throttle.usage(number, limit=cap) == Usage(in_use=0, limit=cap, waiting=0)
    # Idle numbers leave nothing behind.
    assert await anyio.to_thread.run_sync(keys_under, redis_url, prefix) == []


async def test_pool_picks_across_processes_never_pass_any_cap(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """The same dialers, but each call takes any number of one pool of the three."""
    numbers = [f"--number={number}:{cap}" for number, cap in CAPS.items()]
    results = await run_dialers(
        redis_url, prefix, tmp_path, "pooled", "--pool", *numbers, within=90
    )
    holds: dict[str, list[Hold]] = {number: [] for number in CAPS}
    for result in results:
        assert result["lost"] == []
        assert result["still_held"] == []
        assert len(result["intervals"]) == TASKS * ROUNDS
        for number, start, end in result["intervals"]:
            holds[number].append((result["pid"], start, end))
    assert all(holds.values()), "every number of the pool was used"
    peaks = {number: sweep(per_number)[0] for number, per_number in holds.items()}
    assert all(peaks[number] <= cap for number, cap in CAPS.items()), peaks
    every_hold = [hold for per_number in holds.values() for hold in per_number]
    assert sweep(every_hold)[0] == sum(CAPS.values())  # the whole pool was busy at once
    async with Throttle.from_url(redis_url, key_prefix=prefix) as throttle:
        for number, cap in CAPS.items():
            assert await throttle.usage(number, limit=cap) == Usage(in_use=0, limit=cap, waiting=0)
    # Only the pool's membership (configuration, kept until removed) is left behind.
    left = await anyio.to_thread.run_sync(keys_under, redis_url, prefix)
    assert all(b"{p:pool}:pool:" in key for key in left), left
