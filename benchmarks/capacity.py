"""The server's work per decision and what one Redis master carries (sections of ``suite.py``).

    python benchmarks/capacity.py [--url redis://...] [--quick]   # these sections alone

1. Server work per decision: for a plain acquire, a plain release, and the acquire and release
   of a number under every limit, the time inside Redis per call (``FCALL`` usec in
   ``INFO commandstats``) and the commands run inside the function per call (the deltas of
   every other command in ``INFO commandstats``, which counts the commands a script runs as
   well as those clients send), against a trivial ``return 1`` script.
2. Capacity: the server's CPU time per call set-up (acquire + release; ``INFO cpu``,
   ``used_cpu_user + used_cpu_sys``, so its network work is in it) and the set-ups per second
   one master carries at 100% of its one command thread (1 / CPU per set-up); then a check:
   several client processes drive the server, and the set-ups/s they reach are divided by the
   share of a core the server used meanwhile.
3. Renewals: the server's CPU per held call per second, for per-process leases (a heartbeat
   every ``renew_interval`` renews each lease, one batch per number) and for session leases
   (one keep-alive per session per ``renew_interval``).
4. Scale on paper (``scale``): masters for 100,000 concurrent calls and 2,000 set-ups/s,
   worked from the figures above and the memory per number (``suite.py`` section 6).

``python benchmarks/capacity.py drive ...`` is one client process of the check (not run by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

import redis
from callthrottle import Lease, Throttle

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hot_path import NUMBER
from suite import CALLEE, CAP, POLICED, SCRIPT_COMMANDS, Row, Section, log, prefix_memory
from tests._servers import redis_server

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

HERE = Path(__file__).resolve()
#: Seconds; long enough that no heartbeat runs inside a measured window.
QUIET_TTL = 3600.0
#: Commands a client sends that are not part of a decision (the measuring INFO itself, the
#: pub/sub connection's checks); left out of the counts of commands run inside the functions.
CLIENT_ONLY = frozenset(
    {"info", "ping", "echo", "hello", "client", "select", "subscribe", "ssubscribe", "psubscribe"}
)
#: The default lease TTL and renew interval (``lease_ttl / 3``) of a throttle.
LEASE_TTL = 30.0
RENEW_INTERVAL = LEASE_TTL / 3

# Scale on paper: the deployment the README works out.
SCALE_CALLS = 100_000
SCALE_SETUPS = 2_000
SCALE_NUMBERS = 5_000
SCALE_SESSIONS = 100  # e.g. 100 SBC or dialer instances, one session each, 1,000 calls each
HEADROOM = 0.5  # keep a master's command thread under 50% busy


def stats(sync: redis.Redis, section: str) -> dict[str, Any]:
    found: dict[str, Any] = sync.info(section)
    return found


def inner_commands(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Calls of every command that is neither a script call nor a client-only command, by name:
    the commands the functions ran (``INFO commandstats`` counts those too)."""
    counts: dict[str, int] = {}
    for key, value in after.items():
        name = key.removeprefix("cmdstat_")
        if name in SCRIPT_COMMANDS or name in CLIENT_ONLY:
            continue
        delta = int(value["calls"]) - int(before.get(key, {}).get("calls", 0))
        if delta:
            counts[name] = delta
    return counts


def script_delta(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, float]:
    calls = usec = 0.0
    for name in SCRIPT_COMMANDS:
        old = before.get(f"cmdstat_{name}", {})
        new = after.get(f"cmdstat_{name}", {})
        calls += new.get("calls", 0) - old.get("calls", 0)
        usec += new.get("usec", 0) - old.get("usec", 0)
    return int(calls), float(usec)


def cpu_seconds(sync: redis.Redis) -> float:
    cpu = stats(sync, "cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


class Tally:
    """Script calls, their usec and the inner commands of one operation, over many windows."""

    def __init__(self) -> None:
        self.calls = 0
        self.usec = 0.0
        self.commands: dict[str, int] = {}

    def add(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        calls, usec = script_delta(before, after)
        self.calls += calls
        self.usec += usec
        for name, count in inner_commands(before, after).items():
            self.commands[name] = self.commands.get(name, 0) + count

    def row(self, label: str, ops: int, *, floor: bool = False) -> Row:
        per_call = {k: v / ops for k, v in sorted(self.commands.items(), key=lambda kv: -kv[1])}
        return Row(
            label,
            None,
            None,
            None,
            floor=floor,
            extra={
                "script_calls_per_op": self.calls / ops,
                "server_usec_per_op": self.usec / ops,
                "commands_per_op": sum(per_call.values()),
                "commands": per_call,
            },
        )


async def bench_server_work(url: str, rounds: int) -> Section:
    """Per acquire and per release: FCALL usec and the commands run inside, in windows where
    only these calls run (CAP acquires held at once, then their releases, ``rounds`` times)."""
    sync = redis.Redis.from_url(url)
    client = aioredis.Redis.from_url(url)
    trivial = client.register_script("return 1")
    await trivial()
    tallies = {name: Tally() for name in ("trivial", "acquire", "release", "p-acquire", "p-rel")}
    quiet: dict[str, Any] = {"lease_ttl": QUIET_TTL}
    async with (
        Throttle.from_url(url, key_prefix="bench-sw:", **quiet) as plain,
        Throttle.from_url(url, key_prefix="bench-swp:", config=POLICED, **quiet) as policed,
    ):

        async def take(throttle: Throttle, callee: str | None) -> list[Lease]:
            return [
                await throttle.acquire(NUMBER, limit=CAP, timeout=0, callee=callee)
                for _ in range(CAP)
            ]

        async def give(throttle: Throttle, leases: list[Lease]) -> None:
            for lease in leases:
                await throttle.release(lease)

        for throttle, callee in ((plain, None), (policed, CALLEE)):  # warm up
            await give(throttle, await take(throttle, callee))
        for _ in range(rounds):
            first = stats(sync, "commandstats")
            for _ in range(CAP):
                await client.evalsha(trivial.sha, 0)
            second = stats(sync, "commandstats")
            tallies["trivial"].add(first, second)
            for throttle, callee, on, off in (
                (plain, None, "acquire", "release"),
                (policed, CALLEE, "p-acquire", "p-rel"),
            ):
                first = stats(sync, "commandstats")
                leases = await take(throttle, callee)
                second = stats(sync, "commandstats")
                await give(throttle, leases)
                third = stats(sync, "commandstats")
                tallies[on].add(first, second)
                tallies[off].add(second, third)
    await client.aclose()
    sync.close()
    ops = rounds * CAP
    rows = [
        tallies["trivial"].row("floor: EVALSHA of `return 1`", ops, floor=True),
        tallies["acquire"].row("acquire (plain)", ops),
        tallies["release"].row("release (plain)", ops),
        tallies["p-acquire"].row("acquire (every limit)", ops),
        tallies["p-rel"].row("release (every limit)", ops),
    ]
    floor = rows[0].extra["server_usec_per_op"]
    for row in rows:
        row.vs_floor = row.extra["server_usec_per_op"] / floor if floor else None
    return Section(
        "server_work",
        f"Server work per decision ({CAP} acquires held at once, then their releases)",
        "count",
        rows,
        [
            (
                "server usec per op: the delta of FCALL (and EVALSHA) time in `INFO commandstats` "
                "per call; vs floor is that time over the trivial script's. commands per op: the "
                "delta of every other command in `INFO commandstats` per call. The server counts "
                "there the commands a script or function runs (each `redis.call`) as well as those "
                "clients send, and in the windows measured clients send only the calls themselves "
                "(and the INFO that reads the counts, left out), so these are the commands run "
                "inside the functions."
            ),
            (
                f"{rounds} windows of each operation ({ops:,} calls); every limit is the number "
                "of section 1 (a cap and two rate windows, a trunk and a tenant with caps and "
                "windows, and the callee's window)."
            ),
        ],
    )


async def idle_cpu_rate(sync: redis.Redis, seconds: float) -> float:
    """The server's CPU seconds per second with no client calling (its own timers)."""
    started, before = time.perf_counter(), cpu_seconds(sync)
    await asyncio.sleep(seconds)
    return (cpu_seconds(sync) - before) / (time.perf_counter() - started)


async def cpu_per_step(
    sync: redis.Redis, step: Callable[[], Awaitable[None]], count: int, idle: float
) -> float:
    """The server's CPU microseconds per ``step`` (its idle rate taken out)."""
    for _ in range(min(count, 200)):
        await step()
    started, before = time.perf_counter(), cpu_seconds(sync)
    for _ in range(count):
        await step()
    spent = cpu_seconds(sync) - before - idle * (time.perf_counter() - started)
    return spent / count * 1e6


async def drive(url: str, processes: int, coroutines: int, duration: float) -> dict[str, float]:
    """Client processes of ``drive`` mode, each coroutine on a number of its own; the set-ups
    per second they reach and the server's share of a core meanwhile."""
    sync = redis.Redis.from_url(url)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE),
            "drive",
            "--url",
            url,
            "--prefix",
            f"bench-cap{index}:",
            "--coroutines",
            str(coroutines),
            "--duration",
            str(duration),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for index in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None
        if (await proc.stdout.readline()).strip() != b"ready":
            raise RuntimeError("a capacity driver did not start")
    start_at = time.monotonic() + 0.3
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{start_at!r}\n".encode())
        await proc.stdin.drain()
    # The server's CPU over the middle of the run (all drivers going).
    await asyncio.sleep(max(0.0, start_at - time.monotonic()) + duration * 0.1)
    calls_before = stats(sync, "commandstats")
    started, before = time.perf_counter(), cpu_seconds(sync)
    await asyncio.sleep(duration * 0.8)
    spent = cpu_seconds(sync) - before
    window = time.perf_counter() - started
    calls, _ = script_delta(calls_before, stats(sync, "commandstats"))
    setups = 0.0
    for proc in procs:
        out, _ = await proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"a capacity driver exited with {proc.returncode}")
        setups += json.loads(out.decode().strip().splitlines()[-1])["per_s"]
    sync.close()
    return {
        "client_setups_per_s": setups,
        "server_setups_per_s": calls / 2 / window,
        "server_cpu_share": spent / window,
    }


async def bench_capacity(url: str, rounds: int, duration: float) -> Section:
    """CPU per set-up (sequential calls, the pessimistic case) and the capacity it gives; then
    the check under load from several client processes."""
    sync = redis.Redis.from_url(url)
    client = aioredis.Redis.from_url(url)
    trivial = client.register_script("return 1")
    await trivial()
    count = max(rounds, 1000)
    idle = await idle_cpu_rate(sync, 0.5)
    rows: list[Row] = []
    async with (
        Throttle.from_url(url, key_prefix="bench-cpu:") as plain,
        Throttle.from_url(url, key_prefix="bench-cpup:", config=POLICED) as policed,
        Throttle.from_url(
            url, key_prefix="bench-cpus:", config=POLICED, session="bench-cap", keepalive=False
        ) as in_session,
    ):

        async def floor() -> None:
            await client.evalsha(trivial.sha, 0)
            await client.evalsha(trivial.sha, 0)

        async def pair() -> None:
            await plain.release(await plain.acquire(NUMBER, limit=CAP, timeout=0))

        async def policed_pair() -> None:
            await policed.release(await policed.acquire(NUMBER, timeout=0, callee=CALLEE))

        async def session_pair() -> None:
            lease = await in_session.acquire(NUMBER, timeout=0, callee=CALLEE)
            await in_session.release(lease)

        for label, step in (
            ("floor: 2x EVALSHA of `return 1` (redis-py)", floor),
            ("set-up: acquire + release (plain)", pair),
            ("set-up: acquire + release (every limit)", policed_pair),
            ("set-up: acquire + release (every limit, session lease)", session_pair),
        ):
            cpu = await cpu_per_step(sync, step, count, idle)
            rows.append(
                Row(
                    label,
                    None,
                    None,
                    None,
                    floor=label.startswith("floor"),
                    extra={"server_cpu_us": cpu, "setups_per_s_at_100pct": 1e6 / cpu},
                )
            )
    await client.aclose()
    sync.close()
    floor_cpu = rows[0].extra["server_cpu_us"]
    for row in rows:
        row.vs_floor = row.extra["server_cpu_us"] / floor_cpu
    processes, coroutines = 3, 8
    log(f"capacity check: {processes} client processes x {coroutines} coroutines, {duration:g} s")
    checked = await drive(url, processes, coroutines, duration)
    share, achieved = checked["server_cpu_share"], checked["server_setups_per_s"]
    rows.append(
        Row(
            f"check: {processes} processes x {coroutines} coroutines, plain set-ups",
            None,
            None,
            achieved,
            extra={
                "server_cpu_us": share / achieved * 1e6,
                "setups_per_s_at_100pct": achieved / share,
                "achieved_setups_per_s": achieved,
                "server_cpu_share": share,
            },
        )
    )
    return Section(
        "capacity",
        "Capacity of one master: the server's CPU per call set-up (acquire + release)",
        "count",
        rows,
        [
            (
                "server cpu us: the delta of `used_cpu_user + used_cpu_sys` (`INFO cpu`) per "
                f"set-up over {count:,} set-ups called one after another, less the server's idle "
                "rate measured just before; it includes the server's network work (reading and "
                "writing the sockets), which is most of the floor's. Redis runs commands on one "
                "thread, so one master carries at most 1 / (CPU per set-up) set-ups per second "
                "(setups per s at 100pct), before any headroom."
            ),
            (
                "The check: client processes each run coroutines on numbers of their own "
                "(acquire + release, no contention); over the middle 80% of the run, the set-ups "
                "the server ran (FCALLs / 2, `INFO commandstats`) per second are divided by the "
                "share of a core the server used (`INFO cpu`). This machine "
                "has 2 cores, and the Python clients need more CPU per set-up than the server, "
                "so they bound the check: the server is far from saturated, and the figure "
                "extrapolates the server's own cost to a full core. Pipelined calls share system "
                "calls, so the server's cost per set-up under load is below the sequential one."
            ),
        ],
    )


async def bench_renewals(url: str, held: int) -> Section:
    """The server's CPU per lease renewed by a per-process heartbeat (20 leases per number, and
    one per number), and per session keep-alive."""
    sync = redis.Redis.from_url(url)
    rows: list[Row] = []
    idle = await idle_cpu_rate(sync, 0.5)
    for per_number in (CAP, 1):
        on = [f"+86571888{i:05d}" for i in range(held // per_number)]
        async with Throttle.from_url(
            url, key_prefix=f"bench-rn{per_number}:", default_limit=CAP, lease_ttl=QUIET_TTL
        ) as process:
            for i in range(held):
                await process.acquire(on[i % len(on)], timeout=0)
            beats = 5
            await process._renew_all()
            before, started = stats(sync, "commandstats"), time.perf_counter()
            cpu_before = cpu_seconds(sync)
            for _ in range(beats):
                await process._renew_all()
            cpu = cpu_seconds(sync) - cpu_before - idle * (time.perf_counter() - started)
            calls, usec = script_delta(before, stats(sync, "commandstats"))
            per_lease_cpu = cpu / (beats * held) * 1e6
            rows.append(
                Row(
                    f"heartbeat, per-process leases, {per_number} per number ({held:,} held)",
                    None,
                    None,
                    None,
                    extra={
                        "fcalls_per_lease": calls / (beats * held),
                        "server_usec_per_lease": usec / (beats * held),
                        "server_cpu_us_per_lease": per_lease_cpu,
                        "cpu_ns_per_held_call_per_s": per_lease_cpu / RENEW_INTERVAL * 1e3,
                    },
                )
            )
    async with Throttle.from_url(
        url, key_prefix="bench-rns:", session="bench-renew", keepalive=False, default_limit=CAP
    ) as session:
        await session.acquire(NUMBER, timeout=0)
        count = 500
        await session.keepalive()
        before, started = stats(sync, "commandstats"), time.perf_counter()
        cpu_before = cpu_seconds(sync)
        for _ in range(count):
            await session.keepalive()
        cpu = cpu_seconds(sync) - cpu_before - idle * (time.perf_counter() - started)
        calls, usec = script_delta(before, stats(sync, "commandstats"))
        per_call_cpu = cpu / count * 1e6
        per_session_calls = SCALE_CALLS / SCALE_SESSIONS
        rows.append(
            Row(
                "session keep-alive (one per session, whatever it holds)",
                None,
                None,
                None,
                extra={
                    "fcalls_per_lease": calls / count,
                    "server_usec_per_lease": usec / count,
                    "server_cpu_us_per_lease": per_call_cpu,
                    "cpu_ns_per_held_call_per_s": per_call_cpu
                    / RENEW_INTERVAL
                    / per_session_calls
                    * 1e3,
                },
            )
        )
        # Memory of session leases (section 6 measures per-process ones).
        taken = [await session.acquire(NUMBER, timeout=0) for _ in range(CAP - 1)]
        held_bytes = {CAP: prefix_memory(sync, "bench-rns:")[0]}
        for lease in taken:
            await session.release(lease)
        held_bytes[1] = prefix_memory(sync, "bench-rns:")[0]
        rows += [
            Row(f"memory: {size} session lease(s) on one number", None, None, None, extra=extra)
            for size in (1, CAP)
            for extra in [{"bytes": held_bytes[size]}]
        ]
    sync.close()
    return Section(
        "renewals",
        "Renewals: the server's CPU per held call per second",
        "count",
        rows,
        [
            (
                "Per-process leases: one heartbeat every `renew_interval` (default `lease_ttl / 3` "
                f"= {RENEW_INTERVAL:g} s) renews each lease the process holds, one FCALL per number "
                "it holds leases on; *per lease* divides a heartbeat's FCALLs, its time inside "
                "Redis (`INFO commandstats`) and the server's CPU (`INFO cpu`, network included) "
                "by the leases renewed. With many processes a process holds about one lease per "
                "number, the costlier row. *cpu ns per held call per s* is the CPU per lease "
                "over the renew interval, in nanoseconds."
            ),
            (
                "Session leases: one keep-alive per session per `renew_interval`, whatever the "
                "session holds (its row is per keep-alive); per held call per second it is "
                f"shown for sessions of {SCALE_CALLS // SCALE_SESSIONS:,} calls "
                f"({SCALE_CALLS:,} calls in {SCALE_SESSIONS} sessions)."
            ),
        ],
    )


def scale_section(sections: list[Section]) -> Section | None:
    """Masters for SCALE_CALLS concurrent calls and SCALE_SETUPS set-ups/s, from this run."""
    by_key = {section.key: section for section in sections}
    if not {"capacity", "renewals", "memory_usage"} <= by_key.keys():
        return None

    def row(key: str, start: str) -> dict[str, Any]:
        return next(r for r in by_key[key].rows if r.label.startswith(start)).extra

    setup_plain = row("capacity", "set-up: acquire + release (plain)")["server_cpu_us"]
    setup_all = row("capacity", "set-up: acquire + release (every limit)")["server_cpu_us"]
    setup_session = row("capacity", "set-up: acquire + release (every limit, session")[
        "server_cpu_us"
    ]
    renew_one = row("renewals", "heartbeat, per-process leases, 1 per")["server_cpu_us_per_lease"]
    keepalive = row("renewals", "session keep-alive")["server_cpu_us_per_lease"]
    memory = {r.label: r.extra["bytes"] for r in by_key["memory_usage"].rows}
    session_one = row("renewals", "memory: 1 session")["bytes"]
    session_full = row("renewals", f"memory: {CAP} session")["bytes"]
    numbers = min(SCALE_NUMBERS, SCALE_CALLS)

    def footprint(one: int, full: int) -> tuple[float, float, float]:
        per_lease = (full - one) / (CAP - 1)
        per_number = one - per_lease
        return per_number, per_lease, numbers * per_number + SCALE_CALLS * per_lease

    def plan(label: str, load: float, note: str) -> Row:
        masters = max(1, math.ceil(load / HEADROOM))
        return Row(
            label, None, None, None, extra={"cores": load, "masters_at_50pct": masters, "how": note}
        )

    renewals = SCALE_CALLS / RENEW_INTERVAL * renew_one / 1e6
    keepalives = SCALE_SESSIONS / RENEW_INTERVAL * keepalive / 1e6
    per_process = SCALE_SETUPS * setup_all / 1e6
    in_sessions = SCALE_SETUPS * setup_session / 1e6
    rows = [
        plan(
            f"set-ups: {SCALE_SETUPS:,}/s, every limit, per-process leases",
            per_process,
            f"{SCALE_SETUPS:,} x {setup_all:.0f} µs (plain: {setup_plain:.0f} µs)",
        ),
        plan(
            f"set-ups: {SCALE_SETUPS:,}/s, every limit, session leases",
            in_sessions,
            f"{SCALE_SETUPS:,} x {setup_session:.0f} µs",
        ),
        plan(
            f"renewals, per-process leases: {SCALE_CALLS:,} held",
            renewals,
            f"{SCALE_CALLS:,} / {RENEW_INTERVAL:g} s x {renew_one:.1f} µs "
            "(one lease per number per process)",
        ),
        plan(
            f"renewals, session leases: {SCALE_SESSIONS} sessions",
            keepalives,
            f"{SCALE_SESSIONS} / {RENEW_INTERVAL:g} s x {keepalive:.1f} µs",
        ),
        plan(
            "total, per-process leases",
            per_process + renewals,
            "set-ups + per-process renewals",
        ),
        plan("total, session leases", in_sessions + keepalives, "set-ups + keep-alives"),
    ]
    for kind, one, full in (
        ("per-process", memory["busy: 1 lease"], memory[f"busy: {CAP} leases (full)"]),
        ("session", session_one, session_full),
    ):
        per_number, per_lease, total = footprint(one, full)
        rows.append(
            Row(
                f"memory: {SCALE_CALLS:,} {kind} leases over {numbers:,} numbers",
                None,
                None,
                None,
                extra={
                    "megabytes": total / 1e6,
                    "how": (
                        f"{numbers:,} x {per_number:,.0f} B per busy number + {SCALE_CALLS:,} x "
                        f"{per_lease:,.0f} B per lease"
                    ),
                },
            )
        )
    idle = memory["idle again, after use"]
    return Section(
        "scale",
        f"Scale on paper: {SCALE_CALLS:,} concurrent calls, {SCALE_SETUPS:,} set-ups/s",
        "count",
        rows,
        [
            (
                "cores: the share of one master's command thread, from this run's capacity "
                "section (every limit, sequential calls: the dearer figures) and renewals "
                "section (a heartbeat's per-process leases at one per number, or one keep-alive "
                f"per session, {SCALE_SESSIONS} sessions); masters at 50pct keeps each master's "
                "thread under 50% busy. Memory: from section 6 (per-process leases) and the "
                "renewals section (session leases), a number's keys with 1 and with 20 leases; "
                f"an idle number after use keeps {idle:,} B. Waiting callers' policy reads (one "
                "per `renew_interval` per waiting throttle) are left out."
            ),
        ],
    )


async def run(url: str, rounds: int, duration: float, quick: bool) -> list[Section]:
    log(f"server work per decision, {rounds // 4 if quick else rounds // 10} windows")
    sections = [await bench_server_work(url, max(rounds // (4 if quick else 10), 25))]
    log("capacity: server CPU per set-up")
    sections.append(await bench_capacity(url, rounds, duration))
    held = 1000 if quick else 4000
    log(f"renewals: heartbeats of {held:,} per-process leases, session keep-alives")
    sections.append(await bench_renewals(url, held))
    return sections


# The driver process of the check --------------------------------------------------------------


async def drive_one(url: str, prefix: str, coroutines: int, duration: float) -> None:
    async with Throttle.from_url(url, key_prefix=prefix) as throttle:
        numbers = [f"+86571887{i:05d}" for i in range(coroutines)]
        for number in numbers:  # warm up
            await throttle.release(await throttle.acquire(number, limit=CAP, timeout=0))
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        start_at = float(line)
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        deadline = start_at + duration
        done = 0

        async def loop(number: str) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await throttle.release(await throttle.acquire(number, limit=CAP, timeout=0))
                done += 1

        await asyncio.gather(*(loop(number) for number in numbers))
        elapsed = time.monotonic() - start_at
    print(json.dumps({"per_s": done / elapsed}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "drive"])
    parser.add_argument("--url", help="benchmark this Redis server instead of starting one")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--prefix", default="bench-cap:")
    parser.add_argument("--coroutines", type=int, default=8)
    parser.add_argument("--duration", type=float, default=4.0)
    args = parser.parse_args()
    if args.mode == "drive":
        asyncio.run(drive_one(args.url, args.prefix, args.coroutines, args.duration))
        return
    from suite import section_markdown

    rounds = 1000 if args.quick else 3000
    if args.url:
        sections = asyncio.run(run(args.url, rounds, args.duration, args.quick))
    else:
        with redis_server() as url:
            sections = asyncio.run(run(url, rounds, args.duration, args.quick))
    for section in sections:
        print("\n".join(section_markdown(section)) + "\n")


if __name__ == "__main__":
    main()
