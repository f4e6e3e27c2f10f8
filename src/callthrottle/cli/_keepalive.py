"""``callthrottle keepalive``: keep a session's leases alive from a small process of its own."""

from __future__ import annotations

import time

import anyio
import click

from .._errors import BackendUnavailable
from ._common import Target, backend_options, run

__all__ = ("keepalive",)


@click.command()
@backend_options
@click.option("--session", required=True, help="The session to keep alive, e.g. kamailio@sbc-1.")
@click.option(
    "--ttl",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds the session lives after each keep-alive (the leases' TTL).",
)
@click.option("--once", is_flag=True, help="One keep-alive, then exit (for a host's own timer).")
def keepalive(target: Target, session: str, ttl: float, once: bool) -> None:
    """Keep SESSION's leases alive: one keep-alive every TTL/3 seconds until stopped.

    While this runs, every lease taken for the session (by any process) stays counted; when it
    stops, they lapse within TTL seconds. A keep-alive that fails is reported and tried again
    at the next tick; the session lapses only if none succeeds for TTL seconds."""

    async def act() -> None:
        async with target.throttle(session=session, keepalive=False, lease_ttl=ttl) as throttle:
            while True:
                try:
                    await throttle.keepalive()
                    click.echo(f"{time.strftime('%H:%M:%S')} {session}: kept alive for {ttl:g} s")
                except BackendUnavailable as exc:
                    if once:
                        raise
                    click.echo(f"{time.strftime('%H:%M:%S')} {session}: failed ({exc})", err=True)
                if once:
                    return
                await anyio.sleep(ttl / 3)

    run(act)
