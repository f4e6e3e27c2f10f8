"""``callthrottle status``: what every number, trunk, tenant and pool carries now (the
snapshot is gathered by ``_survey``; ``top`` refreshes it). Read only: it goes through an
:class:`~callthrottle._inspector.Inspector`, never a throttle, and writes nothing to the
backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import click

from .._errors import BackendUnavailable
from .._survey import Filters, Snapshot, collect
from ._common import Target, backend_options, console, run
from ._render import render

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("filter_options", "filters_from", "status")


F = TypeVar("F", bound="Callable[..., object]")


def _days(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """A whole number of days, 0 or more (click has read it as an integer)."""
    if value is not None and value < 0:
        raise click.BadParameter(f"{value} is not a whole number of days (0 or more)")
    return value


def filter_options(func: F) -> F:
    for option in reversed(
        [
            click.option(
                "--number",
                "numbers",
                multiple=True,
                metavar="NUMBER",
                help="Only this number (repeatable).",
            ),
            click.option("--match", metavar="GLOB", help="Only numbers matching, e.g. '+86571*'."),
            click.option("--pool", help="Only the numbers of this pool."),
            click.option("--busy", is_flag=True, help="Only numbers with calls up or waiting."),
            click.option(
                "--expiring-within",
                type=int,
                callback=_days,
                metavar="DAYS",
                help="Only numbers whose paid period ends within DAYS days (0: lapsed ones "
                "only), the lapsed included, whether dialled yet or not.",
            ),
            click.option("--holders", is_flag=True, help="List the live leases, by owner."),
        ]
    ):
        func = option(func)
    return func


def filters_from(target: Target, numbers: tuple[str, ...], **options: object) -> Filters:
    return Filters(
        numbers=tuple(target.number(n, "--number") for n in numbers),
        **options,  # type: ignore[arg-type]
    )


@click.command()
@backend_options
@filter_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def status(target: Target, numbers: tuple[str, ...], as_json: bool, **options: object) -> None:
    """Show every number (and trunk, tenant, pool): calls up against the cap, callers waiting
    (and the oldest one's wait), state (a cool-down's time left; expired or released once its
    paid period is over), when its paid period ends, and rate windows, with totals; with
    --holders, every lease by owner. Exits 1 when the backend is unreachable."""
    filters = filters_from(target, numbers, **options)

    async def once() -> Snapshot:
        try:
            async with target.inspector() as inspector:
                return await collect(inspector, target, filters)
        except BackendUnavailable as exc:
            raise click.ClickException(f"{target.shown_url} is unreachable: {exc}") from None

    snapshot = run(once)
    if as_json:
        click.echo(snapshot.to_json())
    else:
        console().print(render(snapshot))
