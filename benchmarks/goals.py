"""The round's goals, each read from the sections of one ``suite.py`` run against its reference
in the same run: the summary table at the top of ``results.md`` (and ``goals`` in
``results.json``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from suite import Row, Section

#: The server's work per decision before this round, the reference of the "halved" goals:
#: issue 19's figures, measured on the code at commit 2712ea6 (the README's performance section
#: then) by suite.py's round-trips section (time inside Redis per acquire ~30 µs, per release
#: ~13.5 µs: `INFO commandstats`, 20 acquires held, then their releases) and by the
#: server-work section of capacity.py (commands run inside the functions: 11 per acquire,
#: 7 per release).
BEFORE_ACQUIRE_USEC = 30.0
BEFORE_RELEASE_USEC = 13.5
BEFORE_ACQUIRE_COMMANDS = 11.0
BEFORE_RELEASE_COMMANDS = 7.0


@dataclass
class Goal:
    """One goal: ``figure`` against ``reference``; ``ratio`` is figure / reference, met when it
    is at most ``bound`` (``at_least``: at least ``bound``). ``bound`` None: a figure reported,
    no goal set on it."""

    name: str
    figure: str
    reference: str
    ratio: float | None
    bound: float | None
    at_least: bool = False

    @property
    def met(self) -> bool | None:
        if self.bound is None or self.ratio is None or math.isnan(self.ratio):
            return None
        return self.ratio >= self.bound if self.at_least else self.ratio <= self.bound


def _row(sections: dict[str, Section], key: str, start: str) -> Row | None:
    section = sections.get(key)
    if section is None:
        return None
    return next((row for row in section.rows if row.label.startswith(start)), None)


def _floor(sections: dict[str, Section], key: str) -> Row | None:
    section = sections.get(key)
    return next((row for row in section.rows if row.floor), None) if section else None


def _latency(
    sections: dict[str, Section], name: str, key: str, label: str, bound: float
) -> Goal | None:
    row, floor = _row(sections, key, label), _floor(sections, key)
    if row is None or floor is None or row.p50_us is None or floor.p50_us is None:
        return None
    return Goal(
        name,
        f"{row.label}: p50 {row.p50_us:,.1f} µs",
        f"{floor.label.removeprefix('floor: ')}: p50 {floor.p50_us:,.1f} µs",
        row.p50_us / floor.p50_us,
        bound,
    )


def _halved(
    sections: dict[str, Section], operation: str, figure: str, before: float, unit: str
) -> Goal | None:
    row = _row(sections, "server_work", f"{operation} (plain)")
    if row is None:
        return None
    value = float(row.extra[figure])
    what = "time inside Redis" if figure == "server_usec_per_op" else "commands run inside"
    return Goal(
        f"server work per {operation}: {what}, halved",
        f"{value:,.1f} {unit}",
        f"before this round: {before:g} {unit} (constant, see goals.py)",
        value / before,
        0.5,
    )


def goals(sections: list[Section]) -> list[Goal]:
    """Every goal of the round found in ``sections``, then the capacity figures."""
    by_key = {section.key: section for section in sections}
    found: list[Goal | None] = []
    memory, anyio = (
        _row(by_key, "contended_memory", "callthrottle"),
        _row(by_key, "contended_memory", "anyio"),
    )
    if memory and anyio and memory.ops_per_s and anyio.ops_per_s:
        found.append(
            Goal(
                "memory://, contended (200 coroutines, cap 20): cycles/s",
                f"{memory.ops_per_s:,.0f} cycles/s",
                f"{anyio.label}: {anyio.ops_per_s:,.0f} cycles/s",
                memory.ops_per_s / anyio.ops_per_s,
                0.5,
                at_least=True,
            )
        )
    found += [
        _latency(
            by_key,
            "memory://, uncontended acquire+release",
            "memory_uncontended",
            "callthrottle",
            1.25,
        ),
        _latency(
            by_key,
            "Redis, uncontended acquire+release",
            "redis_uncontended",
            "callthrottle acquire+release",
            1.0,
        ),
        _latency(
            by_key,
            "Redis, uncontended, every limit",
            "redis_uncontended",
            "callthrottle, every limit",
            1.3,
        ),
        _halved(by_key, "acquire", "server_usec_per_op", BEFORE_ACQUIRE_USEC, "µs"),
        _halved(by_key, "acquire", "commands_per_op", BEFORE_ACQUIRE_COMMANDS, "commands"),
        _halved(by_key, "release", "server_usec_per_op", BEFORE_RELEASE_USEC, "µs"),
        _halved(by_key, "release", "commands_per_op", BEFORE_RELEASE_COMMANDS, "commands"),
        _latency(
            by_key,
            "hand-off to a waiter in another process",
            "handoff",
            "callthrottle",
            1.0,
        ),
        _latency(by_key, "SyncThrottle against Throttle (asyncio)", "facade", "SyncThrottle", 1.3),
    ]
    sequential = _row(by_key, "capacity", "set-up: acquire + release (plain)")
    checked = _row(by_key, "capacity", "check:")
    if sequential and checked:
        found.append(
            Goal(
                "capacity of one master (plain set-ups/s at 100% of its thread)",
                f"{sequential.extra['setups_per_s_at_100pct']:,.0f}/s from "
                f"{sequential.extra['server_cpu_us']:.0f} µs CPU per set-up",
                f"check under load: {checked.extra['setups_per_s_at_100pct']:,.0f}/s "
                f"({checked.extra['achieved_setups_per_s']:,.0f}/s at "
                f"{checked.extra['server_cpu_share']:.0%} of a core)",
                None,
                None,
            )
        )
    per_process = _row(by_key, "scale", "total, per-process")
    sessions = _row(by_key, "scale", "total, session")
    if per_process and sessions:
        found.append(
            Goal(
                "scale on paper: 100,000 calls, 2,000 set-ups/s",
                f"{per_process.extra['masters_at_50pct']} master(s) with per-process leases "
                f"({per_process.extra['cores']:.2f} core)",
                f"{sessions.extra['masters_at_50pct']} with session leases "
                f"({sessions.extra['cores']:.2f} core); under 50% CPU each",
                None,
                None,
            )
        )
    return [goal for goal in found if goal is not None]


def markdown(found: list[Goal]) -> list[str]:
    lines = [
        "## The round's goals",
        "",
        "| goal | figure | reference, same run | ratio | goal | met |",
        "| --- | --- | --- | ---: | ---: | --- |",
    ]
    for goal in found:
        ratio = "—" if goal.ratio is None else f"{goal.ratio:.2f}x"
        bound = "—" if goal.bound is None else f"{'≥' if goal.at_least else '≤'} {goal.bound:g}x"
        met = {True: "**yes**", False: "no", None: "—"}[goal.met]
        lines.append(
            f"| {goal.name} | {goal.figure} | {goal.reference} | {ratio} | {bound} | {met} |"
        )
    lines += [
        "",
        (
            "Ratios are the figure over its reference (cycles/s for the contended goal, where "
            "more is better; p50 time or server work otherwise). The server-work goals compare "
            "this run with constants measured before this round (`benchmarks/goals.py`); time "
            "inside Redis is wall time in the server and grows with load on the machine, the "
            "commands do not. Each figure's section below has its details."
        ),
    ]
    return lines
