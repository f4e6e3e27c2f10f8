"""Soak run: many dialer processes for minutes, with kills, and restarts or failovers.

    python benchmarks/soak.py --processes 4 --minutes 2 --kill-every 10 --restart-every 30
    python benchmarks/soak.py --cluster --minutes 2 --failover-every 20

Starts its own Redis-protocol server (with AOF persistence, so that a restart keeps the
leases; ``--no-persistence``: a restart loses them all), then ``--processes``
dialer processes, each running ``--coroutines`` callers that take a slot on a random number of
``--numbers`` (cap ``--cap`` each) and hold it for a random call length (exponential, mean
``--call-ms``). Every ``--kill-every`` seconds one dialer is SIGKILLed and a new one started;
every ``--restart-every`` seconds the server is restarted. With ``--cluster`` the server is a
Redis Cluster of 3 masters with a replica each (nothing on disk) and, instead of restarts,
every ``--failover-every`` seconds one master is SIGKILLed: its replica takes over (with what
it had received: the newest writes may be lost, and leases whose holders could not reach it
meanwhile have lapsed), and the killed node is started again and rejoins as its replica.
Each dialer writes a line per call start (with when its ask for the slot began) and end
(flushed at once, so a killed dialer's open calls are known: they end at its death).

At the end it reports, per number, the most calls that were up at once against the cap (by a
sweep over every call's interval, the same clock for all processes), the call-seconds spent
over the cap, the calls placed, the errors seen by the dialers (by type), the slots still held
once every lease had time to expire (leaked slots: must be 0), and how long asks waited for
their slot (p50, p99) when they began within two lease TTLs after a loss (a restart, a
failover) on their number, while it was down, and otherwise (the baseline): the fence that
holds new grants after a loss costs that wait. Exit status 1 if any number went over its cap
or a slot leaked, whatever the persistence: the fence and the holders' restores of their
leases must keep the cap through data loss. ``--no-restore`` shows what happens when holders
do not count their lost leases again (numbers may go over: then only a leak fails the run);
``--lift-fence`` ends the fence again and again (every 20 ms, so at once after each restart
or failover), to show what happens without it. ``--logs DIR`` keeps the dialers' logs (they
are kept anyway when the run fails). Progress goes to stderr, the report (JSON) to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callthrottle import Throttle
from callthrottle.backends import RedisBackend

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ASK_TIMEOUT = 5.0  # how long a caller waits for a slot
LIFT_EVERY = 0.02  # --lift-fence: how often the fence is ended


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
            asked: float | None = time.monotonic()  # None once the slot is granted
            try:
                async with throttle.slot(number, limit=options.cap, timeout=ASK_TIMEOUT) as lease:
                    started = time.monotonic()
                    out.write(json.dumps(["start", lease.token, number, started, asked]) + "\n")
                    asked = None
                    await asyncio.sleep(rng.expovariate(1000 / options.call_ms))
                    ended = time.monotonic()
                    # Why the throttle lost the lease meanwhile, if it did (None: it did not).
                    out.write(
                        json.dumps(["end", lease.token, number, ended, lease.lost_reason]) + "\n"
                    )
            except Exception as exc:  # noqa: BLE001 - counted and reported: that is the point
                errors[type(exc).__name__] += 1
                # The ask's start when the slot was not granted (else the error came after).
                out.write(json.dumps(["error", type(exc).__name__, number, asked]) + "\n")
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


@dataclass(frozen=True)
class Loss:
    """A data-loss event: the server went down (stopped, or a master killed) at ``down`` and was
    back (restarted, or replaced by its replica) at ``back``; it held the keys of ``numbers``."""

    down: float
    back: float
    numbers: frozenset[str]


@dataclass(frozen=True)
class Ask:
    """A caller's ask for a slot: when it began, and how long it waited (None: not granted)."""

    number: str
    at: float
    waited: float | None


def sweep(
    intervals: list[tuple[float, float]], cap: int
) -> tuple[int, float, list[tuple[float, float, int]]]:
    """The most calls up at once, the call-seconds spent over ``cap`` (each call beyond the
    cap counts for as long as it is beyond it), and the spans over the cap (from, to, the most
    calls up in it)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    current = peak = 0
    over = 0.0
    spans: list[tuple[float, float, int]] = []
    last = events[0][0] if events else 0.0
    for at, delta in events:
        over += max(current - cap, 0) * (at - last)
        last = at
        current += delta
        peak = max(peak, current)
        if current > cap and (not spans or spans[-1][1] < at):
            spans.append((at, math.inf, current))
        elif current > cap:
            spans[-1] = (spans[-1][0], math.inf, max(spans[-1][2], current))
        elif spans and spans[-1][1] == math.inf:
            spans[-1] = (spans[-1][0], at, spans[-1][2])
    return peak, over, spans


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (None of nothing)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(math.ceil(share * len(ordered)) - 1, 0)], 3)


def waits(asks: list[Ask], losses: list[Loss], ttl: float) -> dict[str, dict[str, object]]:
    """How long asks waited for their slot, p50 and p99 (s), in three groups: asks on a number
    whose keys a loss concerned that began within ``2 * ttl`` after the server was back
    (``after_loss``: the fence's cost), asks on such a number pending while it was down
    (``during_outage``), and the rest (``baseline``). ``not_granted``: asks that ended without a
    slot (timed out, or the server unreachable)."""
    groups: dict[str, list[Ask]] = {"after_loss": [], "during_outage": [], "baseline": []}
    for ask in asks:
        pending_until = ask.at + (ask.waited if ask.waited is not None else ASK_TIMEOUT)
        group = "baseline"
        for loss in losses:
            if ask.number not in loss.numbers:
                continue
            if ask.at < loss.back and pending_until > loss.down:
                group = "during_outage"
                break
            if loss.back <= ask.at < loss.back + 2 * ttl:
                group = "after_loss"
                break
        groups[group].append(ask)
    result: dict[str, dict[str, object]] = {}
    for name, members in groups.items():
        waited = [ask.waited for ask in members if ask.waited is not None]
        result[name] = {
            "asks": len(members),
            "not_granted": len(members) - len(waited),
            "wait_p50_s": percentile(waited, 0.5),
            "wait_p99_s": percentile(waited, 0.99),
        }
    return result


def analyse(
    logs: list[Path], deaths: dict[str, float], end: float, cap: int
) -> tuple[dict[str, object], list[Ask], list[tuple[str, float, float, int]]]:
    starts: dict[str, tuple[str, float, str]] = {}
    intervals: dict[str, list[tuple[float, float]]] = {}
    errors: Counter[str] = Counter()
    lost: Counter[str] = Counter()
    asks: list[Ask] = []
    calls = 0
    for path in logs:
        died_at = deaths.get(path.name, end)
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record[0] == "start":
                starts[record[1]] = (record[2], record[3], path.name)
                asks.append(Ask(record[2], record[4], record[3] - record[4]))
            elif record[0] == "end" and record[1] in starts:
                number, started, _ = starts.pop(record[1])
                intervals.setdefault(number, []).append((started, record[3]))
                calls += 1
                if record[4] is not None:
                    lost[record[4]] += 1
            elif record[0] == "error":
                errors[record[1]] += 1
                if record[3] is not None:
                    asks.append(Ask(record[2], record[3], None))
        for token, (number, started, where) in list(starts.items()):
            if where == path.name:  # a call cut short by the dialer's death
                intervals.setdefault(number, []).append((started, died_at))
                del starts[token]
    swept = {number: sweep(spans, cap) for number, spans in sorted(intervals.items())}
    result: dict[str, object] = {
        "calls": calls,
        "peaks": {number: peak for number, (peak, _, _) in swept.items()},
        "over_cap_call_seconds": round(sum(over for _, over, _ in swept.values()), 2),
        "errors": dict(errors),
        "leases_lost": dict(lost),  # calls whose lease the throttle lost, by reason
    }
    over_cap = [(number, *span) for number, (_, _, spans) in swept.items() for span in spans]
    return result, asks, sorted(over_cap, key=lambda span: span[1])


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


class Lifter(threading.Thread):
    """Ends the fence (``RedisBackend.lift_fence``, every master of a Cluster) every
    ``LIFT_EVERY`` seconds until stopped: a restarted server or a promoted replica has its
    fence lifted as soon as it answers, before the dialers (which find it by themselves) are
    back. A throttle that fails (the server down, a master gone) is replaced by a new one,
    which reads the Cluster's slot map again."""

    def __init__(self, url: str) -> None:
        super().__init__(name="lifter", daemon=True)
        self.url = url
        self.stopping = threading.Event()
        self.lifts = 0

    def run(self) -> None:
        asyncio.run(self._lift())

    async def _lift(self) -> None:
        while not self.stopping.is_set():
            try:
                async with Throttle.from_url(self.url, socket_timeout=0.5) as throttle:
                    backend = throttle.backend
                    assert isinstance(backend, RedisBackend)
                    while not self.stopping.is_set():
                        await backend.lift_fence()
                        self.lifts += 1
                        await asyncio.sleep(LIFT_EVERY)
            except Exception:  # noqa: BLE001 - the server is down or changed: a new throttle
                await asyncio.sleep(LIFT_EVERY)


@contextlib.contextmanager
def single_server(options: argparse.Namespace) -> Iterator[tuple[str, Callable[[], Loss]]]:
    """A server of our own, and how to restart it (stopped, then started again)."""
    from tests._servers import own_server

    with own_server(persistent=not options.no_persistence) as (url, server):
        log(f"server {url} (persistence {'off' if options.no_persistence else 'on'})")

        def restart() -> Loss:
            down = time.monotonic()
            server.stop()
            server.start()
            back = time.monotonic()
            log(f"restarted: down for {back - down:.2f} s")
            return Loss(down, back, frozenset(numbers_for(options.numbers)))

        yield url, restart


@contextlib.contextmanager
def on_cluster(options: argparse.Namespace) -> Iterator[tuple[str, Callable[[], Loss]]]:
    """A Cluster of 3 masters with a replica each, and how to fail one master over (killed,
    its replica takes over, the killed node rejoins as its replica)."""
    from _soak_cluster import Failovers
    from tests._servers import cluster

    numbers = numbers_for(options.numbers)
    with cluster(3, 1) as (url, servers):
        failovers = Failovers(servers)
        log(f"cluster {url}, numbers by master: {failovers.masters_of(numbers)}")

        def failover() -> Loss:
            done = failovers.fail_master(numbers)
            log(
                f"failover: {sorted(done.numbers)} served again after {done.back - done.down:.2f}"
                f" s, every number refused (CLUSTERDOWN) for {done.refused:.2f} s of it"
            )
            failovers.restart_killed()
            return Loss(done.down, done.back, done.numbers)

        yield url, failover


def conduct(options: argparse.Namespace) -> int:
    if options.logs:
        workdir = Path(options.logs)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="callthrottle-soak-"))
    target = on_cluster if options.cluster else single_server
    every = options.failover_every if options.cluster else options.restart_every
    with target(options) as (url, disrupt):
        dialers: dict[str, subprocess.Popen[bytes]] = {}
        deaths: dict[str, float] = {}
        losses: list[Loss] = []
        serial = 0

        def spawn() -> None:
            nonlocal serial
            serial += 1
            name = f"dialer{serial}.jsonl"
            dialers[name] = start_dialer(options, url, workdir / name)

        lifter = Lifter(url) if options.lift_fence else None
        if lifter is not None:
            lifter.start()
        for _ in range(options.processes):
            spawn()
        started = time.monotonic()
        until = started + options.minutes * 60
        next_kill = started + options.kill_every
        next_loss = started + every
        kills = 0
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
            if every and now >= next_loss:
                losses.append(disrupt())
                next_loss = time.monotonic() + every
            print(
                f"\r{now - started:6.1f}/{options.minutes * 60:.0f} s, {kills} kills, "
                f"{len(losses)} {'failovers' if options.cluster else 'restarts'}",
                end="",
                file=sys.stderr,
                flush=True,
            )
        print(file=sys.stderr)
        end = time.monotonic()
        if lifter is not None:
            lifter.stopping.set()
            lifter.join()
            log(f"the fence was lifted {lifter.lifts} times")
        for name, process in dialers.items():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                deaths.setdefault(name, end)
        log(f"waiting {options.ttl + 1:.0f} s for the leases of killed dialers to expire")
        time.sleep(options.ttl + 1)
        result, asks, over_cap = analyse(sorted(workdir.glob("*.jsonl")), deaths, end, options.cap)
        result.update(
            kills=kills,
            restarts=len(losses),  # a cluster's killed master is started again too
            failovers=len(losses) if options.cluster else 0,
            outages_s=[round(loss.back - loss.down, 2) for loss in losses],
            # When (s into the run) each loss began and ended, and each span over a cap.
            losses=[
                [round(loss.down - started, 2), round(loss.back - started, 2), sorted(loss.numbers)]
                for loss in losses
            ],
            over_cap=[
                [number, round(first - started, 2), round(last - started, 2), most]
                for number, first, last, most in over_cap[:50]
            ],
            leaked_slots=asyncio.run(leaked(url, options)),
            cap=options.cap,
            processes=options.processes,
            coroutines=options.coroutines,
            minutes=options.minutes,
            mode="cluster" if options.cluster else "server",
            persistence=not (options.no_persistence or options.cluster),
            restore_leases=not options.no_restore,
            fence_lifted=options.lift_fence,
            lease_ttl=options.ttl,
            lease_ttl_third=round(options.ttl / 3, 3),
            waits=waits(asks, losses, options.ttl),
        )
    print(json.dumps(result, indent=2))
    peaks = cast("dict[str, int]", result["peaks"])
    over = {number: peak for number, peak in peaks.items() if peak > options.cap}
    if over:
        log(f"OVER THE CAP: {over}, {result['over_cap_call_seconds']} call-seconds over it")
    # Without restores (--no-restore) going over is what that mode shows; else the fence (and
    # the restores) must keep every number at its cap, whatever the persistence.
    broke_cap = bool(over) or cast("float", result["over_cap_call_seconds"]) > 0
    failed = (broke_cap and not options.no_restore) or bool(result["leaked_slots"])
    if failed or options.logs:
        log(f"the dialers' logs are kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


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
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--failover-every", type=float, default=20.0)
    parser.add_argument("--lift-fence", action="store_true")
    parser.add_argument("--logs", help="keep the dialers' logs in this folder")
    options = parser.parse_args()
    # The throttles' warnings (failed withdrawals during restarts, the lifter's throttle losing
    # its server...) would drown the progress line; the dialers' errors are counted instead.
    logging.basicConfig(level=logging.ERROR)
    if options.mode == "dialer":
        asyncio.run(dial(options))
        return
    sys.exit(conduct(options))


if __name__ == "__main__":
    main()
