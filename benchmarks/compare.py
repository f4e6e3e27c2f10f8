"""The hot path of two source trees side by side, measured in one run (not part of the tests).

    python benchmarks/compare.py --base /path/to/other/src --head src   # ~3 min
    python benchmarks/compare.py --base /path/to/other/src --quick      # ~1 min
    python benchmarks/compare.py --base src                             # head against itself

For a branch against main: ``git worktree add /tmp/main main``, then
``python benchmarks/compare.py --base /tmp/main/src --head src``.

Three worker processes (this file with ``--serve``, ``PYTHONPATH`` set to a tree) import
``callthrottle`` from their tree (checked): *base*, *head*, and *head again*, whose ratio to
head is the noise of this run (A/A: the same code twice). Each opens its throttles once
(``memory://``, and Redis under a key prefix of its own on one server this run starts, or
``--url``), then waits for orders on stdin. The parent hands short blocks of each measure to
one worker after another, the order rotating from round to round, so that drift on the machine
(other work, CPU clock) hits all three alike; only one worker runs at a time.

The measures are ``suite.py``'s (the pair of ``hot_path.py``, the cycling of ``_worker.py``):

- acquire + release, uncontended, on one number (``limit=20, timeout=0``): the p50 of a
  block's pairs, in µs (lower is faster);
- contended: 200 coroutines cycling on one number with cap 20, each holding its slot across one
  turn of the event loop: a block's cycles/s (higher is faster);

each on ``memory://`` and on Redis. The table gives each tree's median over its blocks, and the
ratios head/base and head again/head as the median over the rounds of the ratio of the two
blocks of a round (they ran one after the other: drift over the run cancels, and a burst of
other work hits one round, not the figure). A head/base ratio no farther from 1 than the A/A
ratio is noise. The workers use the public API only, so
the two trees may differ in any private module.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import AbstractContextManager, AsyncExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _worker import contend, hold_factory, read_line, stop_worker
from hot_path import NUMBER, summarize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests._servers import redis_server

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

CAP = 20
COROUTINES = 200
CONTENDED = "+8657188880002"  # the contended measures' number (the pairs use NUMBER)


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    size: float  # per block: pairs timed, or seconds of cycling
    unit: str


MEASURES = (
    Measure("memory_pair", "memory acquire+release, uncontended", 2000, "p50 µs"),
    Measure("memory_contended", f"memory, {COROUTINES} coroutines, cap {CAP}", 0.4, "cycles/s"),
    Measure("redis_pair", "Redis acquire+release, uncontended", 300, "p50 µs"),
    Measure("redis_contended", f"Redis, {COROUTINES} coroutines, cap {CAP}", 0.8, "cycles/s"),
)


# The worker: one source tree --------------------------------------------------------------------


def imported_from(tree: Path) -> Path:
    """The package ``callthrottle`` this process imports, checked to be ``tree``'s."""
    import callthrottle

    imported = Path(callthrottle.__file__).resolve().parent
    if not imported.is_relative_to(tree.resolve()):
        raise SystemExit(f"callthrottle came from {imported}, not from {tree}")
    return imported


async def serve(imported: Path, url: str, prefix: str) -> None:
    """Answer one JSON line per order read on stdin, ``{"measure": key, "size": size}``, until
    an empty line or end of input; ``imported``: where ``callthrottle`` came from."""
    from callthrottle import Throttle

    async with AsyncExitStack() as stack:
        memory = await stack.enter_async_context(Throttle.from_url("memory://"))
        redis = await stack.enter_async_context(Throttle.from_url(url, key_prefix=prefix))
        lift = getattr(redis.backend, "lift_fence", None)  # a tree older than the fence has none
        if lift is not None:  # a young server fences grants for a lease TTL (README)
            await lift()
        holds = {
            name: await stack.enter_async_context(
                hold_factory(
                    "callthrottle",
                    where,
                    prefix=prefix,
                    number=CONTENDED,
                    cap=CAP,
                    share=CAP,
                    connections=COROUTINES,
                )
            )
            for name, where in (("memory", "memory://"), ("redis", url))
        }

        def pair(throttle: Throttle) -> Callable[[], Awaitable[None]]:
            async def step() -> None:
                await throttle.release(await throttle.acquire(NUMBER, limit=CAP, timeout=0))

            return step

        pairs = {"memory": pair(memory), "redis": pair(redis)}

        async def run(key: str, size: float) -> dict[str, Any]:
            backend, kind = key.split("_")
            if kind == "pair":
                step = pairs[backend]
                samples = []
                for _ in range(int(size)):
                    start = time.perf_counter_ns()
                    await step()
                    samples.append(time.perf_counter_ns() - start)
                return {"samples_ns": samples}
            result = await contend(holds[backend], COROUTINES, time.monotonic(), size)
            return {
                "cycles": result["cycles"],
                "elapsed": result["elapsed"],
                "peak": result["peak"],
            }

        for measure in MEASURES:  # warm up: connections open, functions loaded, caches hot
            await run(measure.key, 200 if measure.unit == "p50 µs" else 0.2)
        print(json.dumps({"ready": str(imported)}), flush=True)
        while order := await read_line():
            request = json.loads(order)
            print(json.dumps(await run(request["measure"], request["size"])), flush=True)


# The parent -------------------------------------------------------------------------------------


@dataclass
class Variant:
    label: str
    tree: Path
    proc: subprocess.Popen[str] | None = None
    blocks: dict[str, list[float]] = field(default_factory=dict)  # measure -> figure per block
    peak: int = 0

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

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def answer(self) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.label} worker exited ({self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_worker(self.proc)

    def measure(self, measure: Measure) -> None:
        answer = self.ask({"measure": measure.key, "size": measure.size})
        blocks = self.blocks.setdefault(measure.key, [])
        if "samples_ns" in answer:
            blocks.append(summarize(answer["samples_ns"])["p50_us"])
        else:
            blocks.append(answer["cycles"] / answer["elapsed"])
            self.peak = max(self.peak, answer["peak"])
            if answer["peak"] > CAP:
                raise RuntimeError(f"{self.label}: {answer['peak']} slots held at once, cap {CAP}")

    def figure(self, measure: Measure) -> float:
        """The median of the blocks' figures (a burst of other work hits a block, not this)."""
        return statistics.median(self.blocks[measure.key])

    def over(self, other: Variant, measure: Measure) -> str:
        """The median, over the rounds, of this figure over ``other``'s in the same round (the
        two blocks of a round ran one after the other, so drift over the run cancels), and the
        quartiles of those ratios (how much the machine's other work moved them)."""
        pairs = zip(self.blocks[measure.key], other.blocks[measure.key], strict=True)
        ratios = [mine / theirs for mine, theirs in pairs]
        quartiles = (
            statistics.quantiles(ratios, n=4, method="inclusive") if ratios[1:] else ratios * 3
        )
        low, _, high = quartiles
        return f"{statistics.median(ratios):.3f} ({low:.2f}-{high:.2f})"


def log(message: str, started: float) -> None:
    print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)


def run(variants: list[Variant], url: str, rounds: int) -> None:
    started = time.monotonic()
    try:
        for index, variant in enumerate(variants):
            variant.start(url, f"bench-compare-{index}:")
        for variant in variants:
            log(f"{variant.label}: callthrottle from {variant.answer()['ready']}", started)
        for done in range(rounds):
            turn = done % len(variants)  # which goes first rotates
            for measure in MEASURES:
                for variant in variants[turn:] + variants[:turn]:
                    variant.measure(measure)
            log(f"round {done + 1}/{rounds}", started)
    finally:
        for variant in variants:
            variant.stop()


def table(variants: list[Variant], rounds: int) -> str:
    base, head, again = variants
    lines = [
        f"| measure ({rounds} blocks each) | unit | base | head | head/base | A/A: head again/head |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for measure in MEASURES:
        spec = ",.1f" if measure.unit == "p50 µs" else ",.0f"
        lines.append(
            f"| {measure.label} | {measure.unit} | {base.figure(measure):{spec}} "
            f"| {head.figure(measure):{spec}} | {head.over(base, measure)} "
            f"| {again.over(head, measure)} |"
        )
    return "\n".join(
        [
            f"base: {base.tree}",
            f"head: {head.tree} (and again: {again.tree})",
            "",
            *lines,
            "",
            (
                "Figures: the median of the blocks' (p50 µs: lower is faster; cycles/s: higher "
                "is faster). Ratios: the median of the rounds' ratios (their quartiles). A "
                "head/base ratio no farther from 1 than the A/A ratio is noise."
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base", type=Path, required=False, help="the tree to compare against")
    parser.add_argument("--head", type=Path, default=ROOT / "src", help="the tree measured")
    parser.add_argument("--url", help="use this Redis server instead of starting one")
    parser.add_argument("--quick", action="store_true", help="a ~1 min run (fewer blocks)")
    parser.add_argument("--rounds", type=int, help="blocks of each measure per tree")
    parser.add_argument("--json", type=Path, help="also write every block's figure there")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # a worker: its tree
    parser.add_argument("--prefix", default="bench-compare:", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(imported_from(args.serve), args.url, args.prefix))
        return
    if args.base is None:
        parser.error("--base is required")
    for tree in (args.base, args.head):
        if not (tree / "callthrottle" / "__init__.py").is_file():
            parser.error(f"{tree} is not a source tree (no callthrottle/__init__.py in it)")
    rounds = args.rounds or (12 if args.quick else 40)
    variants = [
        Variant("base", args.base.resolve()),
        Variant("head", args.head.resolve()),
        Variant("head again", args.head.resolve()),
    ]
    server: AbstractContextManager[str] = nullcontext(args.url) if args.url else redis_server()
    with server as url:
        run(variants, url, rounds)
    print(table(variants, rounds))
    if args.json is not None:
        blocks = {variant.label: variant.blocks for variant in variants}
        trees = {variant.label: str(variant.tree) for variant in variants}
        args.json.write_text(json.dumps({"trees": trees, "blocks": blocks}, indent=1) + "\n")


if __name__ == "__main__":
    main()
