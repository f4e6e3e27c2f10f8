"""A TCP proxy between the throttle and Redis that can cut a connection mid-command."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class _Link:
    """One client connection through the proxy: whether the server's next answer is dropped."""

    __slots__ = ("cut",)

    def __init__(self) -> None:
        self.cut = False


class CuttingProxy:
    """Forwards bytes both ways.

    ``cut_next_reply()``: the next time the server answers, on any connection, the answer is
    dropped and the client's connection is closed (the command ran, the caller never hears of
    it: an ambiguous outcome).

    ``cut_reply_to(marker)``: the same, for the answer to the next command whose bytes contain
    ``marker`` (say a function's name): that command reaches the server and runs, the server
    answers, and the answer is dropped with the connection. ``sent[marker]`` counts the
    commands forwarded with ``marker`` in them, so a test can tell that the client sent its
    command again on a new connection.

    ``sever()``: every connection is closed and new ones are closed at once, until ``mend()``
    (a network cut).
    """

    def __init__(self, host: str, port: int, path: str = "") -> None:
        self._target = (host, port)
        self._path = path  # the URL's database part, kept in ``url``
        self._cut = False
        self._marker: bytes | None = None
        self.cuts = 0
        self.sent: Counter[bytes] = Counter()
        self._server: asyncio.Server | None = None
        self._severed = False
        self._links: set[asyncio.StreamWriter] = set()
        self.port = 0

    @classmethod
    def in_front_of(cls, redis_url: str) -> CuttingProxy:
        """A proxy to the server of ``redis_url``; once running, ``url`` reaches it through."""
        target = urlsplit(redis_url)
        return cls(target.hostname or "127.0.0.1", target.port or 6379, target.path)

    @property
    def url(self) -> str:
        """The server's URL through the proxy (once running)."""
        return f"redis://127.0.0.1:{self.port}{self._path}"

    def cut_next_reply(self) -> None:
        self._cut = True

    def cut_reply_to(self, marker: bytes) -> None:
        self._marker = marker
        self.sent[marker] = 0

    def sever(self) -> None:
        self._severed = True
        for writer in self._links:
            writer.transport.abort()

    def mend(self) -> None:
        self._severed = False

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        replies: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if replies and (self._cut or link.cut):
                    self._cut = link.cut = False
                    self.cuts += 1
                    writer.transport.abort()
                    return
                if not replies:
                    for marker in self.sent:
                        self.sent[marker] += data.count(marker)
                    if self._marker is not None and self._marker in data:
                        # Marked before the command is forwarded: whatever the server sends on
                        # this connection next is its answer (the tests send one at a time).
                        self._marker = None
                        link.cut = True
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._severed:
            client_w.transport.abort()
            return
        server_r, server_w = await asyncio.open_connection(*self._target)
        link = _Link()
        links = (client_w, server_w)
        self._links.update(links)
        try:
            await asyncio.gather(
                self._pipe(client_r, server_w, link, replies=False),
                self._pipe(server_r, client_w, link, replies=True),
            )
        finally:
            self._links.difference_update(links)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CuttingProxy]:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
