"""Admin actions for when a switch crashed: ``reset``, ``release``, ``release-owner``,
``set-state``, and ``lift-fence`` for a server known to have lost no call. Each checks its input before anything is written, asks for confirmation
(``--yes`` skips it), and writes one audit line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import click

from .._health import NumberState
from .._models import Lease
from ..backends.redis import RedisBackend
from ._common import Target, audit, backend_options, run, usage_error

if TYPE_CHECKING:
    from .._models import Holder
    from .._throttle import Throttle

__all__ = ("lift_fence", "release", "release_owner", "reset", "set_state")

_yes = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


async def _confirm(question: str, yes: bool) -> None:
    """Ask on the terminal (in a worker thread: the throttle keeps running); abort on no."""
    if not yes:
        await anyio.to_thread.run_sync(lambda: click.confirm(question, abort=True))


def _leases(holders: list[Holder]) -> str:
    return ", ".join(f"{h.token} ({h.owner})" for h in holders) or "none"


@click.command()
@backend_options
@click.argument("number")
@_yes
def reset(target: Target, number: str, yes: bool) -> None:
    """Drop every lease and place in line of NUMBER (its calls are known to be down).

    Holders are told their lease was released; waiters ask again at once. The number's state,
    caps and rate windows set at run time stay."""
    number = target.number(number)

    async def act() -> tuple[int, int]:
        async with target.throttle() as throttle:
            holders = await throttle.holders(number)
            waiting = (await throttle.usage(number)).waiting
            await _confirm(
                f"Reset {number}: drop {len(holders)} lease(s) [{_leases(holders)}] and wake "
                f"{waiting} waiter(s)?",
                yes,
            )
            return await throttle.reset(number)

    held, woken = run(act)
    result = f"{held} lease(s) dropped, {woken} waiter(s) woken"
    audit("reset", target, result, number=number)
    click.echo(f"{number}: {result}")


async def _find_token(throttle: Throttle, target: Target, token: str) -> str:
    numbers = set(target.config.numbers) | set(await throttle.known_numbers())
    found = [n for n in sorted(numbers) if any(h.token == token for h in await throttle.holders(n))]
    if not found:
        raise usage_error(f"no live lease with token {token!r} on any number")
    if len(found) > 1:
        raise usage_error(
            f"token {token!r} holds a lease on several numbers ({', '.join(found)}): "
            "name the number too"
        )
    return found[0]


@click.command()
@backend_options
@click.argument("args", nargs=-1, metavar="[NUMBER] TOKEN")
@_yes
def release(target: Target, args: tuple[str, ...], yes: bool) -> None:
    """Release the lease TOKEN (on NUMBER; without NUMBER, on the one number where TOKEN
    holds a lease). Its owner learns that it was released."""
    if len(args) not in (1, 2):
        raise usage_error(f"expected [NUMBER] TOKEN, got {len(args)} argument(s)")
    token = args[-1]
    number = target.number(args[0]) if len(args) == 2 else None

    async def act() -> tuple[str, Holder, bool]:
        async with target.throttle() as throttle:
            where = number if number is not None else await _find_token(throttle, target, token)
            holder = next((h for h in await throttle.holders(where) if h.token == token), None)
            if holder is None:
                raise usage_error(f"no live lease with token {token!r} on number {where}")
            await _confirm(f"Release {token} on {where} (owner {holder.owner})?", yes)
            return where, holder, await throttle.release(Lease(where, token))

    where, holder, released = run(act)
    result = "released" if released else "already gone"
    audit("release", target, result, number=where, token=token, owner=holder.owner)
    click.echo(f"{where} {token}: {result}")


@click.command("release-owner")
@backend_options
@click.argument("owner")
@_yes
def release_owner(target: Target, owner: str, yes: bool) -> None:
    """Release every lease and place in line of OWNER (a dead throttle's owner_id, as
    `status --holders` shows it), on every number."""

    async def act() -> int:
        async with target.throttle() as throttle:
            numbers = set(target.config.numbers) | set(await throttle.known_numbers())
            held = [
                h for n in sorted(numbers) for h in await throttle.holders(n) if h.owner == owner
            ]
            if not held:
                raise usage_error(f"owner {owner!r} holds no live lease on any number")
            where = sorted({h.number for h in held})
            await _confirm(
                f"Release the {len(held)} lease(s) of {owner} on {', '.join(where)}, and its "
                "places in line?",
                yes,
            )
            return await throttle.release_owner(owner)

    removed = run(act)
    result = f"{removed} lease(s) and place(s) in line released"
    audit("release-owner", target, result, owner=owner)
    click.echo(f"{owner}: {result}")


@click.command("set-state")
@backend_options
@click.argument("number")
@click.argument("state", type=click.Choice([s.value for s in NumberState]))
@click.option("--reason", help="Why (shown by status, and to refused callers).")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds of cool-down (required for cooling, refused otherwise).",
)
@_yes
def set_state(
    target: Target,
    number: str,
    state: str,
    reason: str | None,
    duration: float | None,
    yes: bool,
) -> None:
    """Set NUMBER's health state, for every process at once: active and warming numbers admit
    calls; cooling (for --duration seconds), flagged, disabled, expired and released ones do
    not."""
    number = target.number(number)
    if (state == NumberState.COOLING.value) != (duration is not None):
        raise click.BadParameter(
            "required for cooling" if duration is None else f"only for cooling, not {state}",
            param_hint="--duration",
        )

    async def act() -> str:
        async with target.throttle() as throttle:
            before = (await throttle.status(number)).state.value
            await _confirm(f"Set {number} from {before} to {state}?", yes)
            await throttle.set_state(number, state, reason=reason, duration=duration)
            return before

    before = run(act)
    result = f"{before} -> {state}"
    audit("set-state", target, result, number=number, state=state, reason=reason or "")
    click.echo(f"{number}: {result}")


@click.command("lift-fence")
@backend_options
@_yes
def lift_fence(target: Target, yes: bool) -> None:
    """Admit new calls at once on a Redis server that may have lost its data (a restart,
    failover or flush), instead of waiting a lease TTL for the holders of calls still up to
    count them again. Only when no such call can be up (a new deployment): otherwise the
    fence ends by itself."""

    async def act() -> None:
        async with target.throttle() as throttle:
            if not isinstance(throttle.backend, RedisBackend):
                raise usage_error(f"{target.url} has no fence to lift: it needs a Redis URL")
            await _confirm(
                "Admit new calls at once, although calls still up may not have been counted "
                "again yet?",
                yes,
            )
            await throttle.backend.lift_fence()

    run(act)
    result = "fence lifted: new calls are admitted at once"
    audit("lift-fence", target, result)
    click.echo(result)
