"""What every subcommand shares: where the backend is, running async code, errors, the audit
log."""

from __future__ import annotations

import functools
import getpass
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import click
from rich.console import Console

from .._config import Config
from .._errors import InvalidArgument, ThrottleError
from .._inspector import Inspector
from .._numbers import normalize_number
from .._throttle import Throttle

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ("Target", "audit", "backend_options", "console", "run", "usage_error")

T = TypeVar("T")

#: One line per admin action: who (OS user, host), what, on which backend, and the result.
audit_logger = logging.getLogger("callthrottle.audit")


@dataclass(frozen=True)
class Target:
    """The backend and configuration a command works on."""

    url: str
    config: Config
    prefix: str | None = None
    region: str | None = None

    def throttle(self, **options: Any) -> Throttle:
        if self.prefix is not None:
            options["key_prefix"] = self.prefix
        return Throttle.from_url(
            self.url, config=self.config, default_region=self.region, **options
        )

    def inspector(self) -> Inspector:
        """A read-only view of the backend (``status``, ``top``): no throttle is opened."""
        options: dict[str, Any] = {}
        if self.prefix is not None:
            options["key_prefix"] = self.prefix
        return Inspector.from_url(
            self.url, config=self.config, default_region=self.region, **options
        )

    def number(self, text: str, what: str = "NUMBER") -> str:
        """The E.164 form of a number given on the command line, or a usage error (status 2)."""
        try:
            return normalize_number(text, self.region or self.config.default_region)
        except InvalidArgument as exc:
            raise click.BadParameter(str(exc), param_hint=what) from None

    @property
    def shown_url(self) -> str:
        """The URL without its password."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))


def backend_options(func: Callable[..., T]) -> Callable[..., T]:
    """``--url``, ``--config``, ``--prefix``, ``--region``, handed to the command as ``target``."""

    @click.option(
        "--url",
        envvar="CALLTHROTTLE_URL",
        default="memory://",
        show_default=True,
        help="Backend URL (env CALLTHROTTLE_URL): memory://, redis://host:6379/0, ...",
    )
    @click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="TOML file of carrier profiles, numbers, trunks, tenants and pools.",
    )
    @click.option("--prefix", help="Redis key prefix (default: callthrottle:).")
    @click.option("--region", help="Region of national numbers, e.g. CN (default: the config's).")
    @functools.wraps(func)
    def wrapper(
        *, url: str, config_path: Path | None, prefix: str | None, region: str | None, **kw: Any
    ) -> T:
        try:
            config = Config() if config_path is None else Config.from_toml(config_path)
        except ThrottleError as exc:
            raise click.BadParameter(str(exc), param_hint="--config") from None
        return func(target=Target(url, config, prefix, region), **kw)

    return wrapper


def run(func: Callable[..., Awaitable[T]], *args: object) -> T:
    """Run ``func(*args)`` on asyncio; the library's errors become the command's: bad input
    exits with status 2, anything else (an unreachable backend, ...) with 1."""
    try:
        return anyio.run(func, *args)
    except InvalidArgument as exc:
        raise usage_error(str(exc)) from None
    except ThrottleError as exc:
        raise click.ClickException(str(exc)) from None


def usage_error(message: str) -> click.UsageError:
    return click.UsageError(message)


def console(*, stderr: bool = False) -> Console:
    """A rich console on the current stdout (or stderr), at least 140 columns wide when not a
    terminal, so tables are not squeezed in pipes and logs."""
    out = Console(stderr=stderr)
    if not out.is_terminal:
        out = Console(stderr=stderr, width=max(out.width, 140))
    return out


def audit(action: str, target: Target, result: str, **details: object) -> None:
    """Log one line about an admin action to ``callthrottle.audit``, and print it on stderr."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    fields = {"user": user, "host": socket.gethostname(), "action": action, **details}
    fields["url"] = target.shown_url
    if target.prefix is not None:
        fields["prefix"] = target.prefix
    fields["result"] = result
    line = " ".join(f"{key}={_quoted(value)}" for key, value in fields.items())
    audit_logger.info(line, extra={"audit": fields})
    click.echo(f"audit: {line}", err=True)


def _quoted(value: object) -> str:
    text = str(value)
    return f'"{text}"' if not text or any(c.isspace() or c == '"' for c in text) else text
