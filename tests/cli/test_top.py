"""``callthrottle top`` as an operator's tool: it outlives an outage of the backend (the last
view marked stale, since when the server is unreachable, then live again once it is back), it
ends with status 130 on Ctrl-C, and at 80 columns it cuts nothing an admin command takes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from rich.console import Console

from callthrottle._config import Config
from callthrottle._survey import Filters, collect
from callthrottle.cli._common import Target
from callthrottle.cli._render import render
from callthrottle.sync import SyncThrottle
from tests._servers import own_server

if TYPE_CHECKING:
    from collections.abc import Callable

    from click.testing import Result

pytestmark = pytest.mark.redis

SRC = Path(__file__).resolve().parents[2] / "src"
A, B = "+8657188880001", "+8657188880002"


class Top:
    """``python -m callthrottle top ARGS`` in a process of its own, its output read as it
    comes."""

    def __init__(self, *args: str) -> None:
        path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callthrottle", "top", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, after: int = 0, timeout: float = 20.0) -> int:
        """The index of the first line from ``after`` on that holds ``text`` (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index in range(after, len(self.lines)):
                if text in self.lines[index]:
                    return index
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not printed after line {after}:\n{''.join(self.lines)}")

    def finish(self, timeout: float = 30.0) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def close(self) -> None:
        """Kill it if it still runs, and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "carriers.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_top_outlives_an_outage_and_shows_live_data_again(tmp_path: Path, prefix: str) -> None:
    config = _write(tmp_path, f'[numbers."{A}"]\ncap = 3\n')
    with own_server() as (url, server):
        top = Top("--url", url, "--prefix", prefix, "--config", config,
                  "--iterations", "60", "--interval", "0.1")  # fmt: skip
        try:
            first = top.wait_for("refreshed")
            top.wait_for(A, after=first)
            server.stop()
            down = top.wait_for("unreachable since")
            assert "retrying every 0.1 s" in "".join(top.lines[down:])
            server.start()  # the same port, a new server process
            again = top.wait_for("backend reachable again, after", after=down)
            back = top.wait_for("refreshed", after=again)
            assert "stale" not in top.lines[back]
            row = top.wait_for(A, after=back)
            assert "0/3" in top.lines[row]  # live again, read from the new server
            code, stderr = top.finish()
        finally:
            top.close()
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_top_shows_since_when_a_backend_down_at_start_is_unreachable(
    invoke: Callable[..., Result],
) -> None:
    result = invoke("top", "--url", "redis://127.0.0.1:1/0", "--iterations", "3",
                    "--interval", "0.05")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.count("unreachable since") == 1  # said once in a log, not every retry
    assert "Redis failed" in result.stdout
    assert "no view yet" in result.stdout


def test_top_ends_with_status_130_on_ctrl_c(redis_url: str, prefix: str) -> None:
    top = Top("--url", redis_url, "--prefix", prefix, "--interval", "0.05")
    try:
        top.wait_for("refreshed")
        top.proc.send_signal(signal.SIGINT)
        code, stderr = top.finish()
    finally:
        top.close()
    assert code == 130, stderr
    assert "Traceback" not in stderr


def test_status_says_the_backend_is_unreachable(invoke: Callable[..., Result]) -> None:
    result = invoke("status", "--url", "redis://127.0.0.1:1/0")
    assert result.exit_code == 1
    assert "redis://127.0.0.1:1/0 is unreachable: Redis failed" in result.stderr


def test_at_80_columns_numbers_tokens_and_owners_are_whole(redis_url: str, prefix: str) -> None:
    owner = "dialer-host-03.campaigns.example.com:12345:ab12cd"
    token = "6f1c2a8e-3b7d-4c59-9e2f-0a1b2c3d4e5f"
    options: dict[str, Any] = {"key_prefix": prefix, "owner_id": owner, "lease_ttl": 30.0}
    with SyncThrottle.from_url(redis_url, **options) as dialer:
        dialer.set_rates(A, "5/second;100/hour;1000/day")
        dialer.acquire(A, token=token, timeout=0)
        dialer.acquire(A, token="call-2", timeout=0)
        dialer.set_state(B, "cooling", duration=300, reason="carrier answered 503 for an hour")
        dialer.add_to_pool("hangzhou-outbound-sales", [A, B])
        target = Target(redis_url, Config(), prefix)

        async def read() -> Any:
            async with target.inspector() as inspector:
                return await collect(inspector, target, Filters(holders=True))

        snapshot = anyio.run(read)
    for stale in (False, True):
        screen = Console(width=80, record=True)
        screen.print(render(snapshot, stale=stale))
        text = screen.export_text()
        assert max(len(line) for line in text.splitlines()) <= 80
        for whole in (A, B, token, "call-2", owner, "hangzhou-outbound-sales"):
            assert whole in text, f"{whole} is cut at 80 columns:\n{text}"
        assert "2/20" in text
