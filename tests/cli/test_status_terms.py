"""``callthrottle status`` and ``top`` and numbers' paid periods: when each ends ("expires in 4
days"), the calendar's state of a lapsed number whatever its run-time state says (but an
operator's ``released``), and ``--expiring-within DAYS``; on Redis and on a backend that holds
nothing (``memory://``: the numbers are the policy's, never dialled).

The days are today's in the policy's time zone, as the commands read the wall clock."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest

from callthrottle.sync import SyncThrottle

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from click.testing import Result

ZONE = "Asia/Shanghai"
LAST = "+8657188880001"  # paid until today: its last day
SOON = "+8657188880002"  # 4 days left
LATER = "+8657188880003"  # 5 days left
LAPSED = "+8657188880004"  # paid until yesterday: expired today
GRACE = "+8657188880005"  # expired 2 days ago, inside the grace period (7 days)
GONE = "+8657188880006"  # released: the grace period is over
HELD = "+8657188880007"  # expired 2 days ago, and released by an operator
PLAIN = "+8657188880008"  # no paid period
#: days from today to each number's paid_until
PAID = {LAST: 0, SOON: 3, LATER: 4, LAPSED: -1, GRACE: -3, GONE: -10, HELD: -3}
LAPSED_ONES = [LAPSED, GRACE, GONE, HELD]


def _day(days: int) -> str:
    today = dt.datetime.now(ZoneInfo(ZONE)).date()
    return (today + dt.timedelta(days=days)).isoformat()


def _policy() -> dict[str, Any]:
    numbers: dict[str, Any] = {n: {"paid_until": _day(days)} for n, days in PAID.items()}
    numbers[PLAIN] = {"cap": 3}
    return {"timezone": ZONE, "trunks": {"t": {"cap": 9}}, "numbers": numbers}


@pytest.fixture
def carriers(tmp_path: Path) -> str:
    lines = [f'timezone = "{ZONE}"', "[trunks.t]", "cap = 9"]
    for number, days in PAID.items():
        lines += [f'[numbers."{number}"]', f"paid_until = {_day(days)}"]
    lines += [f'[numbers."{PLAIN}"]', "cap = 3"]
    path = tmp_path / "carriers.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def args(request: pytest.FixtureRequest, carriers: str) -> list[str]:
    """The backend and the policy: a memory backend (nothing dialled), or the test's Redis
    where a dialer without the policy made some numbers known with run-time states."""
    if request.param == "memory":
        return ["--url", "memory://", "--config", carriers]
    dialer: SyncThrottle = request.getfixturevalue("dialer")  # no policy: it admits any
    dialer.acquire(GRACE, token="call-1", timeout=0)  # known, active at run time
    dialer.set_state(HELD, "released", reason="given back")
    dialer.set_state(LAST, "flagged", reason="spam label")  # not lapsed: its own state stays
    return [*request.getfixturevalue("redis_args"), "--config", carriers]


def _rows(result: Result) -> dict[str, dict[str, Any]]:
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    return {row["number"]: row for row in data["numbers"]}


def _line(result: Result, number: str) -> str:
    assert result.exit_code == 0, result.output
    return next(line for line in result.stdout.splitlines() if line.lstrip().startswith(number))


def test_status_shows_when_each_paid_period_ends_and_the_calendars_state(
    invoke: Callable[..., Result], args: list[str]
) -> None:
    rows = _rows(invoke("status", *args, "--json"))
    assert sorted(rows) == sorted([*PAID, PLAIN])  # listed, dialled or not
    expected = {
        LAST: (1, "expires in 1 day"),  # the day before it lapses
        SOON: (4, "expires in 4 days"),
        LATER: (5, "expires in 5 days"),
        LAPSED: (0, f"expired today; released on {_day(7)}"),  # the day it lapses
        GRACE: (-2, f"expired 2 days ago; released on {_day(5)}"),  # inside the grace period
        GONE: (-9, f"released on {_day(-2)}"),  # after it
        HELD: (-2, f"expired 2 days ago; released on {_day(5)}"),
    }
    for number, (left, text) in expected.items():
        row = rows[number]
        assert (row["days_left"], row["expires"]) == (left, text), number
        assert row["paid_until"] == _day(PAID[number])
    assert (rows[PLAIN]["days_left"], rows[PLAIN]["expires"], rows[PLAIN]["paid_until"]) == (
        None, None, None,
    )  # fmt: skip
    assert rows[SOON]["state"] == rows[LATER]["state"] == "active"
    for number in (LAPSED, GRACE):
        assert rows[number]["state"] == "expired"
        assert rows[number]["reason"] == (
            f"paid until {_day(PAID[number])}; the carrier releases it on "
            f"{_day(PAID[number] + 8)} unless it is renewed"
        )
    assert rows[GONE]["state"] == "released"
    assert rows[GONE]["reason"] == f"paid until {_day(-10)}; released to the carrier on {_day(-2)}"
    if "memory://" in args:  # no run-time state: the calendar's alone
        assert (rows[LAST]["state"], rows[HELD]["state"]) == ("active", "expired")
    else:
        assert rows[GRACE]["in_use"] == 1  # a call up, its run-time state active: expired
        assert (rows[HELD]["state"], rows[HELD]["reason"]) == ("released", "given back")
        assert (rows[LAST]["state"], rows[LAST]["reason"]) == ("flagged", "spam label")
    assert rows[PLAIN]["state"] == "active"

    table = invoke("status", *args)
    assert "paid period" in table.stdout
    assert "expires in 4 days" in _line(table, SOON)
    assert "expires in 1 day " in _line(table, LAST)
    grace = _line(table, GRACE)
    assert grace.split()[1] == "expired"
    assert "expired 2 days ago;" in grace
    assert "unless it is renewed" not in table.stdout, table.stdout  # the dates once
    if "memory://" not in args:
        assert "released (given back)" in _line(table, HELD)  # an operator's reason stays
    gone = _line(table, GONE)
    assert gone.split()[1] == "released"
    assert "released on" in gone
    assert _line(table, PLAIN).split()[1:3] == ["active", "-"]


def test_expiring_within_lists_the_numbers_with_that_many_days_left_or_fewer(
    invoke: Callable[..., Result], args: list[str]
) -> None:
    within = _rows(invoke("status", *args, "--json", "--expiring-within", "4"))
    assert sorted(within) == sorted([LAST, SOON, *LAPSED_ONES])  # 4 days left: in; 5: out
    assert sorted(_rows(invoke("status", *args, "--json", "--expiring-within", "5"))) == sorted(
        [LAST, SOON, LATER, *LAPSED_ONES]
    )
    assert sorted(_rows(invoke("status", *args, "--json", "--expiring-within", "1"))) == sorted(
        [LAST, *LAPSED_ONES]
    )
    assert sorted(_rows(invoke("status", *args, "--json", "--expiring-within", "0"))) == sorted(
        LAPSED_ONES
    )
    both = _rows(invoke("status", *args, "--json", "--expiring-within", "4", "--match", "*0[12]"))
    assert sorted(both) == [LAST, SOON]

    data = json.loads(invoke("status", *args, "--json", "--expiring-within", "4").stdout)
    assert data["totals"]["numbers"] == 6
    assert (data["groups"], data["pools"]) == ([], [])  # a selection of numbers, as --match

    table = invoke("top", *args, "--iterations", "1", "--expiring-within", "4")
    assert "expires in 4 days" in _line(table, SOON)
    assert LATER not in table.stdout
    assert PLAIN not in table.stdout


def test_without_a_configuration_the_published_policy_gives_the_paid_periods(
    invoke: Callable[..., Result], redis_url: str, prefix: str, redis_args: list[str]
) -> None:
    with SyncThrottle.from_url(redis_url, key_prefix=prefix, config=_policy()) as dialer:
        dialer.publish_policy(comment="paid periods")
    rows = _rows(invoke("status", *redis_args, "--json", "--expiring-within", "0"))
    assert sorted(rows) == sorted(LAPSED_ONES)  # never dialled: the policy lists them
    assert (rows[GRACE]["state"], rows[GRACE]["days_left"]) == ("expired", -2)
    assert rows[GONE]["state"] == "released"
    top = invoke("top", *redis_args, "--iterations", "1", "--number", SOON)
    assert "expires in 4 days" in _line(top, SOON)


@pytest.mark.parametrize("command", ["status", "top"])
@pytest.mark.parametrize("days", ["-1", "x", "1.5", ""])
def test_a_bad_expiring_within_is_refused(
    invoke: Callable[..., Result], command: str, days: str
) -> None:
    result = invoke(command, "--expiring-within", days)
    assert result.exit_code == 2
    assert "--expiring-within" in result.stderr
    assert repr(days) in result.stderr or f"{days} is not a whole number of days" in result.stderr


@pytest.mark.redis
def test_a_pooled_number_the_backend_does_not_hold_is_listed_by_its_paid_period(
    invoke: Callable[..., Result], redis_args: list[str], dialer: SyncThrottle, tmp_path: Path
) -> None:
    """The policy's pool lists LAST (its paid period its profile's); the backend holds the pool
    with another number (published by a process with another policy): LAST, never dialled,
    is still listed as expiring."""
    path = tmp_path / "pooled.toml"
    path.write_text(
        f'timezone = "{ZONE}"\ndefault_profile = "rented"\n'
        f"[profiles.rented]\npaid_until = {_day(1)}\n"
        f'[pools.sales]\nnumbers = ["{LAST}"]\n',
        encoding="utf-8",
    )
    dialer.add_to_pool("sales", [SOON])
    rows = _rows(
        invoke("status", *redis_args, "--config", str(path), "--json", "--expiring-within", "2")
    )
    assert sorted(rows) == [LAST, SOON]  # both the profile's: 2 days left
    assert rows[LAST]["expires"] == "expires in 2 days"


def test_no_number_expiring_says_so(invoke: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "later.toml"
    path.write_text(f'[numbers."{LATER}"]\npaid_until = {_day(30)}\n', encoding="utf-8")
    result = invoke("status", "--config", str(path), "--expiring-within", "7")
    assert result.exit_code == 0, result.output
    assert "no numbers match the filters" in result.stdout
    assert "none configured" not in result.stdout
