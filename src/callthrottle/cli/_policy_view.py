"""What ``callthrottle policy show`` and ``history`` print: a published version's header, its
content as tables (profiles, numbers and where each one's cap comes from, trunks and tenants,
pools, feedback), and the same as JSON."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.table import Table

from .._policy_doc import config_to_dict

if TYPE_CHECKING:
    from rich.console import RenderableType

    from .._config import Config
    from .._publishing import PublishedPolicy
    from .._rates import Window

__all__ = ("as_json", "diff_line", "header", "history_table", "summary")


def local_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")


def header(policy: PublishedPolicy) -> str:
    comment = f": {policy.comment}" if policy.comment else ""
    return (
        f"version {policy.version} ({policy.digest[:12]}), published {local_time(policy.published_at)}"
        f" by {policy.by}{comment}"
    )


def as_json(policy: PublishedPolicy, **extra: object) -> dict[str, Any]:
    return {
        "version": policy.version,
        "digest": policy.digest,
        "published_at": policy.published_at,
        "by": policy.by,
        "comment": policy.comment,
        **extra,
    }


def show_json(policy: PublishedPolicy | None) -> str:
    if policy is None:
        return "null"
    shown = as_json(
        policy, default_limit=policy.default_limit, config=config_to_dict(policy.config)
    )
    return json.dumps(shown, indent=2)


def diff_line(line: str) -> str:
    """A line of ``differences()``, colored as ``diff`` does (when the output is a terminal)."""
    color = {"+": "green", "-": "red"}.get(line[:1], "yellow")
    return click.style(line, fg=color)


def _table(title: str, *columns: str) -> Table:
    """A table without vertical lines: each row reads (and greps) as one line of words."""
    return Table(
        *columns, title=title or None, title_justify="left", box=box.SIMPLE, show_edge=False
    )


def _windows(windows: tuple[Window, ...] | None) -> str:
    return ";".join(w.written for w in windows) if windows else ""


def _cap_source(config: Config, number: str) -> str:
    """Where the number's cap comes from: its own, its profile's, or the default limit."""
    settings = config.numbers.get(number)
    if settings is not None and settings.cap is not None:
        return "number"
    name = (settings.profile if settings is not None else None) or config.default_profile
    return f"profile {name}" if name in config.profiles else "default_limit"


def summary(policy: PublishedPolicy) -> list[RenderableType]:
    """The policy's content, one table per part it has."""
    config = policy.config
    out: list[RenderableType] = [
        f"default limit (a number no profile or cap covers): {policy.default_limit}"
    ]
    if config.profiles:
        table = _table("profiles", "profile", "cap", "rates", "daily reset", "warm-up")
        for name, profile in config.profiles.items():
            default = " (default)" if name == config.default_profile else ""
            warmup = ", ".join(map(str, profile.warmup))
            table.add_row(
                name + default,
                str(profile.cap),
                _windows(profile.rates),
                profile.daily_reset,
                warmup,
            )
        out.append(table)
    pooled = [n for pool in config.pools.values() for n in pool.numbers]
    numbers = sorted(set(config.numbers) | set(pooled))
    if numbers:
        table = _table("numbers", "number", "cap", "from", "rates", "trunk", "tenant")
        for number in numbers:
            settings = config.numbers.get(number)
            table.add_row(
                number,
                str(config.cap_for(number, policy.default_limit)),
                _cap_source(config, number),
                _windows(config.windows_for(number)),
                (settings.trunk if settings is not None else None) or "",
                (settings.tenant if settings is not None else None) or config.default_tenant or "",
            )
        out.append(table)
    groups = [("trunk", config.trunks), ("tenant", config.tenants)]
    if config.trunks or config.tenants:
        table = _table("trunks and tenants", "kind", "name", "cap", "reserve", "rates")
        for kind, named in groups:
            for name, group in named.items():
                cap = "" if group.cap is None else str(group.cap)
                table.add_row(kind, name, cap, str(group.reserve), _windows(group.windows))
        out.append(table)
    if config.pools:
        table = _table("pools", "pool", "strategy", "numbers", "fallback")
        for name, pool in config.pools.items():
            table.add_row(name, pool.strategy, " ".join(pool.numbers), pool.fallback or "")
        out.append(table)
    if config.feedback:
        table = _table("feedback", "code", "action", "details")
        for code, reaction in config.feedback.items():
            details = [
                f"{key} {value}"
                for key in ("seconds", "cap", "factor", "reason")
                if (value := getattr(reaction, key)) is not None
            ]
            table.add_row(code, reaction.action, ", ".join(details))
        out.append(table)
    return out


def history_table(current: PublishedPolicy, replaced: list[PublishedPolicy]) -> Table:
    table = _table("", "version", "", "when", "by", "digest", "comment")
    for policy in (current, *replaced):
        mark = "in force" if policy is current else ""
        table.add_row(
            str(policy.version),
            mark,
            local_time(policy.published_at),
            policy.by,
            policy.digest[:12],
            policy.comment,
        )
    return table
