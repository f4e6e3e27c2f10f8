"""The server's work per decision on Redis, from ``INFO commandstats`` (not part of the tests).

    python benchmarks/server_work.py                               # this tree alone
    python benchmarks/server_work.py --base /path/to/other/src     # two trees side by side
    python benchmarks/server_work.py --base /tmp/main/src --head src --count 200 --rounds 5

A redis-server of its own is started (``tests/_servers.py``). One worker process per source
tree (this file with ``--serve``, ``PYTHONPATH`` set to the tree; checked) opens two throttles
under a key prefix of its own: a plain one (``limit=20``) and one whose number is under every
limit (cap, two rate windows, a trunk and a tenant with caps and windows, a callee window: the
suite's). Each round, one worker after the other (the order alternating) runs, per case,
``--count`` acquires (all held at once), then their releases, reading ``INFO commandstats``
before, between and after. Per operation it reports the ``FCALL`` calls and their usec (the
time the server spent in the function, commands inside included), and the calls of every other
command, which are the commands run inside the functions (the worker's own client sends only
``FCALL`` and ``INFO`` meanwhile; ``INFO`` is left out). Counts are exact and do not depend on
load; usec does a little (the median over rounds is printed).

Two more cases: *handoff*, a release that hands its slot to the one waiter, of another throttle
(per release, up to the waiter's lease: ``--count`` / 4 of them), and *contended*, 200
coroutines cycling on one number with cap 20 as in ``compare.py`` (per cycle, an acquire and a
release: ``--count`` * 20 of them). Requests that arrive together run as one batch call there,
so its counts depend a little on timing too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _worker import stop_worker

ROOT = Path(__file__).resolve().parent.parent
NUMBER = "+8657188880001"
CALLEE = "+8613800138000"
HANDED = "+8657188880002"  # the number of the hand-off case
CONTENDED = "+8657188880003"  # the number of the contended case
CAP = 20
POLICED = {
    "numbers": {
        NUMBER: {"cap": 100000, "rates": "100000/minute;1000000/day", "trunk": "t", "tenant": "a"}
    },
    "trunks": {"t": {"cap": 100000, "rates": "100000/minute"}},
    "tenants": {"a": {"cap": 100000, "rates": "100000/minute"}},
    "callee": {"rates": "100000/minute"},
}
CASES = ("plain", "every", "handoff", "contended")
#: What each case measures per operation (the others: an acquire and a release).
OPERATIONS = {"handoff": ("release",), "contended": ("cycle",)}
#: Operations per round, as a share of --count.
SIZES = {"handoff": 0.25, "contended": 20}
FUNCTION_CALLS = ("fcall", "fcall_ro", "evalsha", "eval", "evalsha_ro", "eval_ro")
IGNORED = ("info", "function|load", "function")


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """command -> (calls, usec) between two ``INFO commandstats`` readings."""
    out: dict[str, tuple[int, int]] = {}
    for key, stat in after.items():
        name = key.removeprefix("cmdstat_")
        if name in IGNORED:
            continue
        old = before.get(key, {"calls": 0, "usec": 0})
        calls = int(stat["calls"]) - int(old["calls"])
        if calls:
            out[name] = (calls, int(stat["usec"]) - int(old["usec"]))
    return out


def per_op(changes: dict[str, tuple[int, int]], count: int) -> dict[str, Any]:
    calls = sum(changes.get(name, (0, 0))[0] for name in FUNCTION_CALLS)
    usec = sum(changes.get(name, (0, 0))[1] for name in FUNCTION_CALLS)
    inner = {
        name: calls_ / count
        for name, (calls_, _) in sorted(changes.items())
        if name not in FUNCTION_CALLS
    }
    return {
        "calls": calls / count,
        "usec": usec / count,
        "inner": inner,
        "inner_total": sum(inner.values()),
    }


# The worker: one source tree --------------------------------------------------------------------


def imported_from(tree: Path) -> Path:
    """Where ``callthrottle`` is imported from, checked to be ``tree``."""
    import callthrottle

    imported = Path(callthrottle.__file__).resolve()
    if not imported.is_relative_to(tree.resolve()):
        raise SystemExit(f"callthrottle came from {imported}, not from {tree}")
    return imported


async def serve(tree: Path, url: str, prefix: str) -> None:
    import redis
    from callthrottle import Throttle

    imported = imported_from(tree)
    sync = redis.Redis.from_url(url)
    async with (
        Throttle.from_url(url, key_prefix=prefix + "plain:") as plain,
        Throttle.from_url(url, key_prefix=prefix + "plain:") as other,
        Throttle.from_url(url, key_prefix=prefix + "every:", config=POLICED) as every,
    ):
        for throttle in (plain, every):
            lift = getattr(throttle.backend, "lift_fence", None)
            if lift is not None:
                await lift()

        async def acquire(case: str) -> Any:
            if case == "plain":
                return await plain.acquire(NUMBER, limit=100000, timeout=0)
            return await every.acquire(NUMBER, timeout=0, callee=CALLEE)

        async def release(case: str, lease: Any) -> None:
            await (plain if case == "plain" else every).release(lease)

        async def handoff(count: int) -> dict[str, Any]:
            # A slot handed to a waiter of another throttle: from the holder's release to the
            # waiter's lease (what the server does meanwhile: the release, and anything the
            # waiter asks before its acquire returns).
            totals: dict[str, tuple[int, int]] = {}
            for _ in range(count):
                held = await plain.acquire(HANDED, limit=1, timeout=0)
                waiting = asyncio.ensure_future(other.acquire(HANDED, limit=1, timeout=10))
                for _ in range(10000):  # until it waits in line
                    if (await plain.usage(HANDED)).waiting:
                        break
                    await asyncio.sleep(0.001)
                before = sync.info("commandstats")
                await plain.release(held)
                lease = await waiting
                for name, (calls, usec) in delta(before, sync.info("commandstats")).items():
                    old = totals.get(name, (0, 0))
                    totals[name] = (old[0] + calls, old[1] + usec)
                await other.release(lease)
            return {"release": per_op(totals, count)}

        async def contended(count: int) -> dict[str, Any]:
            # 200 coroutines cycling on one number with cap 20 (compare.py's): the server's
            # work per cycle (an acquire, mostly queued and handed a slot, and a release).
            cycles = 0

            async def cycle() -> None:
                nonlocal cycles
                while cycles < count:
                    lease = await plain.acquire(CONTENDED, limit=20, timeout=10)
                    await asyncio.sleep(0)
                    await plain.release(lease)
                    cycles += 1

            before = sync.info("commandstats")
            await asyncio.gather(*(cycle() for _ in range(200)))
            return {"cycle": per_op(delta(before, sync.info("commandstats")), cycles)}

        async def run(case: str, count: int) -> dict[str, Any]:
            if case == "handoff":
                return await handoff(count)
            if case == "contended":
                return await contended(count)
            first = sync.info("commandstats")
            leases = [await acquire(case) for _ in range(count)]
            middle = sync.info("commandstats")
            for lease in leases:
                await release(case, lease)
            last = sync.info("commandstats")
            return {
                "acquire": per_op(delta(first, middle), count),
                "release": per_op(delta(middle, last), count),
            }

        for case in CASES:  # warm up: functions loaded, connections open
            await run(case, 20)
        print(json.dumps({"ready": str(imported)}), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                break
            order = json.loads(line)
            print(json.dumps(await run(order["case"], order["count"])), flush=True)
    sync.close()


# The parent -------------------------------------------------------------------------------------


class Worker:
    def __init__(self, label: str, tree: Path, url: str, prefix: str) -> None:
        self.label = label
        env = {**os.environ, "PYTHONPATH": str(tree)}
        command = [sys.executable, __file__, "--serve", str(tree), "--url", url, "--prefix", prefix]
        self.proc = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.answer()

    def answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.label} worker exited ({self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, case: str, count: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"case": case, "count": count}) + "\n")
        self.proc.stdin.flush()
        self.results.setdefault(case, []).append(self.answer())

    def stop(self) -> None:
        stop_worker(self.proc)


def summary(rounds: list[dict[str, Any]], op: str) -> dict[str, Any]:
    usec = statistics.median(r[op]["usec"] for r in rounds)
    inner = rounds[-1][op]["inner"]  # exact counts: the last round's (warm) stand
    return {"usec": usec, "calls": rounds[-1][op]["calls"], "inner": inner}


def report(workers: list[Worker], trivial: float) -> None:
    print(f"\nEVALSHA of `return 1`: {trivial:.2f} usec per call inside the server")
    for case in CASES:
        for op in OPERATIONS.get(case, ("acquire", "release")):
            print(f"\n{case} {op} (per operation):")
            figures = [(w.label, summary(w.results[case], op)) for w in workers]
            names = sorted({n for _, s in figures for n in s["inner"]})
            head = f"  {'':24}" + "".join(f"{label:>12}" for label, _ in figures)
            print(head)
            print(f"  {'function usec':24}" + "".join(f"{s['usec']:12.2f}" for _, s in figures))
            print(f"  {'function calls':24}" + "".join(f"{s['calls']:12.2f}" for _, s in figures))
            total = [sum(s["inner"].values()) for _, s in figures]
            print(f"  {'inner commands':24}" + "".join(f"{t:12.2f}" for t in total))
            for name in names:
                row = "".join(f"{s['inner'].get(name, 0):12.2f}" for _, s in figures)
                print(f"    {name:22}" + row)


def trivial_usec(url: str) -> float:
    import redis

    client = redis.Redis.from_url(url)
    sha = client.script_load("return 1")
    before = client.info("commandstats")
    for _ in range(2000):
        client.evalsha(sha, 0)
    after = client.info("commandstats")
    client.close()
    calls, usec = delta(before, after)["evalsha"]
    return usec / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, help="a second source tree (its src directory)")
    parser.add_argument("--head", type=Path, default=ROOT / "src")
    parser.add_argument("--count", type=int, default=200, help="acquires held at once, per case")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--url", help="a running server (else one of its own is started)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="sw:", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.url, args.prefix))
        return
    sys.path.insert(0, str(ROOT))
    from tests._servers import redis_server

    with redis_server() if args.url is None else _given(args.url) as url:
        trees = [("base", args.base)] if args.base else []
        trees.append(("head", args.head))
        workers = [Worker(label, tree, url, f"sw-{label}:") for label, tree in trees]
        try:
            for i in range(args.rounds):
                order = workers if i % 2 == 0 else workers[::-1]
                for case in CASES:
                    for worker in order:
                        worker.ask(case, int(args.count * SIZES.get(case, 1)))
                print(f"\rround {i + 1}/{args.rounds}", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
            report(workers, trivial_usec(url))
        finally:
            for worker in workers:
                worker.stop()


class _given:
    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
