"""Soak run (not part of the tests): many dialer processes for minutes, with kills and restarts.

    python benchmarks/soak.py --processes 4 --minutes 2 --kill-every 10 --restart-every 30

Starts its own Redis-protocol server (with AOF persistence, so that a restart keeps the
leases; ``--no-persistence`` shows what a restart without it does, and ``--no-restore`` what it
does when holders do not count their leases again), then ``--processes``
dialer processes, each running ``--coroutines`` callers that take a slot on a random number of
``--numbers`` (cap ``--cap`` each) and hold it for a random call length (exponential, mean
``--call-ms``). Every ``--kill-every`` seconds one dialer is SIGKILLed and a new one started;
every ``--restart-every`` seconds the server is restarted. Each dialer writes a line per call
start and end (flushed at once, so a killed dialer's open calls are known: they end at its
death).

At the end it reports, per number, the most calls that were up at once against the cap (by a
sweep over every call's interval, the same clock for all processes), the calls placed, the
errors seen by the dialers (by type), and the slots still held once every lease had time to
expire (leaked slots: must be 0). Exit status 1 if any number went over its cap (with
persistence) or a slot leaked. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callthrottle import Throttle


def numbers_for(count: int) -> list[str]:
    return [f"+86571888{i:05d}" for i in range(count)]


# -- a dialer -----------------------------------------------------------------------------------


async def dial(options: argparse.Namespace) -> None:
    numbers = numbers_for(options.numbers)
    # Line-buffered, opened before the loop runs anything: each call is on disk when it starts.
    out = open(options.out, "a", buffering=1, encoding="utf-8")  # noqa: SIM115, ASYNC230
    errors: Counter[str] = Counter()

    async def caller(index: int) -> None:
        rng = random.Random(f"{os.getpid()}:{index}")
        while True:
            number = rng.choice(numbers)
            try:
                async with throttle.slot(number, limit=options.cap, timeout=5) as lease:
                    out.write(json.dumps(["start", lease.token, number, time.monotonic()]) + "\n")
                    await asyncio.sleep(rng.expovariate(1000 / options.call_ms))
                    out.write(json.dumps(["end", lease.token, number, time.monotonic()]) + "\n")
            except Exception as exc:  # noqa: BLE001 - counted and reported: that is the point
                errors[type(exc).__name__] += 1
                out.write(json.dumps(["error", type(exc).__name__]) + "\n")
                await asyncio.sleep(0.05)

    async with Throttle.from_url(
        options.url,
        lease_ttl=options.ttl,
        socket_timeout=2,
        restore_leases=not options.no_restore,
    ) as throttle:
        tasks = [asyncio.create_task(caller(i)) for i in range(options.coroutines)]
        await asyncio.sleep(options.seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    out.write(json.dumps(["exit", os.getpid(), time.monotonic()]) + "\n")


# -- the conductor ------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sweep(intervals: list[tuple[float, float]], cap: int) -> tuple[int, float]:
    """The most calls up at once, and the call-seconds spent over ``cap`` (each call beyond
    the cap counts for as long as it is beyond it)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    current = peak = 0
    over = 0.0
    last = events[0][0] if events else 0.0
    for at, delta in events:
        over += max(current - cap, 0) * (at - last)
        last = at
        current += delta
        peak = max(peak, current)
    return peak, over


def analyse(logs: list[Path], deaths: dict[str, float], end: float, cap: int) -> dict[str, object]:
    starts: dict[str, tuple[str, float, str]] = {}
    intervals: dict[str, list[tuple[float, float]]] = {}
    errors: Counter[str] = Counter()
    calls = 0
    for path in logs:
        died_at = deaths.get(path.name, end)
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record[0] == "start":
                starts[record[1]] = (record[2], record[3], path.name)
            elif record[0] == "end" and record[1] in starts:
                number, started, _ = starts.pop(record[1])
                intervals.setdefault(number, []).append((started, record[3]))
                calls += 1
            elif record[0] == "error":
                errors[record[1]] += 1
        for token, (number, started, where) in list(starts.items()):
            if where == path.name:  # a call cut short by the dialer's death
                intervals.setdefault(number, []).append((started, died_at))
                del starts[token]
    swept = {number: sweep(spans, cap) for number, spans in sorted(intervals.items())}
    return {
        "calls": calls,
        "peaks": {number: peak for number, (peak, _) in swept.items()},
        "over_cap_call_seconds": round(sum(over for _, over in swept.values()), 2),
        "errors": dict(errors),
    }


def start_dialer(options: argparse.Namespace, url: str, out: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, __file__, "dialer", "--url", url, "--out", str(out),
        "--numbers", str(options.numbers), "--cap", str(options.cap),
        "--coroutines", str(options.coroutines), "--call-ms", str(options.call_ms),
        "--ttl", str(options.ttl), "--seconds", str(options.minutes * 60 + 5),
    ]  # fmt: skip
    if options.no_restore:
        command.append("--no-restore")
    return subprocess.Popen(command, cwd=ROOT)


async def leaked(url: str, options: argparse.Namespace) -> int:
    async with Throttle.from_url(url) as throttle:
        return sum(
            [
                (await throttle.usage(n, limit=options.cap)).in_use
                for n in numbers_for(options.numbers)
            ]
        )


def conduct(options: argparse.Namespace) -> int:
    from tests._servers import own_server

    workdir = Path(tempfile.mkdtemp(prefix="callthrottle-soak-"))
    with own_server(persistent=not options.no_persistence) as (url, server):
        log(f"server {url} (persistence {'off' if options.no_persistence else 'on'})")
        dialers: dict[str, subprocess.Popen[bytes]] = {}
        deaths: dict[str, float] = {}
        serial = 0

        def spawn() -> None:
            nonlocal serial
            serial += 1
            name = f"dialer{serial}.jsonl"
            dialers[name] = start_dialer(options, url, workdir / name)

        for _ in range(options.processes):
            spawn()
        started = time.monotonic()
        until = started + options.minutes * 60
        next_kill = started + options.kill_every
        next_restart = started + options.restart_every
        kills = restarts = 0
        while (now := time.monotonic()) < until:
            time.sleep(0.2)
            if options.kill_every and now >= next_kill:
                name = random.choice([n for n, p in dialers.items() if p.poll() is None])
                dialers[name].send_signal(signal.SIGKILL)
                dialers[name].wait()
                deaths[name] = time.monotonic()
                kills += 1
                spawn()
                next_kill += options.kill_every
            if options.restart_every and now >= next_restart:
                server.stop()
                server.start()
                restarts += 1
                next_restart += options.restart_every
            print(
                f"\r{now - started:6.1f}/{options.minutes * 60:.0f} s, {kills} kills, "
                f"{restarts} restarts",
                end="",
                file=sys.stderr,
                flush=True,
            )
        print(file=sys.stderr)
        end = time.monotonic()
        for name, process in dialers.items():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                deaths.setdefault(name, end)
        log(f"waiting {options.ttl + 1:.0f} s for the leases of killed dialers to expire")
        time.sleep(options.ttl + 1)
        result = analyse(sorted(workdir.glob("*.jsonl")), deaths, end, options.cap)
        result.update(
            kills=kills,
            restarts=restarts,
            leaked_slots=asyncio.run(leaked(url, options)),
            cap=options.cap,
            processes=options.processes,
            minutes=options.minutes,
            persistence=not options.no_persistence,
            restore_leases=not options.no_restore,
        )
    print(json.dumps(result, indent=2))
    peaks = cast("dict[str, int]", result["peaks"])
    over = {number: peak for number, peak in peaks.items() if peak > options.cap}
    if over:
        log(f"OVER THE CAP: {over}")
    return 1 if (over and not options.no_persistence) or result["leaked_slots"] else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    worker = sub.add_parser("dialer")
    worker.add_argument("--url", required=True)
    worker.add_argument("--out", required=True)
    worker.add_argument("--seconds", type=float, required=True)
    for target in (parser, worker):
        target.add_argument("--numbers", type=int, default=5)
        target.add_argument("--cap", type=int, default=3)
        target.add_argument("--coroutines", type=int, default=20)
        target.add_argument("--call-ms", type=float, default=200.0)
        target.add_argument("--ttl", type=float, default=3.0)
        target.add_argument("--no-restore", action="store_true")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--kill-every", type=float, default=10.0)
    parser.add_argument("--restart-every", type=float, default=30.0)
    parser.add_argument("--no-persistence", action="store_true")
    options = parser.parse_args()
    if options.mode == "dialer":
        # The dialers' warnings (failed withdrawals during restarts...) would drown the
        # progress line; their errors are counted in the report instead.
        logging.basicConfig(level=logging.ERROR)
        asyncio.run(dial(options))
        return
    sys.exit(conduct(options))


if __name__ == "__main__":
    main()
