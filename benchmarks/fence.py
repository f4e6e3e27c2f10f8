"""The data-loss fence's cost: the shipped function library against the same library with the
fence compiled out, measured in one run (sections of ``suite.py``).

    python benchmarks/fence.py [--url redis://...] [--quick]   # these sections alone

The library without the fence is the shipped source with exact text replacements (see
``UNFENCE``), each asserted to apply once, so that a change to the fence's code breaks this
benchmark loudly instead of measuring something else. It is loaded under a name of its own (a
library's name carries a digest of its source) and swapped in step by step: ``RedisBackend``
reads ``callthrottle.backends.redis._LIBRARY`` at call time. Both run side by side on one
server, under key prefixes of their own, in alternating blocks, so that drift on the machine
hits both.

The fence ends at once (``lift_fence``) on a server this benchmark uses: a young server (or a
library loaded anew) would otherwise hold every grant for a lease TTL (see README, "When Redis
loses its data").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, cast

import callthrottle.backends.redis as redis_backend
import redis
from callthrottle import Throttle
from callthrottle.backends import AcquireRequest, Outcome
from callthrottle.backends._lane import Library

if TYPE_CHECKING:
    from callthrottle.backends import RedisBackend

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _worker import Contended, contend, hold_factory
from hot_path import Step, compare
from suite import (
    Row,
    Section,
    contended_row,
    latency_row,
    log,
    section_markdown,
    with_ratios,
)
from tests._servers import redis_server

NUMBER = "+8657188880001"
CAP = 20
TTL = 30.0  # seconds: the throttle's default lease TTL
ON = "shipped library (fenced)"
OFF = "fence compiled out"

#: file -> (shipped text, its replacement): every place the library reads or keeps the fence.
#: ``fenced`` and ``watch_for_loss`` return at once, ``may_hand_over`` says yes, the fence's
#: term of ``retry_in`` is 0, and acquire does not even name the prefix's marker key.
UNFENCE: dict[str, list[tuple[str, str]]] = {
    "_common.lua": [
        (
            "local function watch_for_loss(now, mark)\n",
            "local function watch_for_loss(now, mark)\n  do return end\n",
        ),
        (
            "local function fenced(now, grace, mark)\n",
            "local function fenced(now, grace, mark)\n  do return nil end\n",
        ),
        (
            "  return FENCE.checked ~= nil and fence_end(now, 0, fence_mark(H)) <= now\n",
            "  return true\n",
        ),
        (
            "  local fence = fence_end(now, 0, fence_mark(H)) - now\n",
            "  local fence = 0\n",
        ),
    ],
    "acquire.lua": [
        ("local fence = fenced(now, ttl, fence_mark(H))\n", "local fence = nil\n"),
    ],
}


def unfenced_library() -> Library:
    """The shipped library, its fence compiled out (``UNFENCE``)."""
    folder = resources.files(redis_backend.__package__).joinpath("lua")
    names = ["_common", *redis_backend._SCRIPT_NAMES]
    sources = {name: folder.joinpath(f"{name}.lua").read_text(encoding="utf-8") for name in names}
    for file, replacements in UNFENCE.items():
        name = file.removesuffix(".lua")
        for old, new in replacements:
            found = sources[name].count(old)
            if found != 1:
                raise RuntimeError(
                    f"the fence's code changed: {old.strip()!r} is in {file} {found} times, "
                    "not once; update UNFENCE in benchmarks/fence.py"
                )
            sources[name] = sources[name].replace(old, new)
    shared = sources.pop("_common")
    library = Library("callthrottle", shared, sources)
    shipped = redis_backend._LIBRARY
    if library.source == shipped.source or shipped.functions == library.functions:
        raise RuntimeError("the library without the fence is the shipped one")
    return library


def use(library: Library) -> None:
    """Every RedisBackend runs ``library`` from its next call on."""
    redis_backend._LIBRARY = library


def backend_of(throttle: Throttle) -> RedisBackend:
    return cast("RedisBackend", throttle.backend)


async def lift(throttle: Throttle, library: Library) -> None:
    use(library)
    await backend_of(throttle).lift_fence()


def command_stats(sync: redis.Redis) -> dict[str, tuple[int, int]]:
    """Every command's calls and time (µs) so far, from ``INFO commandstats``."""
    stats = sync.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(value["calls"]), int(value["usec"]))
        for name, value in stats.items()
    }


def stats_delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> tuple[Counter[str], int]:
    """Calls per command between two readings (less the INFO that took the first), and the
    time spent in FCALL (µs)."""
    calls: Counter[str] = Counter()
    for name, (count, _) in after.items():
        calls[name] = count - before.get(name, (0, 0))[0]
    calls["info"] -= 1
    usec = after.get("fcall", (0, 0))[1] - before.get("fcall", (0, 0))[1]
    return +calls, usec


# Uncontended, from the client -----------------------------------------------------------------


async def bench_uncontended(url: str, rounds: int, unfenced: Library) -> Section:
    """acquire + release through Throttle, with and without the fence, and the variant without
    it a second time under another prefix (the difference noise alone makes in this run)."""
    shipped = redis_backend._LIBRARY
    again = f"{OFF}, again (A/A: the noise)"
    async with AsyncExitStack() as stack:
        throttles = {
            label: await stack.enter_async_context(
                Throttle.from_url(url, key_prefix=f"bench-fence-{index}:")
            )
            for index, label in enumerate((OFF, ON, again))
        }
        libraries = {OFF: unfenced, ON: shipped, again: unfenced}
        for label, throttle in throttles.items():
            await lift(throttle, libraries[label])

        def pair(throttle: Throttle, library: Library) -> Step:
            async def step() -> None:
                use(library)
                await throttle.release(await throttle.acquire(NUMBER, limit=CAP, timeout=0))

            return step

        steps = {label: pair(throttles[label], libraries[label]) for label in throttles}
        results = await compare("fence: uncontended", steps, rounds)
    use(shipped)
    rows = [
        Row(label, r["p50_us"], r["p99_us"], r["ops_per_s"], floor=label == OFF)
        for label, r in results.items()
    ]
    with_ratios(rows, "latency")
    cost = results[ON]["p50_us"] - results[OFF]["p50_us"]
    noise = results[again]["p50_us"] - results[OFF]["p50_us"]
    return Section(
        "fence_uncontended",
        "The fence's cost, uncontended: Throttle acquire + release on one number",
        "latency",
        rows,
        [
            (
                "Floor: the same library with its fence compiled out (benchmarks/fence.py "
                "UNFENCE). Steps alternate in blocks of 100, so drift on the machine hits all."
            ),
            (
                f"p50 difference, shipped - compiled out: {cost:+.1f} µs; the A/A row, two runs "
                f"of the same code, differs by {noise:+.1f} µs (the noise of this run)."
            ),
        ],
    )


# Inside the server ------------------------------------------------------------------------------


async def bench_server(url: str, blocks: int, per_block: int, unfenced: Library) -> Section:
    """Per acquire and per release: FCALLs sent, commands the function ran and FCALL time, from
    ``INFO commandstats`` deltas, acquire and release in phases of their own: ``per_block``
    numbers get one lease each, then give it back; the two libraries alternate block by block
    (RedisBackend calls: no Throttle around them, so no renewal falls in a phase)."""
    shipped = redis_backend._LIBRARY
    sync = redis.Redis.from_url(url)
    numbers = [f"+86571999{i:04d}" for i in range(per_block)]
    calls: dict[str, Counter[str]] = {}
    usec: dict[str, list[float]] = {}  # per block: FCALL time over FCALL calls
    async with AsyncExitStack() as stack:
        on = await stack.enter_async_context(Throttle.from_url(url, key_prefix="bench-fs-on:"))
        off = await stack.enter_async_context(Throttle.from_url(url, key_prefix="bench-fs-off:"))
        variants = {OFF: (off, unfenced), ON: (on, shipped)}
        for throttle, library in variants.values():
            await lift(throttle, library)
        for block in range(blocks + 1):  # the first warms up (connections, subscriptions)
            # Which library goes first alternates too (a phase may leave the server warmer).
            for label, (throttle, library) in list(variants.items())[:: -1 if block % 2 else 1]:
                use(library)
                backend, owner = backend_of(throttle), throttle.owner_id
                tokens = [uuid.uuid4().hex for _ in numbers]
                first = command_stats(sync)
                for number, token in zip(numbers, tokens, strict=True):
                    result = await backend.acquire(
                        AcquireRequest(number, token, owner, CAP, TTL, None), enqueue=False
                    )
                    if result.outcome is not Outcome.GRANTED:
                        raise RuntimeError(f"{label}: acquire not granted ({result})")
                middle = command_stats(sync)
                for number, token in zip(numbers, tokens, strict=True):
                    if await backend.release(number, token, owner) != 1:
                        raise RuntimeError(f"{label}: release found no lease")
                last = command_stats(sync)
                if not block:
                    continue
                for operation, before, after in (
                    ("acquire", first, middle),
                    ("release", middle, last),
                ):
                    counted, spent = stats_delta(before, after)
                    calls.setdefault(f"{operation}, {label}", Counter()).update(counted)
                    usec.setdefault(f"{operation}, {label}", []).append(spent / counted["fcall"])
    use(shipped)
    sync.close()
    ops = blocks * per_block
    rows: list[Row] = []
    for name in (f"{op}, {label}" for op in ("acquire", "release") for label in (OFF, ON)):
        counted = calls[name]
        fcalls = counted["fcall"]
        inside = {k: v / ops for k, v in sorted(counted.items()) if k != "fcall"}
        rows.append(
            Row(
                name,
                None,
                None,
                None,
                floor=name.endswith(OFF),
                extra={
                    "server_usec_per_fcall": statistics.median(usec[name]),
                    "fcalls_per_op": fcalls / ops,
                    "commands_inside_per_op": sum(inside.values()),
                    "commands_inside": inside,
                },
            )
        )
    for row in rows:
        operation = row.label.split(",", 1)[0]
        floor = next(r for r in rows if r.floor and r.label.startswith(operation))
        row.vs_floor = row.extra["server_usec_per_fcall"] / floor.extra["server_usec_per_fcall"]
    return Section(
        "fence_server",
        "The fence's cost inside Redis, per acquire and per release (INFO commandstats)",
        "count",
        rows,
        [
            (
                f"{blocks} blocks of {per_block} numbers per library, alternating: each number "
                "takes one lease (acquire phase), then gives it back (release phase); a reading "
                "of `INFO commandstats` before and after each phase (its own INFO is not counted)."
            ),
            (
                "server µs per FCALL: FCALL time over FCALL calls in a phase (the commands a "
                "function runs are inside it), the median of the phases (a burst of other work "
                "on the machine hits one phase, not the figure); FCALLs per op: the round trips (commands sent by the client); "
                "commands inside: every other command counted meanwhile, per operation; vs floor: "
                "server µs per FCALL over the same operation's without the fence."
            ),
            (
                "A release runs the same code in both libraries (it asks may_hand_over only "
                "when someone waits): its difference is the noise of this run."
            ),
        ],
    )


# Contended --------------------------------------------------------------------------------------


async def bench_contended(url: str, duration: float, blocks: int, unfenced: Library) -> Section:
    """200 coroutines cycling on one number with cap 20, ``blocks`` runs of each library in
    turn (and of the library without the fence again: the noise) adding up to ``duration``
    seconds each."""
    shipped = redis_backend._LIBRARY
    again = f"{OFF}, again (A/A: the noise)"
    variants = [(OFF, unfenced), (ON, shipped), (again, unfenced)]
    sync = redis.Redis.from_url(url)
    merged: dict[str, Contended] = {}
    calls: dict[str, Counter[str]] = {label: Counter() for label, _ in variants}
    rates: dict[str, list[float]] = {label: [] for label, _ in variants}  # cycles/s per run
    usec: dict[str, list[float]] = {label: [] for label, _ in variants}  # FCALL µs per cycle
    async with AsyncExitStack() as stack:
        holds = {}
        for index, (label, library) in enumerate(variants):
            use(library)
            holds[label] = await stack.enter_async_context(
                hold_factory(
                    "callthrottle",
                    url,
                    prefix=f"bench-fc-{index}:",
                    number=NUMBER,
                    cap=CAP,
                    share=CAP,
                    connections=200,
                )
            )
            async with holds[label]():  # warm up
                pass
        for block in range(blocks):
            turn = block % len(variants)  # which goes first rotates too
            for label, library in variants[turn:] + variants[:turn]:
                use(library)
                log(f"fence: contended, {label}, block {block + 1}/{blocks}")
                before = command_stats(sync)
                result = await contend(
                    holds[label], 200, time.monotonic() + 0.05, duration / blocks
                )
                counted, spent = stats_delta(before, command_stats(sync))
                calls[label].update(counted)
                usec[label].append(spent / result["cycles"])
                rates[label].append(result["cycles"] / result["elapsed"])
                into = merged.setdefault(
                    label, {"cycles": 0, "elapsed": 0.0, "peak": 0, "waits_ns": [], "holds": []}
                )
                into["cycles"] += result["cycles"]
                into["elapsed"] += result["elapsed"]
                into["peak"] = max(into["peak"], result["peak"])
                into["waits_ns"] += result["waits_ns"]
    use(shipped)
    sync.close()
    rows = [contended_row(label, merged[label], floor=label == OFF) for label, _ in variants]
    for row in rows:  # a burst of other work on the machine hits one run, not the figure
        row.ops_per_s = statistics.median(rates[row.label])
    server = []
    for label, _ in variants:
        cycles = merged[label]["cycles"]
        inside = sum(v for k, v in calls[label].items() if k != "fcall") / cycles
        server.append(
            f"{label}: {statistics.median(usec[label]):.1f} µs of FCALL time and "
            f"{calls[label]['fcall'] / cycles:.2f} FCALLs per cycle, {inside:.2f} commands run "
            f"inside them per cycle ({calls[label]['get'] / cycles:.2f} GET: the marker)"
        )
    return Section(
        "fence_contended",
        "The fence's cost, contended: 200 coroutines, one number, cap 20 (Redis)",
        "contended",
        with_ratios(rows, "contended"),
        [
            (
                f"{blocks} runs of {duration / blocks:.3g} s per library in turn; cycles/s and "
                "FCALL time per cycle: the median of the runs; waits and counts: of all. Each "
                "release hands the slot to a waiter (promote asks may_hand_over first); acquires "
                "and releases asked for meanwhile go to the server in batches."
            ),
            "Inside Redis (INFO commandstats over the runs): " + "; ".join(server) + ".",
        ],
    )


# The first call of a fresh library ------------------------------------------------------------


async def bench_first_call(url: str, reps: int) -> Section:
    """What the first acquire on a fresh library costs the server (it reads INFO and sets the
    prefix's marker key): after FUNCTION FLUSH and a load of the shipped library, the first
    acquire against the next one, ``reps`` times."""
    shipped = redis_backend._LIBRARY
    use(shipped)
    sync = redis.Redis.from_url(url)
    # A server up for less than the leases' TTL fences a fresh library (it cannot tell that from
    # a restart): leases of 1 s on a server up for 2 s at least.
    while int(sync.info("server")["uptime_in_seconds"]) < 2:  # noqa: ASYNC110 - server state
        await asyncio.sleep(0.1)
    usec: dict[str, list[float]] = {"first": [], "next": []}
    latency: dict[str, list[float]] = {"first": [], "next": []}
    calls: dict[str, Counter[str]] = {"first": Counter(), "next": Counter()}
    async with Throttle.from_url(url, key_prefix="bench-ff:") as throttle:
        backend, owner = backend_of(throttle), throttle.owner_id
        warm = uuid.uuid4().hex  # connection and event subscription up
        await backend.acquire(AcquireRequest(NUMBER, warm, owner, CAP, 1.0, None), enqueue=False)
        await backend.release(NUMBER, warm, owner)
        for _ in range(reps):
            sync.function_flush()
            sync.function_load(shipped.source)
            for which in ("first", "next"):
                token = uuid.uuid4().hex
                before = command_stats(sync)
                started = time.perf_counter_ns()
                result = await backend.acquire(
                    AcquireRequest(NUMBER, token, owner, CAP, 1.0, None), enqueue=False
                )
                latency[which].append((time.perf_counter_ns() - started) / 1000)
                after = command_stats(sync)
                if result.outcome is not Outcome.GRANTED:
                    raise RuntimeError(f"{which} acquire on a fresh library not granted ({result})")
                counted, spent = stats_delta(before, after)
                if counted["fcall"] != 1:
                    raise RuntimeError(f"{which} acquire sent {counted['fcall']} FCALLs, not 1")
                usec[which].append(spent)
                calls[which].update(counted)
                await backend.release(NUMBER, token, owner)
        await backend.lift_fence()  # as the server had it before (a new library begins fenced)
    sync.close()
    rows: list[Row] = []
    for which, label in (
        ("next", "the next acquire (the library saw the server)"),
        ("first", "first acquire after FUNCTION FLUSH + load"),
    ):
        row = latency_row(label, latency[which], floor=which == "next")
        inside = {k: v / reps for k, v in sorted(calls[which].items()) if k != "fcall"}
        row.extra = {
            "server_usec_per_fcall": statistics.median(usec[which]),
            "commands_inside_per_op": sum(inside.values()),
            "commands_inside": inside,
        }
        rows.append(row)
    rows[1].vs_floor = (
        rows[1].extra["server_usec_per_fcall"] / rows[0].extra["server_usec_per_fcall"]
    )
    rows[0].vs_floor = 1.0
    return Section(
        "fence_first_call",
        "The fence's first look at a server: the first acquire of a fresh library",
        "count",
        rows,
        [
            (
                f"{reps} times: FUNCTION FLUSH, FUNCTION LOAD of the shipped library, then two "
                "acquires (each released) on one number, leases of 1 s. The first reads INFO "
                "server, replication and cluster and sets the prefix's marker key; it happens "
                "once per library instance (and again after a second without any call)."
            ),
            (
                "p50/p99: the call from the client (RedisBackend.acquire); server µs per FCALL: "
                "the median of the single call's FCALL time in `INFO commandstats`; vs floor: "
                "that over the next acquire's. Informational: a cost paid once, not per call."
            ),
        ],
    )


async def run(url: str, rounds: int, duration: float, quick: bool) -> list[Section]:
    shipped = redis_backend._LIBRARY
    unfenced = unfenced_library()
    try:
        log(f"fence: uncontended, with and without, {rounds} rounds")
        sections = [await bench_uncontended(url, rounds, unfenced)]
        blocks, per_block = (5, 100) if quick else (10, 200)
        log(f"fence: inside the server, {blocks} blocks of {per_block} per library")
        sections.append(await bench_server(url, blocks, per_block, unfenced))
        log(f"fence: contended, {duration:g} s per library")
        sections.append(await bench_contended(url, duration, 3 if quick else 8, unfenced))
        reps = 10 if quick else 30
        log(f"fence: the first call of a fresh library, {reps} times")
        sections.append(await bench_first_call(url, reps))
    finally:
        use(shipped)
    return sections


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="benchmark this Redis server instead of starting one")
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter runs")
    parser.add_argument("--rounds", type=int, help="timed pairs per uncontended step")
    parser.add_argument("--duration", type=float, help="seconds of contended cycling per library")
    args = parser.parse_args()
    rounds = args.rounds or (1000 if args.quick else 3000)
    duration = args.duration or (2.0 if args.quick else 8.0)
    if args.url:
        sections = asyncio.run(run(args.url, rounds, duration, args.quick))
    else:
        with redis_server() as url:
            sections = asyncio.run(run(url, rounds, duration, args.quick))
    for section in sections:
        print("\n".join(section_markdown(section)))


if __name__ == "__main__":
    main()
