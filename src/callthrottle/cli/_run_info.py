"""What a report says about the run itself: when, on which backend (its password hidden), with
which callthrottle, options and configuration, so a report read later can be reproduced."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ("RunInfo",)


def _version() -> str:
    try:
        return version("callthrottle")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_shown(v) for v in value) or "-"
    return "-" if value is None else str(value)


@dataclass(frozen=True)
class RunInfo:
    """The run's metadata. ``options``: every option of the command, as it took effect (the
    backend URL already without its password); ``configuration``: the ``--config`` file's
    text, or None when the campaign ran without one."""

    date: str
    backend: str
    version: str
    options: tuple[tuple[str, str], ...]
    config_path: str | None = None
    configuration: str | None = None

    @classmethod
    def collect(
        cls, ctx: click.Context, backend: str, taken: Mapping[str, str] | None = None
    ) -> RunInfo:
        """From the running command's options (``backend``: the URL to show; ``taken``: the
        value an option took when it differs from what was given, such as the campaign's
        start when none was given: now)."""
        options = []
        for param in ctx.command.params:
            if isinstance(param, click.Option) and param.name is not None:
                value = ctx.params.get(param.name)
                if param.name == "url":
                    value = backend
                elif taken is not None and param.name in taken:
                    value = taken[param.name]
                options.append((param.opts[0], _shown(value)))
        path = ctx.params.get("config_path")
        text = Path(path).read_text(encoding="utf-8") if path is not None else None
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return cls(
            now, backend, _version(), tuple(options), None if path is None else str(path), text
        )

    def line(self) -> str:
        """One line for the top of the summary and of the charts."""
        return f"{self.date}, callthrottle {self.version}, backend {self.backend}"

    def command(self) -> str:
        """The options as one line, ``--name value`` each."""
        return " ".join(f"{name} {value}" for name, value in self.options if value != "-")
