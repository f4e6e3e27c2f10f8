"""The blocking facade against the async path, on the same server, in one run (not a test).

    python benchmarks/facade_compare.py                                   # this checkout's src
    python benchmarks/facade_compare.py --tree /tmp/base/src --tree src   # two trees, alternating
    python benchmarks/facade_compare.py --url redis://127.0.0.1:6379/0    # a server already running

For each tree a worker process (this file with ``--serve``, ``PYTHONPATH`` set to the tree,
checked) opens, on ``memory://`` and on one Redis server (started here, or ``--url``):

- ``async``: :class:`~callthrottle.Throttle` on asyncio, in the worker's main thread;
- ``sync``: :class:`~callthrottle.sync.SyncThrottle`, called from the same thread (its event loop
  runs in a thread of its own);
- ``sync slot``: ``with facade.slot(...)``, the facade's context manager;
- ``floor``: two hand-offs of a coroutine that does nothing to an event loop in another thread
  and back (``asyncio.run_coroutine_threadsafe(...).result()``): what any facade on a loop
  thread pays at least, beyond the async path.

Each measure is acquire + release of one uncontended slot (``limit=20, timeout=0``). The parent
hands blocks of 100 pairs of each measure to one worker after another, the order of the measures
and of the trees rotating from round to round, so that drift on the machine hits all alike. The
table gives each measure's p50 and p99 over all its pairs, and ``sync / async``: the median over
the rounds of the ratio of the two p50s of a round (their blocks ran one after the other).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from contextlib import AsyncExitStack, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _worker import stop_worker

ROOT = Path(__file__).resolve().parent.parent
if TYPE_CHECKING:
    from collections.abc import Callable

NUMBER = "+8657188880001"
CAP = 20
BACKENDS = ("memory", "redis")
MEASURES = ("async", "sync", "sync slot", "floor")


# The worker: one source tree --------------------------------------------------------------------


def imported_from(tree: Path) -> Path:
    import callthrottle

    imported = Path(callthrottle.__file__).resolve().parent
    if not imported.is_relative_to(tree.resolve()):
        raise SystemExit(f"callthrottle came from {imported}, not from {tree}")
    return imported


class LoopThread:
    """An event loop in a thread of its own (for the floor)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


async def _nothing() -> None:
    return None


async def serve(tree: Path, url: str, prefix: str) -> None:
    from callthrottle import Throttle
    from callthrottle.sync import SyncThrottle

    imported = imported_from(tree)
    floor_loop = LoopThread()
    async with AsyncExitStack() as stack:
        blocking = stack.enter_context(ExitStack())
        steps: dict[tuple[str, str], Callable[[], Any]] = {}
        for backend in BACKENDS:
            where = "memory://" if backend == "memory" else url
            options: dict[str, Any] = {} if backend == "memory" else {"key_prefix": prefix}
            throttle = await stack.enter_async_context(Throttle.from_url(where, **options))
            lift = getattr(throttle.backend, "lift_fence", None)
            if lift is not None:  # a young server fences grants for a lease TTL
                await lift()
            facade = blocking.enter_context(SyncThrottle.from_url(where, **options))

            async def async_pair(throttle: Throttle = throttle) -> None:
                await throttle.release(await throttle.acquire(NUMBER, limit=CAP, timeout=0))

            def sync_pair(facade: SyncThrottle = facade) -> None:
                facade.release(facade.acquire(NUMBER, limit=CAP, timeout=0))

            def sync_slot(facade: SyncThrottle = facade) -> None:
                with facade.slot(NUMBER, limit=CAP, timeout=0):
                    pass

            steps[backend, "async"] = async_pair
            steps[backend, "sync"] = sync_pair
            steps[backend, "sync slot"] = sync_slot

        def floor() -> None:
            asyncio.run_coroutine_threadsafe(_nothing(), floor_loop.loop).result()
            asyncio.run_coroutine_threadsafe(_nothing(), floor_loop.loop).result()

        for backend in BACKENDS:
            steps[backend, "floor"] = floor

        async def run(backend: str, measure: str, size: int) -> list[int]:
            step = steps[backend, measure]
            samples = []
            if measure == "async":
                for _ in range(size):
                    start = time.perf_counter_ns()
                    await step()
                    samples.append(time.perf_counter_ns() - start)
            else:
                for _ in range(size):
                    start = time.perf_counter_ns()
                    step()
                    samples.append(time.perf_counter_ns() - start)
            return samples

        for backend, measure in steps:  # warm up: connections open, functions loaded
            await run(backend, measure, 300)
        print(json.dumps({"ready": str(imported)}), flush=True)
        while order := await asyncio.to_thread(sys.stdin.readline):
            if not order.strip():
                break
            request = json.loads(order)
            answer = {
                measure: await run(request["backend"], measure, request["size"])
                for measure in request["measures"]
            }
            print(json.dumps(answer), flush=True)
    floor_loop.close()


# The parent -------------------------------------------------------------------------------------


@dataclass
class Worker:
    label: str
    tree: Path
    proc: subprocess.Popen[str] | None = None
    samples: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)  # backend -> per round

    def start(self, url: str, prefix: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(self.tree)}
        command = [sys.executable, __file__, "--serve", str(self.tree), "--url", url]
        self.proc = subprocess.Popen(
            [*command, "--prefix", prefix],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def answer(self) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.label} worker exited ({self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def block(self, backend: str, measures: list[str], size: int) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        order = {"backend": backend, "measures": measures, "size": size}
        self.proc.stdin.write(json.dumps(order) + "\n")
        self.proc.stdin.flush()
        answer = self.answer()
        for measure, values in answer.items():
            self.samples.setdefault((backend, measure), []).extend(values)
        ratio = p50(answer["sync"]) / p50(answer["async"])
        self.ratios.setdefault(backend, []).append(ratio)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_worker(self.proc)


def p50(samples_ns: list[int]) -> float:
    return sorted(samples_ns)[len(samples_ns) // 2] / 1000


def p99(samples_ns: list[int]) -> float:
    ordered = sorted(samples_ns)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000


def log(message: str, started: float) -> None:
    print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)


def run(workers: list[Worker], url: str, rounds: int, size: int) -> None:
    started = time.monotonic()
    try:
        for index, worker in enumerate(workers):
            worker.start(url, f"bench-facade-{index}:")
        for worker in workers:
            log(f"{worker.label}: callthrottle from {worker.answer()['ready']}", started)
        for done in range(rounds):
            turn = done % len(workers)
            measures = list(MEASURES[done % 2 :] + MEASURES[: done % 2])  # async first or last
            for backend in BACKENDS:
                for worker in workers[turn:] + workers[:turn]:
                    worker.block(backend, measures, size)
            if (done + 1) % 5 == 0 or done + 1 == rounds:
                log(f"round {done + 1}/{rounds}", started)
    finally:
        for worker in workers:
            worker.stop()


def table(workers: list[Worker], rounds: int, size: int) -> str:
    lines = [
        f"acquire+release, uncontended; {rounds} rounds of blocks of {size} pairs per measure",
        "",
        "| tree | backend | measure | p50 µs | p99 µs | p50 / async p50 |",
        "|---|---|---|---:|---:|---:|",
    ]
    for worker in workers:
        for backend in BACKENDS:
            base = p50(worker.samples[backend, "async"])
            for measure in MEASURES:
                values = worker.samples[backend, measure]
                lines.append(
                    f"| {worker.label} | {backend} | {measure} | {p50(values):.1f} "
                    f"| {p99(values):.1f} | {p50(values) / base:.2f}x |"
                )
    lines += ["", "sync / async, the median over the rounds of the ratio of a round's p50s:"]
    for worker in workers:
        for backend in BACKENDS:
            ratios = worker.ratios[backend]
            low, _, high = statistics.quantiles(ratios, n=4, method="inclusive")
            lines.append(
                f"- {worker.label}, {backend}: {statistics.median(ratios):.2f}x "
                f"(quartiles {low:.2f}-{high:.2f})"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tree", action="append", type=Path, help="a src directory (repeat)")
    parser.add_argument("--url", help="use this Redis server instead of starting one")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--size", type=int, default=100, help="pairs per block")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="bench-facade:", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.url, args.prefix))
        return
    trees: list[Path] = args.tree or [ROOT / "src"]
    workers = [Worker(f"{i}:{tree}", tree) for i, tree in enumerate(trees)]
    server: Any
    if args.url:
        server = nullcontext(args.url)
    else:
        sys.path.insert(0, str(ROOT))
        from tests._servers import redis_server

        server = redis_server()
    with server as url:
        run(workers, url, args.rounds, args.size)
    print(table(workers, args.rounds, args.size))


if __name__ == "__main__":
    main()
