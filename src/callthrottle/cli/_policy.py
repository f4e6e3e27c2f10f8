"""``callthrottle policy``: the carrier policy published to the backend for every process.

``show``, ``diff`` and ``history`` only read (the published document and the versions it
replaced): no throttle is opened, nothing is written. ``apply`` and ``restore`` show what
changes, ask (``--yes`` skips it), and publish on top of the version they compared with: if
another was published meanwhile, nothing is written (:class:`PolicyConflict`).
"""

from __future__ import annotations

import json
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from .._config import Config
from .._errors import BackendUnavailable, ThrottleError
from .._policy_doc import PolicyDocument, differences
from .._policy_source import same_layout
from .._publishing import PublishedPolicy, check_comment, finish, read_published, write
from .._url import backend_from_url
from .._validate import check_limit
from ..backends._base import POLICY_HISTORY
from ._common import Target, audit, console, run, usage_error
from ._policy_view import as_json, diff_line, header, history_table, show_json, summary

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from ..backends import Backend

__all__ = ("policy",)

NOTHING = "no policy is published"


def _backend_options(func: Callable[..., None]) -> Callable[..., None]:
    """``--url`` and ``--prefix`` (the policy is the same whatever ``--config`` says)."""
    func = click.option("--prefix", help="Redis key prefix (default: callthrottle:).")(func)
    return click.option(
        "--url",
        envvar="CALLTHROTTLE_URL",
        default="memory://",
        show_default=True,
        help="Backend URL (env CALLTHROTTLE_URL): redis://host:6379/0, ...",
    )(func)


def _target(url: str, prefix: str | None) -> Target:
    return Target(url, Config(), prefix)


@asynccontextmanager
async def _opened(target: Target) -> AsyncIterator[Backend]:
    """The backend, connected (nothing is written by connecting); exit 1 naming the URL when
    it is unreachable."""
    options: dict[str, Any] = {} if target.prefix is None else {"key_prefix": target.prefix}
    backend = backend_from_url(target.url, options)
    try:
        await backend.open()
        yield backend
    except BackendUnavailable as exc:
        raise click.ClickException(f"{target.shown_url} is unreachable: {exc}") from None
    finally:
        await backend.aclose()


async def _in_force(backend: Backend) -> PublishedPolicy | None:
    published = await backend.published_policy()
    return None if published is None else read_published(published)


def _document(path: Path, default_limit: int) -> PolicyDocument:
    """The policy of a TOML file, or a usage error (status 2) naming what is wrong."""
    try:
        return PolicyDocument.of(
            Config.from_toml(path), check_limit(default_limit, "default_limit")
        )
    except ThrottleError as exc:
        raise click.BadParameter(str(exc), param_hint="FILE") from None


def _print_diff(current: PublishedPolicy | None, document: PolicyDocument) -> list[str]:
    lines = differences(None if current is None else current.document, document)
    if current is None:
        click.echo(f"{NOTHING}; {document.short} would be version 1:")
    else:
        click.echo(f"from version {current.version} ({current.digest[:12]}) to {document.short}:")
    for line in lines:
        click.echo(diff_line(line))
    return lines


_file = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
_default_limit = click.option(
    "--default-limit",
    type=int,
    default=20,
    show_default=True,
    help="The cap of a number the file gives none (the throttles' default_limit).",
)


@click.group()
def policy() -> None:
    """The carrier policy (caps, windows, trunks, tenants, pools, feedback) published to the
    backend as one versioned document, which every throttle uses: show it, compare a file with
    it, publish one, list and restore earlier versions."""


@policy.command()
@_backend_options
@click.option("--json", "as_json_", is_flag=True, help="Print JSON (null: none is published).")
def show(url: str, prefix: str | None, as_json_: bool) -> None:
    """Show the policy in force: its version, digest, when (local time), by whom and why, and
    what it says. Never writes."""
    target = _target(url, prefix)

    async def read() -> PublishedPolicy | None:
        async with _opened(target) as backend:
            return await _in_force(backend)

    current = run(read)
    if as_json_:
        click.echo(show_json(current))
    elif current is None:
        click.echo(NOTHING)
    else:
        out = console()
        out.print(header(current), highlight=False)
        for part in summary(current):
            out.print(part)


@policy.command()
@_backend_options
@_file
@_default_limit
def diff(url: str, prefix: str | None, file: Path, default_limit: int) -> None:
    """Show how FILE (a TOML configuration) differs from the policy in force, a setting a line
    (+ added, - removed, ~ changed). Exits 0 if they are the same, 1 if they differ, 2 if FILE
    is not a valid configuration. Never writes."""
    document = _document(file, default_limit)
    target = _target(url, prefix)

    async def read() -> PublishedPolicy | None:
        async with _opened(target) as backend:
            return await _in_force(backend)

    current = run(read)
    if current is not None and current.digest == document.digest:
        click.echo(f"identical to version {current.version} ({document.short})")
        return
    _print_diff(current, document)
    click.get_current_context().exit(1)  # as diff(1): they differ


async def _confirm(question: str, yes: bool) -> None:
    if not yes:
        await anyio.to_thread.run_sync(lambda: click.confirm(question, abort=True))


def _need_terminal(yes: bool) -> None:
    """Without --yes, the question needs someone at a terminal to answer it."""
    if not yes and not (sys.stdin is not None and sys.stdin.isatty()):
        raise usage_error("stdin is not a terminal to confirm on: pass --yes to publish")


async def _publish(
    backend: Backend,
    current: PublishedPolicy | None,
    document: PolicyDocument,
    *,
    comment: str,
    yes: bool,
    moves_numbers: bool,
    action: str,
    target: Target,
    **details: object,
) -> PublishedPolicy | None:
    """Show the change from ``current`` (None: none published), ask, publish on top of it.
    None: ``document`` is the policy in force already (what follows its document is written
    again: an ``apply`` cut off half-way, run again, finishes)."""
    if current is not None and current.digest == document.digest:
        backend.use_layout(document.config)
        previous = await backend.policy_history(1)
        await finish(backend, current, read_published(previous[0]).document if previous else None)
        return None
    _print_diff(current, document)
    if current is not None and not same_layout(
        current.config, document.config, pools=backend.pools_place_numbers
    ):
        click.secho(
            "WARNING: this policy moves numbers to another tenant, trunk or first pool (or "
            "turns callee windows on or off), which moves their keys: every running throttle "
            "will refuse calls (PolicyMismatch) until it is reopened.",
            fg="red",
            bold=True,
            err=True,
        )
        if not moves_numbers:
            raise usage_error("pass --moves-numbers to publish it anyway")
    expected = 0 if current is None else current.version
    await _confirm(f"Publish this policy as version {expected + 1}?", yes)
    backend.use_layout(document.config)  # its pools are written where it puts their numbers
    published = await write(backend, document, expected=expected, comment=comment)
    # In force from here on: said in the audit log, whatever fails next.
    _report(action, target, published, **details)
    try:
        return await finish(backend, published, None if current is None else current.document)
    except ThrottleError as exc:
        raise click.ClickException(
            f"version {published.version} is in force, but its pools or stamps were not all "
            f"written ({exc}): run the same command again to finish"
        ) from None


def _report(
    action: str, target: Target, published: PublishedPolicy | None, **details: object
) -> None:
    if published is None:
        return
    result = f"version {published.version} published"
    audit(
        action, target, result, digest=published.digest[:12], comment=published.comment, **details
    )
    click.echo(f"{result} ({published.digest[:12]})")


_yes = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
_moves = click.option(
    "--moves-numbers",
    is_flag=True,
    help="Publish even if numbers change tenant, trunk or first pool (reopen the throttles).",
)


@policy.command()
@_backend_options
@_file
@_default_limit
@click.option("--comment", default="", help="Why (one line, kept with the version).")
@_yes
@_moves
def apply(
    url: str,
    prefix: str | None,
    file: Path,
    default_limit: int,
    comment: str,
    yes: bool,
    moves_numbers: bool,
) -> None:
    """Publish FILE (a TOML configuration) as the next version of the policy, for every
    process: shows the differences with the version in force, asks, then publishes on top of
    that version (if another was published meanwhile, nothing is written: exit 1)."""
    document = _document(file, default_limit)
    target = _target(url, prefix)
    _check_comment(comment)
    _need_terminal(yes)

    async def act() -> PublishedPolicy | None:
        async with _opened(target) as backend:
            current = await _in_force(backend)
            published = await _publish(
                backend,
                current,
                document,
                comment=comment,
                yes=yes,
                moves_numbers=moves_numbers,
                action="policy-apply",
                target=target,
                file=file,
            )
            if published is None:
                click.echo(
                    f"nothing to change: version {current.version if current else 0} is this "
                    "policy (its pools and stamps were written again)"
                )
            return published

    run(act)


def _check_comment(comment: str) -> None:
    try:
        check_comment(comment)
    except ThrottleError as exc:
        raise click.BadParameter(str(exc), param_hint="--comment") from None


@policy.command()
@_backend_options
@click.option("--count", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many of the versions replaced to list.")  # fmt: skip
@click.option("--json", "as_json_", is_flag=True, help="Print JSON instead of a table.")
def history(url: str, prefix: str | None, count: int, as_json_: bool) -> None:
    """List the version in force and the versions it replaced, newest first (the backend
    keeps the last 50). Never writes."""
    target = _target(url, prefix)

    async def read() -> tuple[PublishedPolicy | None, list[PublishedPolicy]]:
        async with _opened(target) as backend:
            current = await _in_force(backend)
            replaced = await backend.policy_history(count) if current is not None else []
            return current, [read_published(p) for p in replaced]

    current, replaced = run(read)
    if as_json_:
        listed = [] if current is None else [current, *replaced]
        click.echo(json.dumps([as_json(p, in_force=p is current) for p in listed], indent=2))
    elif current is None:
        click.echo(NOTHING)
    else:
        console().print(history_table(current, replaced))


@policy.command()
@_backend_options
@click.argument("version", type=click.IntRange(min=1))
@click.option("--comment", help="Why (default: 'restore of version VERSION').")
@_yes
@_moves
def restore(
    url: str, prefix: str | None, version: int, comment: str | None, yes: bool, moves_numbers: bool
) -> None:
    """Publish an earlier VERSION of the policy again, as the next version (same questions as
    apply)."""
    target = _target(url, prefix)
    comment = f"restore of version {version}" if comment is None else comment
    _check_comment(comment)
    _need_terminal(yes)

    async def act() -> PublishedPolicy | None:
        async with _opened(target) as backend:
            current = await _in_force(backend)
            kept = [] if current is None else [current]
            kept += [read_published(p) for p in await backend.policy_history(POLICY_HISTORY)]
            old = next((p for p in kept if p.version == version), None)
            if old is None:
                versions = ", ".join(str(p.version) for p in kept) or "none"
                raise usage_error(
                    f"version {version} is not kept on the backend (kept: {versions})"
                )
            published = await _publish(
                backend,
                current,
                old.document,
                comment=comment,
                yes=yes,
                moves_numbers=moves_numbers,
                action="policy-restore",
                target=target,
                restored=version,
            )
            if published is None and current is not None:
                click.echo(
                    f"nothing to change: the policy of version {version} is in force "
                    f"(version {current.version})"
                )
            return published

    run(act)
