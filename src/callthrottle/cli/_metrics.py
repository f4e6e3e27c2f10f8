"""``callthrottle metrics``: every process's calls, read from the backend, served to Prometheus.
Read only, like ``status``: an :class:`~callthrottle._inspector.Inspector`, never a throttle."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio
import click

from ._common import Target, backend_options, run

if TYPE_CHECKING:
    from ..prometheus import SharedStateCollector

__all__ = ("metrics",)


@click.command()
@backend_options
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=9108,
    show_default=True,
    help="Port to serve /metrics on.",
)
@click.option("--addr", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=5.0,
    show_default=True,
    help="Seconds between reads of the backend.",
)
@click.option(
    "--once",
    is_flag=True,
    help="Read once, print the metrics in Prometheus' text format and exit (status 1 if the "
    "read failed), e.g. for node_exporter's textfile collector.",
)
def metrics(target: Target, port: int, addr: str, interval: float, once: bool) -> None:
    """Serve what every process holds (per number: calls up, cap, callers waiting, state, days
    of its paid period left; per trunk, tenant and pool) as Prometheus metrics on
    http://ADDR:PORT/metrics, read from the backend every INTERVAL seconds until Ctrl-C. Never
    writes. While the backend cannot be read, the last values are served with
    callthrottle_shared_backend_up 0."""
    try:  # the prometheus extra: its own message names it
        from ..prometheus import SharedStateCollector
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    from prometheus_client import CollectorRegistry, generate_latest, start_http_server

    registry = CollectorRegistry()
    collector = SharedStateCollector(target.inspector(), registry=registry, own_inspector=True)
    if once:
        read = run(_read_once, collector)
        click.echo(generate_latest(registry).decode(), nl=False)
        if not read:
            raise SystemExit(1)
        return
    server, _ = start_http_server(port, addr, registry=registry)
    where = f"http://{addr}:{server.server_port}/metrics"
    click.echo(f"serving {where}, read from {target.shown_url} every {interval:g} s", err=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how an exporter ends
            run(_serve, collector, interval)
    finally:
        server.shutdown()
        server.server_close()


async def _read_once(collector: SharedStateCollector) -> bool:
    try:
        return await collector.refresh()
    finally:
        await collector.aclose()


async def _serve(collector: SharedStateCollector, interval: float) -> None:
    async with collector.running(interval):
        await anyio.sleep_forever()
