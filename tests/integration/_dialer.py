"""A dialer in its own OS process, for the integration tests; and :func:`spawn`, to start one.

The tests start it with :func:`spawn`, which runs ``python -m tests.integration._dialer MODE ...``
with the repository root as working directory (callthrottle itself comes from the installed
package). Modes:

``dial URL PREFIX OUT --number NUMBER:CAP ...``
    Opens a throttle, prints ``ready``, waits for ``go`` on stdin, then runs ``--tasks``
    coroutines that each take ``--rounds`` slots in turn on the numbers (coroutine ``i`` uses
    number ``(i + round) % len(numbers)``; with ``--pool``, any number of a pool of them),
    holding each 1-10 ms. Writes to OUT, as JSON, every
    hold as ``[number, start, end]`` in ``time.monotonic()`` seconds (system-wide on Linux, so
    comparable across processes): start right after the slot was granted, end right before it
    is given back.

``hold URL PREFIX NUMBER``
    Takes ``--slots`` slots on NUMBER, prints its owner id and ``ready``, then sleeps.

``wait URL PREFIX NUMBER``
    Prints its owner id and ``ready``, then waits in line for a slot on NUMBER (no timeout).

Each mode exits on its own after ``--lifetime`` seconds, so a child the test run failed to kill
does not linger.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from callthrottle import Throttle

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from anyio.abc import Process

__all__ = ("Child", "spawn")

ROOT = Path(__file__).resolve().parents[2]

Interval = tuple[str, float, float]


# -- the parent's side ----------------------------------------------------------------------


class Child:
    """A running dialer process: line-based talk over its stdin and stdout."""

    def __init__(self, process: Process, stderr_path: Path) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self._stderr_path = stderr_path

    def stderr(self) -> str:
        return self._stderr_path.read_text(encoding="utf-8", errors="replace")

    async def read_line(self, within: float = 20.0) -> str:
        """The next line the child printed; fails with its stderr if it exited instead."""
        with anyio.fail_after(within):
            try:
                raw = await self._stdout.receive_until(b"\n", 65536)
            except (anyio.EndOfStream, anyio.IncompleteRead):
                code = await self.process.wait()
                raise AssertionError(
                    f"dialer exited with {code} before printing a line; stderr:\n{self.stderr()}"
                ) from None
        return raw.decode().strip()

    async def handshake(self) -> str:
        """Read the owner id and ``ready`` that ``hold`` and ``wait`` print; return the id."""
        owner = await self.read_line()
        ready = await self.read_line()
        assert ready == "ready", (owner, ready, self.stderr())
        return owner

    async def send_line(self, line: str) -> None:
        await self._stdin.send(line.encode() + b"\n")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to give anything back."""
        self.process.send_signal(signal.SIGKILL)

    async def wait(self, within: float = 30.0) -> int:
        with anyio.fail_after(within):
            return await self.process.wait()


@asynccontextmanager
async def spawn(mode: str, *args: str, stderr_path: Path) -> AsyncIterator[Child]:
    """Start a dialer process; it is killed (if still running) and reaped on exit."""
    command = [sys.executable, "-m", "tests.integration._dialer", mode, *args]
    # The working directory is not on sys.path under PYTHONSAFEPATH; PYTHONPATH still is.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with stderr_path.open("wb") as stderr:
        process = await anyio.open_process(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": path},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        yield Child(process, stderr_path)
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.aclose()


# -- the child's side -----------------------------------------------------------------------


def _say(line: str) -> None:
    print(line, flush=True)


async def _dial(options: argparse.Namespace) -> dict[str, Any]:
    caps: dict[str, int] = {}
    for item in options.number:
        number, _, cap = item.rpartition(":")
        caps[number] = int(cap)
    numbers = list(caps)
    intervals: list[Interval] = []
    lost: list[str] = []
    config: dict[str, Any] = {}
    if options.trunk_cap is not None:  # every number on one trunk with its own, lower, cap
        config["trunks"] = {"shared": {"cap": options.trunk_cap}}
        config["numbers"] = {number: {"trunk": "shared"} for number in numbers}
    if options.pool:  # every call picks any number of one pool (whose members carry their caps)
        config["numbers"] = {number: {"cap": cap} for number, cap in caps.items()}
        config["pools"] = {"pool": {"numbers": numbers}}
    with anyio.fail_after(options.lifetime):
        async with Throttle.from_url(
            options.url, key_prefix=options.prefix, lease_ttl=options.ttl, config=config
        ) as throttle:
            _say("ready")
            go = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if go.strip() != "go":
                raise SystemExit(f"expected 'go' on stdin, got {go!r}")

            async def caller(index: int) -> None:
                rng = random.Random(f"{os.getpid()}:{index}")
                for round_ in range(options.rounds):
                    if options.pool:
                        held = throttle.slot_from("pool", timeout=60)
                    else:
                        number = numbers[(index + round_) % len(numbers)]
                        held = throttle.slot(number, limit=caps[number], timeout=60)
                    async with held as lease:
                        start = time.monotonic()
                        await anyio.sleep(rng.uniform(0.001, 0.010))
                        end = time.monotonic()
                    intervals.append((lease.number, start, end))
                    if lease.lost or not lease.released:
                        lost.append(repr(lease))

            async with anyio.create_task_group() as tasks:
                for index in range(options.tasks):
                    tasks.start_soon(caller, index)
            still_held = [repr(lease) for lease in throttle.held]
    return {
        "pid": os.getpid(),
        "owner": throttle.owner_id,
        "intervals": intervals,
        "lost": lost,
        "still_held": still_held,
    }


async def _hold(options: argparse.Namespace) -> None:
    async with Throttle.from_url(
        options.url, key_prefix=options.prefix, lease_ttl=options.ttl
    ) as throttle:
        for _ in range(options.slots):
            await throttle.acquire(options.number, limit=options.limit, timeout=10)
        _say(throttle.owner_id)
        _say("ready")
        await anyio.sleep(options.lifetime)


async def _wait(options: argparse.Namespace) -> None:
    async with Throttle.from_url(
        options.url, key_prefix=options.prefix, lease_ttl=options.ttl
    ) as throttle:
        _say(throttle.owner_id)
        _say("ready")
        with anyio.move_on_after(options.lifetime):
            await throttle.acquire(options.number, limit=options.limit)
            _say("granted")
            await anyio.sleep_forever()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.integration._dialer")
    modes = parser.add_subparsers(dest="mode", required=True)
    for mode in ("dial", "hold", "wait"):
        sub = modes.add_parser(mode)
        sub.add_argument("url")
        sub.add_argument("prefix")
        sub.add_argument("--ttl", type=float, default=5.0, help="lease_ttl of the throttle")
        sub.add_argument("--lifetime", type=float, default=60.0, help="exit after this long")
        if mode == "dial":
            sub.add_argument("out", type=Path, help="where to write the holds, as JSON")
            sub.add_argument("--number", action="append", required=True, help="NUMBER:CAP")
            sub.add_argument("--tasks", type=int, default=30)
            sub.add_argument("--rounds", type=int, default=5)
            sub.add_argument("--trunk-cap", type=int, help="put every number on one trunk")
            sub.add_argument(
                "--pool", action="store_true", help="pick from a pool of the numbers instead"
            )
        else:
            sub.add_argument("number")
            sub.add_argument("--limit", type=int, required=True)
            sub.add_argument("--slots", type=int, default=1)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    options = _parser().parse_args(argv)
    if options.mode == "dial":
        result = anyio.run(_dial, options, backend="asyncio")
        options.out.write_text(json.dumps(result), encoding="utf-8")
    elif options.mode == "hold":
        anyio.run(_hold, options, backend="asyncio")
    else:
        anyio.run(_wait, options, backend="asyncio")


if __name__ == "__main__":
    main()
