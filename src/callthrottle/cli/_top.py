"""``callthrottle top``: the status tables, refreshed until Ctrl-C (exit status 130).

An outage of the backend does not end it: the last view stays, marked stale, under a line
saying since when the backend is unreachable, and every interval it connects anew; once the
backend answers, the view is live again. Read only, as ``status``."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from typing import TYPE_CHECKING

import anyio
import click
from rich.console import Group
from rich.live import Live
from rich.text import Text

from .._errors import BackendUnavailable, ThrottleError
from .._survey import collect
from ._common import Target, backend_options, console, run
from ._render import render, span
from ._status import filter_options, filters_from

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import Console, RenderableType

    from .._inspector import Inspector
    from .._survey import Filters, Snapshot

__all__ = ("top",)

#: The exit status of a command ended by Ctrl-C (SIGINT), as shells report it.
INTERRUPTED = 130


class _View:
    """What ``top`` knows: the last snapshot read, and since when the backend is unreachable."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last: Snapshot | None = None
        self.down_since: dt.datetime | None = None
        self._down_at = 0.0  # monotonic, for the outage's length
        self.error = ""

    def read(self, snapshot: Snapshot) -> float | None:
        """Keep the snapshot; return how long the outage it ends lasted (None: there was
        none)."""
        lasted = None if self.down_since is None else time.monotonic() - self._down_at
        self.last, self.down_since = snapshot, None
        return lasted

    def lost(self, error: BaseException) -> None:
        if self.down_since is None:
            self.down_since = dt.datetime.now().astimezone()
            self._down_at = time.monotonic()
        self.error = str(error)

    def outage(self) -> Text:
        """The line saying the backend is unreachable (only while it is)."""
        assert self.down_since is not None
        since = self.down_since.strftime("%H:%M:%S")
        lasted = span(time.monotonic() - self._down_at)
        shown = "no view yet" if self.last is None else "the view below is stale"
        return Text.assemble(
            (f"backend unreachable since {since} ({lasted})", "bold red"),
            f": {self.error}\nretrying every {self.interval:g} s; {shown}",
        )

    def frame(self) -> RenderableType:
        if self.down_since is None:
            assert self.last is not None
            return render(self.last)
        if self.last is None:
            return self.outage()
        return Group(self.outage(), render(self.last, stale=True))


class _Connection:
    """An inspector opened when needed, and dropped when the backend fails (the next read
    connects anew: a restarted server, or one that was down when ``top`` started)."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._inspector: Inspector | None = None

    async def read(self, filters: Filters) -> Snapshot:
        try:
            if self._inspector is None:
                inspector = self._target.inspector()
                self._inspector = inspector
                await inspector.__aenter__()
            return await collect(self._inspector, self._target, filters)
        except BackendUnavailable:
            await self.close()
            raise

    async def close(self) -> None:
        inspector, self._inspector = self._inspector, None
        if inspector is not None:
            with contextlib.suppress(ThrottleError):  # a broken connection fails to close too
                await inspector.__aexit__(None, None, None)


@contextlib.contextmanager
def _screen(out: Console) -> Iterator[Live | None]:
    """A live region on a terminal; None elsewhere (a pipe, a log: each view is printed)."""
    if not out.is_terminal:
        yield None
        return
    with Live(console=out, auto_refresh=False) as live:
        yield live


async def _watch(
    target: Target, filters: Filters, interval: float, iterations: int | None, out: Console
) -> None:
    view = _View(interval)
    connection = _Connection(target)
    count = 0
    try:
        with _screen(out) as live:
            while True:
                was_down, outage = view.down_since is not None, None
                try:
                    outage = view.read(await connection.read(filters))
                except BackendUnavailable as exc:
                    view.lost(exc)
                if live is not None:
                    live.update(view.frame(), refresh=True)
                elif view.down_since is None:
                    if outage is not None:
                        out.print(f"backend reachable again, after {span(outage)}", style="green")
                    out.print(view.frame())
                elif not was_down:  # printed once an outage begins, not at every retry
                    out.print(view.outage())
                count += 1
                if iterations is not None and count >= iterations:
                    return
                await anyio.sleep(interval)
    finally:
        with anyio.CancelScope(shield=True):
            await connection.close()


@click.command()
@backend_options
@filter_options
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes (and between attempts to reach the backend).",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    help="Stop after this many refreshes (default: until Ctrl-C).",
)
def top(
    target: Target,
    numbers: tuple[str, ...],
    interval: float,
    iterations: int | None,
    **options: object,
) -> None:
    """The status tables, refreshed live until Ctrl-C (exit status 130). When the backend
    becomes unreachable the last view stays, marked stale, with since when, and top keeps
    trying to reach it every interval."""
    filters = filters_from(target, numbers, **options)
    try:
        run(_watch, target, filters, interval, iterations, console())
    except KeyboardInterrupt:  # Ctrl-C is how a live view ends
        raise click.exceptions.Exit(INTERRUPTED) from None
