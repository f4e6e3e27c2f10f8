"""How ``status`` and ``top`` draw a snapshot. At any width, what an admin command takes (a
number, a lease's token, an owner, a pool) is printed whole, on one line, so that it can be
copied: those columns never wrap; the others (states and reasons, rate windows, ages) give way
first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import RenderableType

    from .._survey import NumberRow, OwnerRow, Snapshot

__all__ = ("render", "span")


def span(seconds: float) -> str:
    """A duration for a person: ``0.4 s``, ``42 s``, ``3 min 05 s``, ``2 h 04 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _load(in_use: int, cap: int) -> Text:
    style = "bold red" if in_use > cap else "yellow" if cap and in_use >= cap else "green"
    return Text(f"{in_use}/{cap}", style=style)


_STATE_STYLES = {"active": "green", "warming": "cyan", "cooling": "yellow"}


def _vital(table: Table, header: str, justify: str = "left") -> None:
    """A column an admin command takes values from: never wrapped nor cut (the others give
    way: rich shrinks wrappable columns first)."""
    table.add_column(header, no_wrap=True, justify=justify)  # type: ignore[arg-type]


def _other(table: Table, header: str, justify: str = "left") -> None:
    """A column that may wrap, then be cut with an ellipsis, at a narrow width."""
    table.add_column(header, overflow="ellipsis", justify=justify)  # type: ignore[arg-type]


def _state(row: NumberRow) -> Text:
    state = Text(row.state, style=_STATE_STYLES.get(row.state, "bold red"))
    if row.remaining is not None:
        state.append(f" {span(row.remaining)} left")
    # The calendar's reason names the dates the paid-period column shows: said once.
    if row.reason and not row.reason.startswith(f"paid until {row.paid_until}; "):
        state.append(f" ({row.reason})", style="dim")
    return state


def _term(row: NumberRow) -> Text:
    """When the number's paid period ends: red once lapsed, yellow inside its warning window."""
    if row.expires is None or row.days_left is None:
        return Text("-")
    style = "bold red" if row.days_left <= 0 else "yellow" if row.warning else ""
    return Text(row.expires, style=style)


def _numbers(snapshot: Snapshot) -> Table:
    table = Table(title=f"numbers on {snapshot.url}", title_justify="left", box=box.SIMPLE_HEAD)
    # The column of paid periods only when one is tracked: a policy without any reads as before.
    terms = any(row.expires is not None for row in snapshot.numbers)
    _vital(table, "number")
    _other(table, "state")
    if terms:
        _other(table, "paid period")
    _vital(table, "in use/cap")
    _other(table, "cap from")
    _vital(table, "waiting", "right")
    _other(table, "oldest wait")
    _other(table, "rate windows")
    for row in snapshot.numbers:
        rates = ", ".join(row.rates) or "-"
        if row.windows_from is not None and row.rates:
            rates += f" ({row.windows_from})"
        table.add_row(
            row.number,
            _state(row),
            *([_term(row)] if terms else []),
            _load(row.in_use, row.cap),
            row.cap_from,
            str(row.waiting),
            "-" if row.oldest_wait is None else span(row.oldest_wait),
            rates,
        )
    if not snapshot.numbers:
        table.caption = (
            "no numbers match the filters"
            if snapshot.filtered
            else "no numbers: none configured, and the backend holds no state"
        )
    return table


def _owner(owner: OwnerRow) -> Table:
    leases = _count(owner.leases, "lease")
    table = Table(title=Text.assemble((owner.owner, "bold"), f"  {leases}"), box=box.SIMPLE_HEAD)
    table.title_justify = "left"
    _vital(table, "number")
    _vital(table, "token")
    _other(table, "age", "right")
    _other(table, "expires in", "right")
    for lease in owner.holds:
        table.add_row(lease.number, lease.token, span(lease.age), span(lease.expires_in))
    return table


def _header(snapshot: Snapshot, stale: bool) -> Text:
    totals = snapshot.totals
    line = Text()
    if stale:
        line.append(f"last refreshed {snapshot.refreshed_time} (stale)", style="bold red")
    else:
        line.append(f"refreshed {snapshot.refreshed_time}", style="bold")
    line.append(
        f"   {_count(totals.numbers, 'number')}   {_count(totals.in_use, 'call')} up"
        f"   {totals.waiting} waiting"
    )
    return line


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def render(snapshot: Snapshot, *, stale: bool = False) -> RenderableType:
    """The snapshot as rich tables, under a line saying when it was read and its totals
    (``stale``: the backend could not be read since; the tables are dimmed)."""
    parts: list[RenderableType] = [
        _header(snapshot, stale),
        Text(snapshot.policy, style="dim"),
        _numbers(snapshot),
    ]
    if snapshot.owners is not None:
        parts.append(Text("holders by owner (release-owner OWNER ends them all)", style="bold"))
        parts.extend(_owner(owner) for owner in snapshot.owners)
        if not snapshot.owners:
            parts.append(Text("no live leases", style="dim"))
    if snapshot.groups:
        groups = Table(title="trunks and tenants", title_justify="left", box=box.SIMPLE_HEAD)
        _vital(groups, "group")
        _vital(groups, "in use/cap")
        _vital(groups, "waiting", "right")
        for group in snapshot.groups:
            groups.add_row(group.group, _load(group.in_use, group.cap), str(group.waiting))
        parts.append(groups)
    if snapshot.pools:
        pools = Table(title="pools", title_justify="left", box=box.SIMPLE_HEAD)
        _vital(pools, "pool")
        _other(pools, "where")
        _vital(pools, "numbers", "right")
        _vital(pools, "in use/caps")
        _vital(pools, "waiting", "right")
        for pool in snapshot.pools:
            where = "backend"
            if not pool.published:  # listed by the configuration only, or by nobody
                where = (
                    "configured only: not in the backend" if pool.members else "not in the backend"
                )
            pools.add_row(
                pool.pool,
                Text(where, style="" if pool.published else "dim"),
                str(pool.members),
                _load(pool.in_use, pool.cap),
                str(pool.waiting),
            )
        parts.append(pools)
    if stale:
        for part in parts[1:]:
            if isinstance(part, (Table, Text)):
                part.style = "dim"
    return Group(*parts)
