"""The Redis backend's script lane: one connection that every coroutine's scripts share.

A request is written as soon as it is made, whether or not earlier ones have been answered;
Redis answers the requests of one connection in order, so the replies are matched to their
callers first in, first out. Concurrent callers thereby share round trips (their requests travel
in the same packets, and one read hands back many replies), and an uncontended call costs one
write, one read and hiredis' packing and parsing: no connection pool, no lock, no task switch
beyond the caller's own wait.

The lane connects with the settings of the redis-py client it is made from (address, TLS,
credentials, database, client name, timeouts), so one URL configures both. It is asyncio-only,
like redis-py's asyncio client.

Failures: if the server does not answer the oldest request within the socket timeout, the
connection is closed and every request on it fails with :class:`redis.exceptions.TimeoutError`
(its replies could no longer be matched). A lost connection fails its requests with
:class:`redis.exceptions.ConnectionError`; a request that had not been answered is retried on a
new connection (every script is safe to run twice for the same token). Error replies raise
:class:`redis.exceptions.ResponseError`; ``NOSCRIPT`` reloads the script and runs it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import hiredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.sentinel import (
    SentinelConnectionPool,
    SentinelManagedSSLConnection,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    import redis.asyncio as aioredis

__all__ = ("CROSS_SLOT", "NO_WRITES", "Library", "ScriptLane", "Subscription")

Arg = str | bytes | int | float

#: A line of the header of a function that never writes (see :class:`Library`).
NO_WRITES = "-- flags: no-writes"
#: A line of the header of a function that touches keys of several slots of one Cluster node.
CROSS_SLOT = "-- flags: allow-cross-slot-keys"

_RETRIES = 2  # a request whose connection was lost before it was answered is sent again
_BACKOFF = 0.01  # seconds before the first retry, doubled each time


def pack(*parts: Arg) -> bytes:
    """One command in the Redis protocol, packed by hiredis."""
    packed: bytes = hiredis.pack_command(parts)  # type: ignore[arg-type]  # stub: 1-tuples only
    return packed


class Library:
    """A Lua function library, loaded into the server the first time one of its functions is
    missing there (a new server, ``FUNCTION FLUSH``, or a server that lost its data).

    The library's name and its functions' names carry a digest of its source, so libraries of
    different releases never collide on one server.

    :param name: the library's name (the digest is appended)
    :param shared: Lua code defined once, before the functions
    :param bodies: each function's name and body; the body sees ``KEYS`` and ``ARGV`` through
        ``bind(keys, args)``, which ``shared`` must define, and may call the bodies before it
        as ``body_<name>()``. A body with a line (of its header) that starts with
        :data:`NO_WRITES` is registered with the ``no-writes`` flag: it may be called with
        ``FCALL_RO`` (:meth:`ScriptLane.read`), and the server refuses any write it would make.
    """

    __slots__ = ("_scripts", "functions", "read_only", "source")

    def __init__(self, name: str, shared: str, bodies: Mapping[str, str]) -> None:
        digest = hashlib.sha1(
            (shared + "".join(f"{k}\n{v}" for k, v in sorted(bodies.items()))).encode(),
            usedforsecurity=False,
        ).hexdigest()[:12]
        self.functions = {fn: f"{name}_{digest}_{fn}" for fn in bodies}
        #: The functions registered read only (their headers say NO_WRITES).
        self.read_only = frozenset(
            fn
            for fn, body in bodies.items()
            if any(line.startswith(NO_WRITES) for line in body.splitlines())
        )
        parts = [f"#!lua name={name}_{digest}", shared]
        # Each body is a function of its own, body_<name>, which later bodies may call.
        parts += [f"local function body_{fn}()\n{body}\nend" for fn, body in bodies.items()]
        parts += [
            f"redis.register_function{{function_name='{self.functions[fn]}', "
            f"callback=function(keys, args) bind(keys, args) return body_{fn}() end"
            + (
                ", flags={'no-writes'}}"
                if fn in self.read_only
                else ", flags={'allow-cross-slot-keys'}}"
                if any(line.startswith(CROSS_SLOT) for line in bodies[fn].splitlines())
                else "}"
            )
            for fn in bodies
        ]
        self.source = "\n".join(parts)
        # A read-only function as a script of its own, for a server without the library.
        self._scripts = {
            fn: (
                "#!lua flags=no-writes\n"
                # KEYS and ARGV are the script's globals here: kept before shared hides them.
                "local script_keys, script_args = KEYS, ARGV\n"
                f"{shared}\nlocal function body_{fn}()\n{bodies[fn]}\nend\n"
                f"bind(script_keys, script_args)\nreturn body_{fn}()\n"
            )
            for fn in self.read_only
        }

    def script(self, function: str) -> tuple[str, str]:
        """A read-only function as an ``EVAL_RO`` script (with the ``no-writes`` flag), and
        its SHA1: the same code, for a server that has not loaded this library."""
        text = self._scripts[function]
        return text, hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


class _Protocol(asyncio.Protocol):
    """Matches replies to pending requests, first in, first out; hands pub/sub messages, if
    any, to ``on_message``."""

    def __init__(
        self,
        on_close: Callable[[_Protocol], None],
        on_message: Callable[[list[bytes]], None] | None = None,
    ) -> None:
        self._on_close = on_close
        self._on_message = on_message
        self._reader = hiredis.Reader(replyError=ResponseError)
        self.transport: asyncio.Transport | None = None
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: Exception | None = None
        self._outgoing: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader, pending = self._reader, self.pending
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self.fail(RedisConnectionError(f"protocol error from Redis: {exc}"))
                return
            if reply is False:
                return
            if self._on_message is not None and type(reply) is list:
                kind = reply[0]
                if kind == b"smessage":
                    self._on_message(reply)
                    continue
                if kind == b"sunsubscribe":
                    # The server dropped the subscription (its slot moved to another node in a
                    # Cluster): the subscriber must subscribe again where the slot is now.
                    self.fail(RedisConnectionError("Redis ended a shard channel subscription"))
                    return
            if not pending:  # a reply nobody asked for: the stream can no longer be trusted
                self.fail(RedisConnectionError("unexpected reply from Redis"))
                return
            future = pending.popleft()[0]
            if not future.done():  # the caller may have been cancelled meanwhile
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(
            self.error
            or RedisConnectionError(f"connection to Redis lost{f': {exc}' if exc else ''}")
        )

    def fail(self, error: Exception) -> None:
        """Close the connection and fail every request on it with ``error``."""
        if self.error is None:
            self.error = error
        self._on_close(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()
        while self.pending:
            future = self.pending.popleft()[0]
            if not future.done():
                future.set_exception(self.error)
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one packed command. With nothing in flight it is written at once; otherwise it
        is written with every other command queued before the event loop's next turn (one
        write for them all: under load, requests share packets and system calls)."""
        transport = self.transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.error is not None:  # lost already: nothing would ever answer or fail it
            future.set_exception(self.error)
            return future
        idle = not self.pending
        self.pending.append((future, time.monotonic()))
        if idle and not self._outgoing:
            transport.write(packed)
        else:
            if not self._outgoing:
                loop.call_soon(self._flush)
            self._outgoing.append(packed)
        return future

    def _flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._outgoing))
        self._outgoing.clear()


class Subscription:
    """A subscribed connection (see :meth:`ScriptLane.subscribe`)."""

    def __init__(self, protocol: _Protocol, timeout: float | None) -> None:
        self._protocol = protocol
        self._timeout = timeout

    @property
    def closed(self) -> asyncio.Future[None]:
        """Done when the connection is gone (lost, timed out or closed)."""
        return self._protocol.closed

    async def request(self, packed: bytes) -> Any:
        """Send a command allowed while subscribed (SSUBSCRIBE, PING) and wait for its reply
        within the socket timeout; on timeout the connection is closed."""
        future = self._protocol.send(packed)
        try:
            reply = await asyncio.wait_for(future, self._timeout)
        except asyncio.TimeoutError:
            error = RedisTimeoutError(f"Redis did not answer within {self._timeout:g} s")
            self._protocol.fail(error)
            raise error from None
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def add(self, channel: str) -> None:
        """Subscribe this connection to one more shard channel."""
        await self.request(pack("SSUBSCRIBE", channel))

    async def ping(self) -> None:
        """Check that the server still answers on this connection."""
        await self.request(pack("PING"))

    def close(self) -> None:
        self._protocol.fail(RedisConnectionError("subscription closed"))


class ScriptLane:
    """Runs scripts for many coroutines over one pipelined connection (see the module doc).

    :param settings: an unconnected redis-py connection whose settings (address, TLS,
        credentials, database, client name, timeouts) the lane's connections use
    :param sentinels: for a connection managed by Sentinel, the pool that asks the sentinels
        for the master's address
    """

    def __init__(
        self, settings: AbstractConnection, sentinels: SentinelConnectionPool | None = None
    ) -> None:
        self._sentinels = sentinels
        self._settings = settings
        timeout = self._settings.socket_timeout
        self._timeout: float | None = float(timeout) if timeout else None
        connect_timeout = self._settings.socket_connect_timeout
        self._connect_timeout: float | None = float(connect_timeout) if connect_timeout else None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False
        self._connected_before = False
        self._tasks: set[asyncio.Future[Any]] = set()
        #: Called when a connection replaces a lost one (replies to calls in flight on the lost
        #: one, and whatever they reported, may have been lost).
        self.on_reconnect: Callable[[], None] | None = None

    @classmethod
    def for_client(cls, client: aioredis.Redis) -> ScriptLane:
        """A lane with the connection settings of the redis-py ``client``."""
        pool = client.connection_pool
        settings = pool.connection_class(**pool.connection_kwargs)
        return cls(settings, pool if isinstance(pool, SentinelConnectionPool) else None)

    # -- calls ---------------------------------------------------------------------------------

    async def run(
        self, library: Library, function: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """FCALL ``function`` of ``library`` on ``keys`` with ``args``; the library is loaded
        if the server does not have it."""
        packed = pack("FCALL", library.functions[function], len(keys), *keys, *args)
        protocol = self._protocol
        if protocol is None:
            return await self._run_carefully(library, packed)
        # The common case, without the layers of call(): connected, and the library is there.
        future = protocol.send(packed)
        if self._watchdog is None:
            self._watch()
        try:
            reply = await future
        except RedisConnectionError:
            return await self._run_carefully(library, packed)  # sent again on a new connection
        if not isinstance(reply, ResponseError):
            return reply
        if str(reply).startswith("READONLY"):
            # A failover made this server a replica: a new connection finds the new master.
            protocol.fail(RedisConnectionError(f"Redis is no longer the master: {reply}"))
            return await self._run_carefully(library, packed)
        if "Function not found" not in str(reply):
            raise reply
        await self.load(library)
        return await self.call(packed)

    async def _run_carefully(self, library: Library, packed: bytes) -> Any:
        try:
            return await self.call(packed)
        except ResponseError as exc:
            if "Function not found" not in str(exc):
                raise
        await self.load(library)
        return await self.call(packed)

    def run_now(
        self, library: Library, function: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> asyncio.Future[Any]:
        """As :meth:`run`, but when connected the request is written before this returns, so it
        is ordered before any request made after it. The future is never cancelled by the
        lane; a retry (connection lost, library missing) runs in a task of its own."""
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol = self._protocol
        if protocol is None:
            self._chain(self.run(library, function, keys, args), result)
            return result
        raw = protocol.send(pack("FCALL", library.functions[function], len(keys), *keys, *args))
        self._watch()

        def settle(raw: asyncio.Future[Any]) -> None:
            error = raw.exception()
            reply = None if error is not None else raw.result()
            if isinstance(reply, ResponseError):
                error = reply
            if error is None:
                result.set_result(reply)
            elif isinstance(error, RedisConnectionError) or "Function not found" in str(error):
                self._chain(self.run(library, function, keys, args), result)  # as run() would
            else:
                result.set_exception(error)

        raw.add_done_callback(settle)
        return result

    def _chain(self, call: Awaitable[Any], result: asyncio.Future[Any]) -> None:
        task = asyncio.ensure_future(call)
        self._tasks.add(task)

        def settle(task: asyncio.Future[Any]) -> None:
            self._tasks.discard(task)
            if task.cancelled():
                result.cancel()
            elif task.exception() is not None:
                result.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                result.set_result(task.result())

        task.add_done_callback(settle)

    @property
    def busy(self) -> bool:
        """Whether requests are in flight (a new one would wait for their replies anyway)."""
        protocol = self._protocol
        return protocol is not None and bool(protocol.pending)

    async def load(self, library: Library) -> None:
        """Load ``library`` (a no-op if the server has it already)."""
        try:
            await self.call(pack("FUNCTION", "LOAD", library.source))
        except ResponseError as exc:
            message = str(exc)
            if "already exists" in message:
                return  # loaded meanwhile by another caller or process
            if "unknown command" in message.lower():
                raise ResponseError(
                    "this server has no Lua functions (FUNCTION LOAD): the Redis backend needs "
                    "Redis 7.0 or newer, or Valkey 7.2 or newer"
                ) from exc
            raise

    async def call(self, packed: bytes) -> Any:
        """Send one packed command and return its reply; error replies are raised."""
        delay = _BACKOFF
        for attempt in range(_RETRIES + 1):
            protocol = self._protocol
            if protocol is None:
                protocol = await self._connect()
            future = protocol.send(packed)
            self._watch()
            try:
                reply = await future
            except RedisConnectionError:
                if attempt == _RETRIES or self._closed:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
                continue
            if isinstance(reply, ResponseError):
                raise reply
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    async def subscribe(
        self, channels: Sequence[str], on_message: Callable[[bytes, bytes], None]
    ) -> Subscription:
        """Subscribe a connection of its own to the shard ``channels`` (more can be added);
        each message's channel and payload go to ``on_message`` as it arrives (no task switch).
        Returns once the server confirmed."""

        def deliver(reply: list[bytes]) -> None:
            on_message(reply[1], reply[2])

        protocol = await self._dial(lambda: _Protocol(lambda _: None, deliver))
        subscription = Subscription(protocol, self._timeout)
        try:
            for channel in channels:
                await subscription.add(channel)
        except BaseException:
            subscription.close()
            raise
        return subscription

    async def run_asking(
        self, library: Library, function: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """As :meth:`run`, preceded by ``ASKING`` on the same connection: for a Cluster slot
        that is being migrated to this node."""
        packed = pack("FCALL", library.functions[function], len(keys), *keys, *args)
        for _ in range(2):
            protocol = self._protocol or await self._connect()
            asking = protocol.send(pack("ASKING"))
            future = protocol.send(packed)  # right behind it: nothing runs in between
            self._watch()
            for reply in (await asking, await future):
                if isinstance(reply, ResponseError):
                    if "Function not found" not in str(reply):
                        raise reply
                    await self.load(library)
                    break
            else:
                return reply
        raise ResponseError("the library could not be loaded on the node a slot moves to")

    async def read(
        self,
        library: Library,
        function: str,
        keys: Sequence[str],
        args: Sequence[Arg],
        *,
        asking: bool = False,
    ) -> Any:
        """``FCALL_RO`` a read-only function of ``library``: the server refuses any write it
        would make. Never loads the library: a server without it runs the same code as a
        read-only script (``EVALSHA_RO``, then ``EVAL_RO`` the first time), which leaves its
        keys and functions as they were. ``asking``: preceded by ``ASKING`` (a Cluster slot
        being migrated to this node)."""
        tail = (len(keys), *keys, *args)
        try:
            return await self._read_call(
                pack("FCALL_RO", library.functions[function], *tail), asking
            )
        except ResponseError as exc:
            if "Function not found" not in str(exc):
                raise
        text, sha = library.script(function)
        try:
            return await self._read_call(pack("EVALSHA_RO", sha, *tail), asking)
        except ResponseError as exc:
            if "NOSCRIPT" not in str(exc):
                raise
        return await self._read_call(pack("EVAL_RO", text, *tail), asking)

    async def _read_call(self, packed: bytes, asking: bool) -> Any:
        if not asking:
            return await self.call(packed)
        protocol = self._protocol or await self._connect()
        first = protocol.send(pack("ASKING"))
        future = protocol.send(packed)  # right behind it: nothing runs in between
        self._watch()
        for reply in (await first, await future):
            if isinstance(reply, ResponseError):
                raise reply
        return reply

    async def aclose(self) -> None:
        """Close the connection; requests still in flight fail."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        protocol = self._protocol
        if protocol is not None:
            protocol.fail(RedisConnectionError("the throttle was closed"))
            await protocol.closed

    # -- the connection ------------------------------------------------------------------------

    def _forget(self, protocol: _Protocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    async def _connect(self) -> _Protocol:
        if self._closed:
            raise RedisConnectionError("the throttle was closed")
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            connecting = self._connecting
            connecting.add_done_callback(lambda _: setattr(self, "_connecting", None))
        # Shielded: one caller's cancellation must not abort the connection the others wait for.
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Protocol:
        protocol = await self._dial(lambda: _Protocol(self._forget))
        if protocol.error is not None:  # lost as soon as made (a proxy with no server behind)
            raise protocol.error
        self._protocol = protocol
        if self._connected_before and self.on_reconnect is not None:
            self.on_reconnect()
        self._connected_before = True
        return protocol

    async def _dial(self, factory: Callable[[], _Protocol]) -> _Protocol:
        """A new connection, authenticated, on the right database, within the connect timeout."""
        try:
            return await asyncio.wait_for(self._dial_now(factory), self._connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise RedisConnectionError(f"could not connect to Redis: {exc!r}") from exc

    async def _dial_now(self, factory: Callable[[], _Protocol]) -> _Protocol:
        loop = asyncio.get_running_loop()
        settings = self._settings
        protocol: _Protocol
        if isinstance(settings, UnixDomainSocketConnection):
            _, protocol = await loop.create_unix_connection(factory, settings.path)
        elif isinstance(settings, Connection):
            host, port = settings.host, settings.port
            if self._sentinels is not None:
                # Asked of the sentinels at every connect: after a failover, the new master.
                host, port = await self._sentinels.get_master_address()  # type: ignore[no-untyped-call]
            ssl_context: ssl.SSLContext | None = None
            if isinstance(settings, (SSLConnection, SentinelManagedSSLConnection)):
                ssl_context = settings.ssl_context.get()
            _, protocol = await loop.create_connection(
                factory,
                host,
                port,
                ssl=ssl_context,
                server_hostname=host if ssl_context else None,
            )
        else:
            raise RedisConnectionError(f"unsupported connection class {type(settings).__name__}")
        await self._handshake(protocol)
        return protocol

    async def _handshake(self, protocol: _Protocol) -> None:
        """Authenticate, select the database and name the connection, as redis-py would."""
        settings = self._settings
        username, password = settings.username, settings.password
        provider = settings.credential_provider
        if provider is not None:
            credentials = await provider.get_credentials_async()
            username, password = (None, credentials[0]) if len(credentials) == 1 else credentials
        commands: list[tuple[str, tuple[Arg, ...]]] = []
        if password:
            commands.append(("AUTH", (username, password) if username else (password,)))
        if settings.db:
            commands.append(("SELECT", (settings.db,)))
        if settings.client_name:
            commands.append(("CLIENT SETNAME", (settings.client_name,)))
        futures = [protocol.send(pack(*name.split(), *args)) for name, args in commands]
        for (name, _), future in zip(commands, futures, strict=True):
            reply = await future
            if isinstance(reply, ResponseError):
                protocol.fail(RedisConnectionError(f"Redis refused {name}: {reply}"))
                raise protocol.error  # type: ignore[misc]

    def _watch(self) -> None:
        """Make sure a timer checks that the oldest request is answered within the timeout."""
        if self._watchdog is None and self._timeout is not None:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_at(loop.time() + self._timeout, self._check)

    def _check(self) -> None:
        self._watchdog = None
        protocol = self._protocol
        if protocol is None or not protocol.pending or self._timeout is None:
            return
        oldest = protocol.pending[0][1]
        late = time.monotonic() - oldest
        if late >= self._timeout:
            protocol.fail(RedisTimeoutError(f"Redis did not answer within {self._timeout:g} s"))
            return
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_at(loop.time() + self._timeout - late, self._check)
