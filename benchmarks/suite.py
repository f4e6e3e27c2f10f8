"""Benchmark suite: every figure measured in the same run as its floor (not part of the tests).

    python dev.py bench                  # ~2-3 min; starts a throwaway Redis-protocol server
    python dev.py bench --quick          # ~30 s, fewer rounds and shorter runs
    python dev.py bench --url redis://host:6379/0

1. Redis, uncontended: acquire + release on one number against two raw EVALSHA of a trivial
   script (the floor), and against the peers that install and run (redis-rate-limiters,
   limits, pottery); a peer that cannot is recorded with the reason.
2. Memory, uncontended: the same pair on ``memory://`` against ``anyio.CapacityLimiter`` and
   ``asyncio.Semaphore`` (timed by ``hot_path.py``).
3. Contended, one process: 200 coroutines cycling on one number with cap 20, on Redis and on
   ``memory://``: cycles/s, wait inside acquire (p50, p99), peak concurrency.
4. Contended, 4 processes of 50 coroutines: cycles/s and the peak concurrency, by sweep-line
   over every hold's ``time.monotonic()`` interval.
5. Hand-off between processes: release-call start to the queued waiter's grant.
6. Round trips per acquire and release (``INFO commandstats`` and ``MONITOR``) and Redis memory
   per idle and busy number (``MEMORY USAGE`` over the keys ``SCAN`` finds under the prefix).
7. Sessions (``sessions.py``): a keep-alive's server time with 10 and 10,000 leases held,
   against a heartbeat renewing as many per-process leases; the thread-free blocking client
   against the async path on the same server.
8. The data-loss fence (``fence.py``): the shipped library against the same library with its
   fence compiled out, alternating in one run: acquire + release from the client, server time,
   round trips and commands per acquire and per release, 200 coroutines on cap 20 (each beside
   the library without the fence run again, the noise); and the first acquire of a fresh
   library (it reads INFO) against the next one.
9. Server work per decision and capacity (``capacity.py``): time inside Redis and commands run
   inside the functions per acquire and per release (plain and under every limit), the
   server's CPU per call set-up and the set-ups/s one master carries (checked under load from
   several client processes), the CPU per held call of renewals (per-process and session
   leases), and the masters 100,000 calls and 2,000 set-ups/s need (scale on paper).
10. The blocking facade (``facade.py``): ``SyncThrottle`` against ``Throttle`` on asyncio.

The round's goals, each against its reference in the same run, head ``results.md``
(``goals.py``).

Writes ``benchmarks/results/results.{md,json,png}``; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio as aioredis
from _worker import Contended, contend, hold_factory
from hot_path import NUMBER, Step, bench_memory, compare

import redis
from callthrottle import Lease, Throttle
from callthrottle.backends import AcquireRequest
from callthrottle.backends._lane import ScriptLane

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests._servers import cluster, redis_server

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from callthrottle.backends import RedisBackend

WORKER = Path(__file__).resolve().parent / "_worker.py"
CAP = 20
CALLEE = "+8613800138000"
#: A number under every kind of limit at once (generous enough never to refuse in the run).
POLICED = {
    "numbers": {
        NUMBER: {"cap": CAP, "rates": "100000/minute;1000000/day", "trunk": "t", "tenant": "a"}
    },
    "trunks": {"t": {"cap": 1000, "rates": "100000/minute"}},
    "tenants": {"a": {"cap": 1000, "rates": "100000/minute"}},
    "callee": {"rates": "100000/minute"},
}
STARTED = time.monotonic()
if __name__ == "__main__":
    # sessions.py and fence.py import this module as `suite`: the same one (one clock for log).
    sys.modules.setdefault("suite", sys.modules[__name__])


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    """One measured line. ``vs_floor`` is a cost ratio: time per operation over the floor's."""

    label: str
    p50_us: float | None
    p99_us: float | None
    ops_per_s: float | None
    vs_floor: float | None = None
    floor: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Section:
    key: str
    title: str
    kind: str  # "latency", "contended", "count"
    rows: list[Row]
    notes: list[str] = field(default_factory=list)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def latency_row(label: str, samples_us: list[float], *, floor: bool = False) -> Row:
    ordered = sorted(samples_us)
    mean = statistics.fmean(ordered)
    return Row(label, percentile(ordered, 0.5), percentile(ordered, 0.99), 1e6 / mean, floor=floor)


def with_ratios(rows: list[Row], kind: str) -> list[Row]:
    floor = next(row for row in rows if row.floor)
    for row in rows:
        if kind == "contended":
            row.vs_floor = ratio(floor.ops_per_s, row.ops_per_s)
        else:
            row.vs_floor = ratio(row.p50_us, floor.p50_us)
    return rows


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


# 1. Redis, uncontended ----------------------------------------------------------------------


async def peer_steps(url: str, client: aioredis.Redis) -> tuple[dict[str, Step], dict[str, str]]:
    """The peers' steps that install and run once; the others with the reason."""
    steps: dict[str, Step] = {}
    failed: dict[str, str] = {}

    async def limiters_step() -> Step:
        from limiters import AsyncSemaphore

        semaphore = AsyncSemaphore(
            name=f"bench-peer:{NUMBER}", capacity=CAP, max_sleep=0, connection=client
        )

        async def step() -> None:
            async with semaphore:
                pass

        return step

    async def limits_step() -> Step:
        from limits import RateLimitItemPerSecond
        from limits.aio.strategies import MovingWindowRateLimiter
        from limits.storage import storage_from_string

        storage = storage_from_string(f"async+{url}", implementation="redispy")
        limiter = MovingWindowRateLimiter(storage)
        item = RateLimitItemPerSecond(1_000_000, namespace="bench-peer")

        async def step() -> None:
            if not await limiter.hit(item, NUMBER):
                raise RuntimeError("limits refused a hit under a 1,000,000/s window")

        return step

    async def pottery_step() -> Step:
        from pottery import AIORedlock

        lock = AIORedlock(key=f"bench-peer:pottery:{NUMBER}", masters={client})

        async def step() -> None:
            if not await lock.acquire(blocking=False):
                raise RuntimeError("pottery AIORedlock not acquired while free")
            await lock.release()

        return step

    makers: dict[str, Callable[[], Awaitable[Step]]] = {
        "redis-rate-limiters AsyncSemaphore enter+exit": limiters_step,
        "limits aio MovingWindowRateLimiter.hit (1 op)": limits_step,
        "pottery AIORedlock acquire+release (a mutex)": pottery_step,
    }
    for label, make in makers.items():
        try:
            step = await make()
            await step()
        except Exception as exc:  # noqa: BLE001 - any failure of a peer is recorded, not fatal
            failed[label] = f"{type(exc).__name__}: {exc}"
            log(f"peer {label} skipped: {failed[label]}")
        else:
            steps[label] = step
    return steps, failed


async def bench_redis_uncontended(url: str, rounds: int) -> tuple[Section, dict[str, str]]:
    client = aioredis.Redis.from_url(url)
    trivial = client.register_script("return 1")
    await trivial()

    async def floor() -> None:
        await client.evalsha(trivial.sha, 0)
        await client.evalsha(trivial.sha, 0)

    peers, failed = await peer_steps(url, client)
    async with (
        Throttle.from_url(url, key_prefix="bench:") as throttle,
        Throttle.from_url(url, key_prefix="bench-policed:", config=POLICED) as policed,
    ):

        async def pair() -> None:
            await throttle.release(await throttle.acquire(NUMBER, limit=CAP, timeout=0))

        async def policed_pair() -> None:
            await policed.release(await policed.acquire(NUMBER, timeout=0, callee=CALLEE))

        results = await compare(
            "redis uncontended",
            {
                "floor: 2x EVALSHA": floor,
                "callthrottle acquire+release": pair,
                "callthrottle, every limit (see note)": policed_pair,
                **peers,
            },
            rounds,
        )
    await client.aclose()
    rows = [
        Row(label, r["p50_us"], r["p99_us"], r["ops_per_s"], floor=label.startswith("floor"))
        for label, r in results.items()
    ]
    notes = [
        "Steps alternate in blocks of 100, so drift on the machine hits all of them.",
        (
            "Every limit: the number has a cap and two rate windows, a trunk and a tenant with "
            "caps and windows, and the callee a window; all checked and counted in the one "
            "acquire script."
        ),
        (
            "limits' hit is one rate-limit check (no release); pottery's lock is a mutex (cap 1); "
            "redis-rate-limiters' semaphore is a BLPOP token list without leases: a crashed holder "
            "keeps its token until the key expires."
        ),
    ]
    notes += [f"{label}: not measured ({reason})" for label, reason in failed.items()]
    return Section(
        "redis_uncontended",
        "Redis, uncontended, one number",
        "latency",
        with_ratios(rows, "latency"),
        notes,
    ), failed


async def bench_cluster(url: str, rounds: int) -> Section:
    """The uncontended pair on a 3-master Redis Cluster started here, against its own floor
    (2x EVALSHA through redis-py's RedisCluster) and the same pair on the single server."""
    from callthrottle.backends import RedisBackend

    with cluster() as (cluster_url, _):
        async with (
            Throttle.from_url(cluster_url, key_prefix="bench-cluster:") as on_cluster,
            Throttle.from_url(url, key_prefix="bench-single:") as on_server,
        ):
            backend = on_cluster.backend
            assert isinstance(backend, RedisBackend)
            client = backend.client
            sha = await client.script_load("return 1")

            async def floor() -> None:
                await client.evalsha(sha, 0)
                await client.evalsha(sha, 0)

            async def cluster_pair() -> None:
                await on_cluster.release(await on_cluster.acquire(NUMBER, limit=CAP, timeout=0))

            async def server_pair() -> None:
                await on_server.release(await on_server.acquire(NUMBER, limit=CAP, timeout=0))

            results = await compare(
                "cluster uncontended",
                {
                    "floor: 2x EVALSHA through RedisCluster": floor,
                    "callthrottle acquire+release (cluster)": cluster_pair,
                    "callthrottle acquire+release (single server)": server_pair,
                },
                rounds,
            )
    rows = [
        Row(label, r["p50_us"], r["p99_us"], r["ops_per_s"], floor=label.startswith("floor"))
        for label, r in results.items()
    ]
    notes = [
        (
            "A Redis Cluster of three masters on this machine, started for this section; the "
            "number's keys live on one of them. Each call goes to that master over the "
            "backend's own connection to it; the floor goes through redis-py's RedisCluster."
        ),
    ]
    return Section(
        "cluster_uncontended",
        "Redis Cluster (3 masters), uncontended, one number",
        "latency",
        with_ratios(rows, "latency"),
        notes,
    )


async def bench_breakdown(url: str, rounds: int) -> Section:
    """Where an uncontended acquire + release spends its time, layer by layer, in one run."""
    client = aioredis.Redis.from_url(url)
    trivial = client.register_script("return 1")
    await trivial()
    sync = redis.Redis.from_url(url)
    async with Throttle.from_url(url, key_prefix="bench-bd:") as throttle:
        backend = cast("RedisBackend", throttle.backend)
        lane = backend._lane  # the connection every call of the backend shares
        assert isinstance(lane, ScriptLane)
        owner = throttle.owner_id
        raw = b"*3\r\n$7\r\nEVALSHA\r\n$40\r\n" + trivial.sha.encode() + b"\r\n$1\r\n0\r\n"

        async def floor() -> None:
            await client.evalsha(trivial.sha, 0)
            await client.evalsha(trivial.sha, 0)

        async def lane_trivial() -> None:
            await lane.call(raw)
            await lane.call(raw)

        async def backend_pair() -> None:
            await backend.acquire(
                AcquireRequest(NUMBER, "bd", owner, CAP, 30.0, None), enqueue=False
            )
            await backend.release(NUMBER, "bd", owner)

        async def throttle_pair() -> None:
            await throttle.release(await throttle.acquire(NUMBER, limit=CAP, timeout=0))

        steps: dict[str, Step] = {
            "floor: 2x EVALSHA of `return 1` through redis-py": floor,
            "2x EVALSHA of `return 1` on the backend's own connection": lane_trivial,
            "RedisBackend acquire + release (no Throttle)": backend_pair,
            "Throttle acquire + release": throttle_pair,
        }
        results = await compare("breakdown", steps, rounds)
        server: dict[str, float] = {}
        for label, step in (("trivial", lane_trivial), ("callthrottle", backend_pair)):
            before = sync.info("commandstats")
            cpu_before = sync.info("cpu")
            for _ in range(1000):
                await step()
            after = sync.info("commandstats")
            cpu_after = sync.info("cpu")
            server[f"{label} µs/call"] = script_usec(before, after) / 2000
            server[f"{label} cpu µs/pair"] = (
                sum(cpu_after[k] - cpu_before[k] for k in ("used_cpu_user", "used_cpu_sys"))
                / 1000
                * 1e6
            )
    await client.aclose()
    sync.close()
    rows = [
        Row(label, r["p50_us"], r["p99_us"], r["ops_per_s"], floor=label.startswith("floor"))
        for label, r in results.items()
    ]
    return Section(
        "breakdown",
        "Where an uncontended Redis acquire + release spends its time",
        "latency",
        with_ratios(rows, "latency"),
        [
            "Each row adds one layer to the one above it; steps alternate in blocks of 100.",
            (
                "Inside Redis (INFO commandstats, 1,000 more pairs of each): a trivial script "
                f"{server['trivial µs/call']:.1f} µs per call, callthrottle's functions "
                f"{server['callthrottle µs/call']:.1f} µs per call (acquire and release "
                "averaged); the server's CPU time per pair (INFO cpu, with its network work): "
                f"{server['trivial cpu µs/pair']:.0f} µs trivial, "
                f"{server['callthrottle cpu µs/pair']:.0f} µs callthrottle."
            ),
        ],
    )


POOL_SIZES = (10, 100, 1_000, 10_000)


async def bench_pools(url: str, rounds: int) -> Section:
    """A pick from pools of 10 to 10,000 numbers (all free, least-loaded), against a plain
    acquire on one number, on memory:// and on Redis."""
    rows: list[Row] = []
    for where in ("memory://", url):
        name = "memory://" if where.startswith("memory") else "Redis"
        options: dict[str, Any] = (
            {} if where.startswith("memory") else {"key_prefix": "bench-pool:"}
        )
        async with Throttle.from_url(where, **options) as throttle:

            async def plain() -> None:
                await throttle.release(await throttle.acquire(NUMBER, timeout=0))

            steps: dict[str, Step] = {f"floor: {name} acquire+release on one number": plain}
            for size in POOL_SIZES:
                pool = f"p{size}"
                numbers = [f"+8657{i:08d}" for i in range(size)]
                for start in range(0, size, 5_000):
                    await throttle.add_to_pool(pool, numbers[start : start + 5_000])

                async def pick(pool: str = pool) -> None:
                    await throttle.release(await throttle.acquire_from(pool, timeout=0))

                steps[f"{name} acquire_from+release, pool of {size:,}"] = pick
            results = await compare(f"pools {name}", steps, max(rounds // 3, 300))
            for size in POOL_SIZES:
                await throttle.remove_from_pool(f"p{size}", [f"+8657{i:08d}" for i in range(size)])
        section_rows = [
            Row(label, r["p50_us"], r["p99_us"], r["ops_per_s"], floor=label.startswith("floor"))
            for label, r in results.items()
        ]
        rows += with_ratios(section_rows, "latency")
    return Section(
        "pools",
        "Pool picks: acquire_from + release, pools of 10 to 10,000 free numbers",
        "latency",
        rows,
        [
            (
                "Least-loaded picks; each is compared with a plain acquire+release on the same "
                "backend in the same run (its floor row above it). A pick looks at no more than 16 "
                "numbers, so its cost should not grow with the pool."
            ),
        ],
    )


async def bench_memory_uncontended(rounds: int) -> Section:
    results = await bench_memory(rounds)
    rows = [
        Row(
            label,
            r["p50_us"],
            r["p99_us"],
            r["ops_per_s"],
            floor=label == "anyio.CapacityLimiter",
        )
        for label, r in results.items()
    ]
    return Section(
        "memory_uncontended",
        "memory://, uncontended, one number (floor: anyio.CapacityLimiter)",
        "latency",
        with_ratios(rows, "latency"),
    )


# 3. Contended, one process --------------------------------------------------------------------


def contended_row(label: str, result: Contended, *, floor: bool = False) -> Row:
    waits = sorted(value / 1000 for value in result["waits_ns"])
    return Row(
        label,
        percentile(waits, 0.5),
        percentile(waits, 0.99),
        result["cycles"] / result["elapsed"],
        floor=floor,
        extra={"cycles": result["cycles"], "max_concurrency": result["peak"]},
    )


async def bench_contended_local(
    url: str,
    kinds: dict[str, str],
    floor_label: str,
    duration: float,
    title: str,
    key: str,
) -> Section:
    rows: list[Row] = []
    for label, kind in kinds.items():
        log(f"{key}: {label} for {duration:g} s")
        async with hold_factory(
            kind,
            url,
            prefix=f"bench-c{len(rows)}:",
            number=NUMBER,
            cap=CAP,
            share=CAP,
            connections=200,
        ) as hold:
            async with hold():
                pass
            result = await contend(hold, 200, time.monotonic() + 0.05, duration)
        rows.append(contended_row(label, result, floor=label == floor_label))
    return Section(
        key,
        title,
        "contended",
        with_ratios(rows, "contended"),
        [
            (
                "200 coroutines, cap 20, `limit=20, timeout=None`; each cycle holds its slot "
                "across one turn of the event loop. p50/p99 are the wait inside acquire; ops/s "
                "are cycles/s; the ratio is time per cycle over the floor's."
            ),
        ],
    )


# 4. Contended, several processes ----------------------------------------------------------------


def sweep_peak(holds: list[tuple[float, float]]) -> int:
    """The most intervals open at once; an end at the same instant as a start comes first."""
    events = sorted([(start, 1) for start, _ in holds] + [(end, -1) for _, end in holds])
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


async def run_processes(
    url: str, kind: str, processes: int, coroutines: int, duration: float, prefix: str
) -> Row:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "cycle",
            "--url",
            url,
            "--kind",
            kind,
            "--prefix",
            prefix,
            "--number",
            NUMBER,
            "--cap",
            str(CAP),
            "--coroutines",
            str(coroutines),
            "--processes",
            str(processes),
            "--duration",
            str(duration),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"worker {kind} did not start: {line!r}")
    start_at = time.monotonic() + 0.2
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{start_at!r}\n".encode())
        await proc.stdin.drain()
    results: list[Contended] = []
    for proc in procs:
        out, _ = await proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"worker {kind} exited with {proc.returncode}")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    cycles = sum(r["cycles"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    waits = sorted(w / 1000 for r in results for w in r["waits_ns"])
    holds = [(start, end) for r in results for start, end in r["holds"]]
    return Row(
        "",
        percentile(waits, 0.5),
        percentile(waits, 0.99),
        cycles / elapsed,
        extra={
            "cycles": cycles,
            "max_concurrency": sweep_peak(holds),
            "max_concurrency_per_process": [r["peak"] for r in results],
        },
    )


async def bench_contended_processes(url: str, duration: float, available: set[str]) -> Section:
    kinds = {
        "floor: asyncio.Semaphore(5) per process + 2x EVALSHA": "floor",
        "callthrottle (Redis)": "callthrottle",
    }
    if "limiters" in available:
        kinds["redis-rate-limiters AsyncSemaphore"] = "limiters"
    rows: list[Row] = []
    for index, (label, kind) in enumerate(kinds.items()):
        log(f"contended, 4 processes: {label} for {duration:g} s")
        row = await run_processes(url, kind, 4, 50, duration, f"bench-p{index}:")
        row.label, row.floor = label, kind == "floor"
        rows.append(row)
    return Section(
        "contended_processes",
        "Contended, 4 processes x 50 coroutines, one number, cap 20 (Redis)",
        "contended",
        with_ratios(rows, "contended"),
        [
            (
                "Max concurrency is the sweep-line peak over every hold's `time.monotonic()` "
                "interval from all processes (after acquire returned, before release was called: "
                "inside the server's hold, so a peak over 20 would prove a violation)."
            ),
            "The floor splits the cap statically (5 per process), so it needs no coordination.",
        ],
    )


# 5. Hand-off between processes ----------------------------------------------------------------


async def bench_handoff(url: str, reps: int) -> Section:
    rows: list[Row] = []
    for kind, label in (
        ("floor", "floor: raw LPUSH -> BLPOP wake-up"),
        ("callthrottle", "callthrottle release -> queued acquire granted"),
    ):
        log(f"hand-off: {label}, {reps} repetitions")
        prefix = "bench-h:"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "waiter",
            "--url",
            url,
            "--kind",
            kind,
            "--prefix",
            prefix,
            "--number",
            NUMBER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout
        if (await stdout.readline()).strip() != b"ready":
            raise RuntimeError("hand-off waiter did not start")
        samples: list[float] = []
        client = aioredis.Redis.from_url(url)
        async with Throttle.from_url(url, key_prefix=prefix) as throttle:
            for rep in range(reps + 10):  # the first 10 warm up
                lease: Lease | None = None
                if kind == "callthrottle":
                    lease = await throttle.acquire(NUMBER, limit=1, timeout=None)
                stdin.write(b"go\n")
                await stdin.drain()
                while True:
                    if lease is not None:
                        if (await throttle.usage(NUMBER, limit=1)).waiting == 1:
                            break
                    elif (await client.info("clients"))["blocked_clients"] == 1:
                        break
                    await asyncio.sleep(0.0005)
                released = time.monotonic()
                if lease is not None:
                    await throttle.release(lease)
                else:
                    await client.lpush(f"{prefix}handoff-floor", 1)
                granted = float((await stdout.readline()).decode())
                if rep >= 10:
                    samples.append((granted - released) * 1e6)
        stdin.write(b"quit\n")
        await stdin.drain()
        await proc.wait()
        await client.aclose()
        rows.append(latency_row(label, samples, floor=kind == "floor"))
    rows = with_ratios(rows, "latency")
    return Section(
        "handoff",
        "Hand-off between processes (Redis)",
        "latency",
        rows,
        [
            (
                "A holder (this process) releases while a waiter in another process is queued "
                "(`usage().waiting == 1`, or the raw client is blocked); time from the start of the "
                "release call to the waiter's grant, both by `time.monotonic()`. ops/s = 1 / mean."
            ),
            (
                f"callthrottle / floor p50: {fmt(rows[1].vs_floor, '.2f', 'x')} (goal: at most "
                "1.0x, the `LPUSH` -> `BLPOP` floor)."
            ),
        ],
    )


# 6. Round trips and memory ------------------------------------------------------------------------


SCRIPT_COMMANDS = ("evalsha", "evalsha_ro", "eval", "eval_ro", "fcall", "fcall_ro")


class Monitor:
    """Counts commands sent by clients (not those run inside scripts) between markers.

    The markers are ECHO commands seen in the MONITOR stream itself, so counts are cut at the
    right place however far the reading thread lags behind.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url)
        self.marker = f"bench-{uuid.uuid4().hex}"
        self.seen: dict[str, int] = {}
        self.snapshot: dict[str, int] = {}
        self.started = threading.Event()
        self.checkpointed = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        recording = False
        with self.client.monitor() as monitor:  # type: ignore[no-untyped-call]
            for command in monitor.listen():
                text = str(command.get("command", ""))
                if f"{self.marker}:start" in text:
                    if not recording:
                        recording = True
                        self.started.set()
                elif f"{self.marker}:checkpoint" in text:
                    self.snapshot = dict(self.seen)
                    self.checkpointed.set()
                elif f"{self.marker}:end" in text:
                    return
                elif recording and command.get("client_type") != "lua":
                    name = text.split(" ", 1)[0].lower()
                    if name not in ("info", "echo"):
                        self.seen[name] = self.seen.get(name, 0) + 1

    @contextmanager
    def window(self) -> Iterator[Callable[[], dict[str, int]]]:
        """Count from entry to exit; the yielded function returns the counts so far."""
        marker = redis.Redis.from_url(self.url)

        def checkpoint() -> dict[str, int]:
            self.checkpointed.clear()
            marker.echo(f"{self.marker}:checkpoint")
            if not self.checkpointed.wait(10):
                raise RuntimeError("MONITOR did not see the checkpoint")
            return dict(self.snapshot)

        self.thread.start()
        while not self.started.is_set():
            marker.echo(f"{self.marker}:start")
            self.started.wait(0.05)
        try:
            yield checkpoint
        finally:
            marker.echo(f"{self.marker}:end")
            self.thread.join(10)
            marker.close()


def script_calls(before: dict[str, Any], after: dict[str, Any]) -> int:
    return sum(
        after.get(f"cmdstat_{name}", {}).get("calls", 0)
        - before.get(f"cmdstat_{name}", {}).get("calls", 0)
        for name in SCRIPT_COMMANDS
    )


def script_usec(before: dict[str, Any], after: dict[str, Any]) -> float:
    return float(
        sum(
            after.get(f"cmdstat_{name}", {}).get("usec", 0)
            - before.get(f"cmdstat_{name}", {}).get("usec", 0)
            for name in SCRIPT_COMMANDS
        )
    )


async def bench_round_trips(url: str, count: int) -> Section:
    """Per operation: script calls and server time (commandstats), then client commands (MONITOR).

    Two passes, because MONITOR slows the server down (it is fed every command a script runs).
    """
    sync = redis.Redis.from_url(url)
    client = aioredis.Redis.from_url(url)
    trivial = client.register_script("return 1")
    stats: dict[str, dict[str, float]] = {}
    commands: dict[str, dict[str, float]] = {}
    async with Throttle.from_url(url, key_prefix="bench-rt:") as throttle:

        async def acquire_many(label: str) -> list[Lease]:
            if label == "callthrottle":
                return [
                    await throttle.acquire(NUMBER, limit=count, timeout=0) for _ in range(count)
                ]
            for _ in range(count):
                await client.evalsha(trivial.sha, 0)
            return []

        async def release_many(label: str, leases: list[Lease]) -> None:
            if label == "callthrottle":
                for lease in leases:
                    await throttle.release(lease)
            else:
                for _ in range(count):
                    await client.evalsha(trivial.sha, 0)

        labels = ("floor: 1 raw EVALSHA", "callthrottle")
        for label in labels:  # warm up: scripts loaded, connections open
            await release_many(label, await acquire_many(label))
        for label in labels:
            first = sync.info("commandstats")
            leases = await acquire_many(label)
            middle = sync.info("commandstats")
            await release_many(label, leases)
            last = sync.info("commandstats")
            for operation, before, after in (("acquire", first, middle), ("release", middle, last)):
                usec = script_usec(before, after)
                stats[f"{label} {operation}"] = {
                    "script_calls_per_op": script_calls(before, after) / count,
                    "server_usec_per_op": usec / count,
                }
        for label in labels:
            monitor = Monitor(url)
            with monitor.window() as checkpoint:
                leases = await acquire_many(label)
                acquire_seen = checkpoint()
                await release_many(label, leases)
                release_seen = {k: v - acquire_seen.get(k, 0) for k, v in checkpoint().items()}
            for operation, by_client in (("acquire", acquire_seen), ("release", release_seen)):
                commands[f"{label} {operation}"] = {
                    name: calls / count for name, calls in by_client.items() if calls
                }
    await client.aclose()
    sync.close()
    rows: list[Row] = []
    for name, stat in stats.items():
        per_op = commands[name]
        rows.append(
            Row(
                name,
                None,
                None,
                None,
                floor=name.startswith("floor"),
                extra={
                    **stat,
                    "client_commands_per_op": sum(per_op.values()),
                    "client_commands": per_op,
                },
            )
        )
    for row in rows:
        operation = row.label.rsplit(" ", 1)[1]
        floor = next(r for r in rows if r.floor and r.label.endswith(operation))
        row.vs_floor = ratio(
            row.extra["client_commands_per_op"], floor.extra["client_commands_per_op"]
        )
    return Section(
        "round_trips",
        f"Round trips per operation ({count} acquires held at once, then {count} releases)",
        "count",
        rows,
        [
            (
                "Script calls and server µs: the delta of EVALSHA/EVALSHA_RO/EVAL/EVAL_RO/FCALL/"
                "FCALL_RO calls and of their time in `INFO commandstats` (which also counts "
                "commands run inside scripts, so only these are read). Client commands: a second pass "
                "under `MONITOR`, counting every command sent by a client (not run by a script) "
                "between two markers; vs floor compares these round trips. The floor is one "
                "raw EVALSHA of `return 1` per operation."
            ),
        ],
    )


def prefix_memory(sync: redis.Redis, prefix: str) -> tuple[int, int]:
    total = keys = 0
    for key in sync.scan_iter(match=f"{prefix}*", count=1000):
        total += int(sync.memory_usage(key, samples=0) or 0)
        keys += 1
    return total, keys


def floor_memory(sync: redis.Redis, members: int) -> int:
    """One ZSET of ``members`` uuid tokens scored by expiry: the least a lease set needs."""
    if not members:
        return 0
    key = f"bench-floor-mem:{uuid.uuid4().hex}"
    now = time.time()
    sync.zadd(key, {str(uuid.uuid4()): now + 30 + i for i in range(members)})
    used = int(sync.memory_usage(key, samples=0) or 0)
    sync.delete(key)
    return used


async def bench_memory_usage(url: str) -> Section:
    sync = redis.Redis.from_url(url)
    prefix = "bench-mem:"
    rows: list[Row] = []

    def measure(label: str, held: int, waiting: int) -> None:
        used, keys = prefix_memory(sync, prefix)
        floor = floor_memory(sync, held + waiting)
        rows.append(
            Row(
                label,
                None,
                None,
                None,
                vs_floor=used / floor if floor else None,
                extra={"bytes": used, "keys": keys, "floor_bytes": floor},
            )
        )

    async with Throttle.from_url(url, key_prefix=prefix) as throttle:
        measure("idle, never used", 0, 0)
        one = await throttle.acquire(NUMBER, limit=CAP, timeout=0)
        measure("busy: 1 lease", 1, 0)
        leases = [one] + [
            await throttle.acquire(NUMBER, limit=CAP, timeout=0) for _ in range(CAP - 1)
        ]
        measure(f"busy: {CAP} leases (full)", CAP, 0)

        async def wait_and_release() -> None:
            await throttle.release(await throttle.acquire(NUMBER, limit=CAP, timeout=None))

        waiters = [asyncio.create_task(wait_and_release()) for _ in range(5)]
        while (await throttle.usage(NUMBER, limit=CAP)).waiting < 5:  # noqa: ASYNC110 - backend state
            await asyncio.sleep(0.005)
        measure(f"busy: {CAP} leases + 5 waiting", CAP + 5, 0)
        for lease in leases:
            await throttle.release(lease)
        await asyncio.gather(*waiters)
        measure("idle again, after use", 0, 0)
    sync.close()
    return Section(
        "memory_usage",
        "Redis memory per number",
        "count",
        rows,
        [
            (
                "`MEMORY USAGE ... SAMPLES 0` summed over every key `SCAN` finds under the "
                "throttle's key prefix. Floor: one ZSET holding as many uuid tokens scored by "
                "expiry (the least a lease set needs), built and measured in the same run."
            ),
        ],
    )


# Report --------------------------------------------------------------------------------------------


def versions(info: dict[str, Any]) -> dict[str, str]:
    found = {"python": platform.python_version()}
    server = info.get("server_name", "redis")
    found["server"] = f"{server} {info.get('valkey_version') or info.get('redis_version')}"
    for name in (
        "callthrottle",
        "redis",
        "hiredis",
        "anyio",
        "redis-rate-limiters",
        "limits",
        "pottery",
        "matplotlib",
    ):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python_implementation": platform.python_implementation(),
    }


def fmt(value: float | None, spec: str = ",.1f", suffix: str = "") -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:{spec}}{suffix}"


def markdown(report: dict[str, Any], sections: list[Section]) -> str:
    lines = [
        "# callthrottle benchmark results",
        "",
        (
            f"Command: `{report['command']}` ({report['mode']}, {report['total_seconds']:.0f} s), "
            f"{report['date']}."
        ),
        "",
        "Machine: " + ", ".join(f"{key} {value}" for key, value in report["machine"].items()) + ".",
        "",
        "Versions: " + ", ".join(f"{key} {value}" for key, value in report["versions"].items()),
        "",
        (
            "Every figure was measured in this run next to its floor (marked **floor**); "
            "*vs floor* is the cost ratio: p50 time over the floor's p50 (latency tables), time "
            "per cycle over the floor's (contended tables), commands or bytes over the floor's."
        ),
    ]
    if report.get("goals"):
        from goals import Goal
        from goals import markdown as goals_markdown

        found = [Goal(**{k: v for k, v in g.items() if k != "met"}) for g in report["goals"]]
        lines += ["", *goals_markdown(found)]
    for section in sections:
        lines += ["", *section_markdown(section)]
    if report["peers_failed"]:
        lines += ["", "## Peers not measured", ""]
        lines += [f"- {name}: {why}" for name, why in report["peers_failed"].items()]
    return "\n".join(lines) + "\n"


def section_markdown(section: Section) -> list[str]:
    """One section as a Markdown heading, table and notes."""
    lines = [f"## {section.title}", ""]
    if section.kind == "latency":
        lines += [
            "| operation | p50 µs | p99 µs | ops/s | vs floor |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {'**floor** ' if r.floor else ''}{r.label} | {fmt(r.p50_us)} | "
            f"{fmt(r.p99_us)} | {fmt(r.ops_per_s, ',.0f')} | {fmt(r.vs_floor, '.2f', 'x')} |"
            for r in section.rows
        ]
    elif section.kind == "contended":
        lines += [
            "| run | cycles/s | wait p50 µs | wait p99 µs | max concurrency | vs floor |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {'**floor** ' if r.floor else ''}{r.label} | {fmt(r.ops_per_s, ',.0f')} | "
            f"{fmt(r.p50_us)} | {fmt(r.p99_us)} | {r.extra['max_concurrency']} "
            f"{'(OVER CAP)' if r.extra['max_concurrency'] > CAP else ''}| "
            f"{fmt(r.vs_floor, '.2f', 'x')} |"
            for r in section.rows
        ]
    elif section.key == "round_trips":
        lines += [
            (
                "| operation | script calls/op | client commands/op | server µs/op | commands "
                "| vs floor |"
            ),
            "| --- | ---: | ---: | ---: | --- | ---: |",
        ]
        lines += [
            f"| {'**floor** ' if r.floor else ''}{r.label} | "
            f"{r.extra['script_calls_per_op']:.2f} | "
            f"{r.extra['client_commands_per_op']:.2f} | "
            f"{r.extra['server_usec_per_op']:.1f} | "
            + (
                ", ".join(f"{k} {v:.2f}" for k, v in sorted(r.extra["client_commands"].items()))
                or "—"
            )
            + f" | {fmt(r.vs_floor, '.2f', 'x')} |"
            for r in section.rows
        ]
    elif section.key == "memory_usage":
        lines += [
            "| state | keys | bytes | floor bytes | vs floor |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r.label} | {r.extra['keys']} | {r.extra['bytes']:,} | "
            f"{r.extra['floor_bytes']:,} | {fmt(r.vs_floor, '.2f', 'x')} |"
            for r in section.rows
        ]
    else:
        lines += extras_table(section)
    lines += [""] + [f"- {note}" for note in section.notes] if section.notes else []
    return lines


def extras_table(section: Section) -> list[str]:
    """A table of any other section: latency (when measured), then each figure in ``extra``
    (a mapping, such as commands by name, as "name count" pairs)."""
    timed = any(r.p50_us is not None for r in section.rows)
    names = list(dict.fromkeys(k for r in section.rows for k in r.extra))

    def cell(value: object) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k} {v:.2f}" for k, v in value.items()) or "—"
        if isinstance(value, float):
            return fmt(value, ",.2f")
        return "—" if value is None else str(value)

    columns = ["operation", *(["p50 µs", "p99 µs"] if timed else []), *names, "vs floor"]
    lines = ["| " + " | ".join(c.replace("_", " ") for c in columns) + " |"]
    lines.append("| --- |" + " ---: |" * (len(columns) - 1))
    for r in section.rows:
        cells = [f"{'**floor** ' if r.floor else ''}{r.label}"]
        cells += [fmt(r.p50_us), fmt(r.p99_us)] if timed else []
        cells += [cell(r.extra.get(name)) for name in names]
        cells.append(fmt(r.vs_floor, ".2f", "x"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _bars(
    axes: Any, sections: list[Section], value_of: Callable[[Row], float | None], label: str
) -> None:
    """One horizontal bar per row, on a log scale, floors in gray, each labelled."""
    names: list[str] = []
    values: list[float] = []
    colors: list[str] = []
    palette = ["tab:blue", "tab:green", "tab:purple"]
    for index, section in enumerate(sections):
        for row in section.rows:
            names.append(f"{section.key}: {row.label}")
            values.append(value_of(row) or 0.0)
            colors.append("tab:gray" if row.floor else palette[index % len(palette)])
    axes.barh(range(len(values)), values, color=colors)
    axes.set_yticks(range(len(values)), names, fontsize=7)
    axes.invert_yaxis()
    axes.set_xscale("log")
    for position, value in enumerate(values):
        axes.text(value, position, " " + label.format(value), va="center", fontsize=7)


def chart(sections: list[Section], path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = {section.key: section for section in sections}
    keys = ("redis_uncontended", "cluster_uncontended", "memory_uncontended", "handoff", "facade")
    latency = [by_key[k] for k in keys if k in by_key]
    contended = [by_key[k] for k in ("contended_redis", "contended_memory", "contended_processes")]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 12.5))
    _bars(top, latency, lambda row: row.p50_us, "{:,.1f}")
    top.set_xlabel("p50 latency, µs (log scale); gray bars and dashed lines are the floors")
    top.set_title("Uncontended operations and cross-process hand-off")
    start = 0
    for section in latency:
        floor = next(row for row in section.rows if row.floor)
        end = start + len(section.rows)
        top.vlines(floor.p50_us, start - 0.4, end - 0.6, colors="black", linestyles="dashed")
        start = end
    _bars(bottom, contended, lambda row: row.ops_per_s, "{:,.0f}")
    bottom.set_xlabel("cycles/s (log scale), cap 20; gray bars are the floors")
    bottom.set_title("Contended: 200 coroutines on one number")
    fig.suptitle(f"callthrottle benchmarks ({subtitle})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


async def run(args: argparse.Namespace, url: str) -> tuple[dict[str, Any], list[Section]]:
    info = redis.Redis.from_url(url).info("server")
    sections: list[Section] = []
    log(f"server {url}; redis uncontended, {args.rounds} rounds per operation")
    redis_section, failed = await bench_redis_uncontended(url, args.rounds)
    sections.append(redis_section)
    log(f"breakdown of the uncontended pair, {args.rounds} rounds per step")
    sections.append(await bench_breakdown(url, args.rounds))
    log("pool picks at 10, 100, 1,000 and 10,000 numbers")
    sections.append(await bench_pools(url, args.rounds))
    log(f"a 3-master Redis Cluster, {args.rounds} rounds per operation")
    sections.append(await bench_cluster(url, args.rounds))
    log(f"memory uncontended, {args.rounds} rounds per operation")
    sections.append(await bench_memory_uncontended(args.rounds))
    available = set() if any(k.startswith("redis-rate") for k in failed) else {"limiters"}
    redis_kinds = {
        "floor: asyncio.Semaphore(20) + 2x EVALSHA": "floor",
        "callthrottle (Redis)": "callthrottle",
    }
    if available:
        redis_kinds["redis-rate-limiters AsyncSemaphore"] = "limiters"
    contended_redis = await bench_contended_local(
        url,
        redis_kinds,
        "floor: asyncio.Semaphore(20) + 2x EVALSHA",
        args.duration,
        "Contended, one process, 200 coroutines, one number, cap 20 (Redis)",
        "contended_redis",
    )
    sections.append(contended_redis)
    sections.append(
        await bench_contended_local(
            "memory://",
            {
                "anyio.CapacityLimiter(20)": "anyio",
                "asyncio.Semaphore(20)": "asyncio",
                "callthrottle (memory://)": "callthrottle",
            },
            "anyio.CapacityLimiter(20)",
            args.duration / 2,
            "Contended, one process, 200 coroutines, one number, cap 20 (memory://)",
            "contended_memory",
        )
    )
    sections.append(await bench_contended_processes(url, args.duration, available))
    sections.append(await bench_handoff(url, args.handoff_reps))
    log("round trips (INFO commandstats, MONITOR)")
    sections.append(await bench_round_trips(url, CAP))
    from capacity import run as run_capacity  # (it imports this module's helpers)

    sections += await run_capacity(url, args.rounds, args.duration, args.quick)
    from sessions import run as run_sessions  # (it imports this module's helpers)

    sections += await run_sessions(url, args.rounds, 200 if not args.quick else 50)
    from facade import run as run_facade  # (it imports this module's helpers)

    sections += await run_facade(url, args.rounds)
    from fence import run as run_fence  # (it imports this module's helpers)

    sections += await run_fence(url, args.rounds, args.duration, args.quick)
    log("memory per number")
    sections.append(await bench_memory_usage(url))
    from capacity import scale_section
    from goals import goals

    scale = scale_section(sections)
    sections += [scale] if scale else []
    found = goals(sections)
    report: dict[str, Any] = {
        "command": " ".join(["python", "dev.py", "bench", *sys.argv[1:]]),
        "mode": "quick" if args.quick else "full",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "versions": versions(info),
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "handoff_reps": args.handoff_reps,
            "url": args.url or "started by tests._servers.redis_server()",
        },
        "peers_failed": failed,
        "goals": [{**asdict(goal), "met": goal.met} for goal in found],
    }
    return report, sections


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="benchmark this Redis server instead of starting one")
    parser.add_argument("--quick", action="store_true", help="a ~30 s run with fewer samples")
    parser.add_argument("--rounds", type=int, help="timed pairs per uncontended operation")
    parser.add_argument("--duration", type=float, help="seconds per contended run")
    parser.add_argument("--handoff-reps", type=int, help="hand-offs timed per kind")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    args.rounds = args.rounds or (1000 if args.quick else 3000)
    args.duration = args.duration or (2.0 if args.quick else 8.0)
    args.handoff_reps = args.handoff_reps or (100 if args.quick else 200)
    server: AbstractContextManager[str] = nullcontext(args.url) if args.url else redis_server()
    with server as url:
        report, sections = asyncio.run(run(args, url))
    report["total_seconds"] = time.monotonic() - STARTED
    report["sections"] = [asdict(section) for section in sections]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(report, sections)
    (args.out_dir / "results.md").write_text(text)
    (args.out_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    chart(sections, args.out_dir / "results.png", report["command"])
    log(f"wrote {args.out_dir}/results.md, results.json, results.png")
    print(text)


if __name__ == "__main__":
    main()
