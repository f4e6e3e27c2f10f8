"""``callthrottle status`` and ``top``: tables, JSON, holders and filters."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from callthrottle import AcquireTimeout
from callthrottle.sync import SyncThrottle

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from click.testing import Result

pytestmark = pytest.mark.redis

A, B, C = "+8657188880001", "+8657188880002", "+8657188880003"

CONFIG = """
default_region = "CN"
[numbers."+8657188880001"]
cap = 15
trunk = "trunk-400"
[trunks.trunk-400]
cap = 20
[pools.sales]
numbers = ["+8657188880002", "+8657188880003"]
"""


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "carriers.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return str(path)


def _json(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _numbers(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["number"]: row for row in data["numbers"]}


def test_status_lists_what_the_backend_knows(
    invoke: Callable[..., Result], redis_args: list[str], dialer: SyncThrottle
) -> None:
    dialer.acquire(A, token="call-1", timeout=0)
    dialer.acquire(A, token="call-2", timeout=0)
    dialer.acquire(B, token="call-3", limit=3, timeout=0)
    dialer.set_state(C, "flagged", reason="spam label")

    rows = _numbers(_json(invoke("status", *redis_args, "--json")))
    assert sorted(rows) == [A, B, C]
    assert (rows[A]["in_use"], rows[A]["cap"], rows[A]["waiting"]) == (2, 20, 0)
    assert rows[B]["in_use"] == 1
    assert (rows[C]["state"], rows[C]["reason"]) == ("flagged", "spam label")
    assert rows[A]["holders"] is None

    table = invoke("status", *redis_args)
    assert table.exit_code == 0
    for text in (A, B, C, "2/20", "flagged", "spam label"):
        assert text in table.stdout


def test_status_shows_how_much_of_each_rate_window_is_used(
    invoke: Callable[..., Result], redis_args: list[str], dialer: SyncThrottle
) -> None:
    dialer.set_rates(A, "5/minute")
    for token in ("call-1", "call-2"):
        dialer.release(dialer.acquire(A, token=token, timeout=0))
    rows = _numbers(_json(invoke("status", *redis_args, "--json")))
    assert rows[A]["rates"] == ["2 of 5/minute"]  # counted by every process, ended or not
    assert rows[A]["windows"] == [{"window": "5/minute", "used": 2, "allowed": 5}]
    table = invoke("status", *redis_args)
    assert "2 of 5/minute" in table.stdout  # as the window was written, not "per 60 s"


def test_status_with_holders_names_token_and_owner(
    invoke: Callable[..., Result], redis_args: list[str], dialer: SyncThrottle
) -> None:
    dialer.acquire(A, token="call-1", timeout=0)
    rows = _numbers(_json(invoke("status", *redis_args, "--json", "--holders")))
    [holder] = rows[A]["holders"]
    assert (holder["token"], holder["owner"]) == ("call-1", "switch-7")
    assert 0 < holder["expires_in"] <= 30

    table = invoke("status", *redis_args, "--holders")
    assert "call-1" in table.stdout
    assert "switch-7" in table.stdout


def test_status_shows_when_totals_oldest_wait_cool_down_and_owners(
    invoke: Callable[..., Result],
    redis_args: list[str],
    dialer: SyncThrottle,
    redis_url: str,
    prefix: str,
) -> None:
    dialer.set_cap(A, 1)
    dialer.acquire(A, token="call-1", timeout=0)
    dialer.acquire(B, token="call-2", timeout=0)
    dialer.set_state(C, "cooling", duration=600, reason="carrier 503")
    with SyncThrottle.from_url(redis_url, key_prefix=prefix, owner_id="switch-9") as other:

        def wait_in_line() -> None:
            with contextlib.suppress(AcquireTimeout):  # the test failed before freeing it
                other.release(other.acquire(A, token="call-3", timeout=10))

        waiter = threading.Thread(target=wait_in_line)
        waiter.start()
        try:
            deadline = time.monotonic() + 5
            while dialer.usage(A).waiting != 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)
            data = _json(invoke("status", *redis_args, "--json", "--holders"))
            table = invoke("status", *redis_args, "--holders")
        finally:
            dialer.release_owner("switch-7")
            waiter.join(15)

    refreshed = dt.datetime.fromisoformat(data["refreshed"])
    assert refreshed.tzinfo is not None
    assert abs(dt.datetime.now(dt.timezone.utc) - refreshed) < dt.timedelta(seconds=60)
    assert data["totals"] == {"numbers": 3, "in_use": 2, "waiting": 1}
    rows = _numbers(data)
    assert 0.25 <= rows[A]["oldest_wait"] < 10  # call-3 has waited since it queued
    assert rows[B]["oldest_wait"] is None  # nobody waits there
    assert (rows[C]["state"], rows[C]["reason"]) == ("cooling", "carrier 503")
    assert 590 < rows[C]["remaining"] <= 600
    assert rows[A]["remaining"] is None
    [owner] = data["owners"]  # call-3 waits: it holds nothing
    assert (owner["owner"], owner["leases"]) == ("switch-7", 2)
    assert [(h["number"], h["token"]) for h in owner["holds"]] == [(A, "call-1"), (B, "call-2")]

    assert table.exit_code == 0, table.output
    text = table.stdout
    assert re.search(r"refreshed \d\d:\d\d:\d\d +3 numbers +2 calls up +1 waiting", text)
    assert re.search(r"cooling 9 min \d\d s left \(carrier 503\)", text)
    assert "switch-7  2 leases" in text
    a_row = next(line for line in text.splitlines() if line.lstrip().startswith(A))
    # in use/cap, where the cap comes from (set_cap), waiting, oldest wait
    assert re.search(r"1/1 +run-time +1 +0\.\d s", a_row)


def test_status_filters(
    invoke: Callable[..., Result], redis_args: list[str], dialer: SyncThrottle, config: str
) -> None:
    dialer.acquire(B, token="call-1", timeout=0)
    args = [*redis_args, "--config", config, "--json"]

    everything = _json(invoke("status", *args))
    assert sorted(_numbers(everything)) == [A, B, C]  # configured, pooled or known
    assert everything["groups"] == [
        {"group": "trunk:trunk-400", "in_use": 0, "cap": 20, "waiting": 0}
    ]
    assert everything["pools"] == [
        # Configured, not published: no dialer with this configuration opened yet.
        {"pool": "sales", "members": 2, "in_use": 1, "cap": 40, "waiting": 0, "published": False}
    ]
    assert _numbers(everything)[A]["cap"] == 15  # the configured cap

    assert sorted(_numbers(_json(invoke("status", *args, "--busy")))) == [B]
    assert sorted(_numbers(_json(invoke("status", *args, "--pool", "sales")))) == [B, C]
    assert sorted(_numbers(_json(invoke("status", *args, "--match", "*0003")))) == [C]
    # National form, read in the configuration's region.
    assert sorted(_numbers(_json(invoke("status", *args, "--number", "057188880001")))) == [A]


def test_status_lists_the_pools_the_backend_holds(
    invoke: Callable[..., Result], redis_args: list[str], dialer: SyncThrottle, config: str
) -> None:
    dialer.add_to_pool("east", [A, C])  # published by a process whose configuration has no pool
    dialer.acquire(C, token="call-1", timeout=0)

    data = _json(invoke("status", *redis_args, "--config", config, "--json"))
    assert data["pools"] == [
        {"pool": "east", "members": 2, "in_use": 1, "cap": 35, "waiting": 0, "published": True},
        {"pool": "sales", "members": 2, "in_use": 1, "cap": 40, "waiting": 0, "published": False},
    ]
    assert sorted(_numbers(data)) == [A, B, C]
    pooled = _json(invoke("status", *redis_args, "--json", "--pool", "east"))
    assert sorted(_numbers(pooled)) == [A, C]

    table = invoke("status", *redis_args, "--config", config)
    assert "east" in table.stdout
    [sales] = [line for line in table.stdout.splitlines() if line.lstrip().startswith("sales ")]
    assert "configured only: not in the backend" in sales
    unknown = invoke("status", *redis_args, "--pool", "west")
    [west] = [line for line in unknown.stdout.splitlines() if line.lstrip().startswith("west ")]
    assert "not in the backend" in west


def test_status_refuses_a_malformed_number(invoke: Callable[..., Result]) -> None:
    result = invoke("status", "--number", "12345")
    assert result.exit_code == 2
    assert "--number" in result.stderr
    assert "valid phone number" in result.stderr


def test_status_names_a_bad_config_key(invoke: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[profiles.x]\ncap = 0\n", encoding="utf-8")
    result = invoke("status", "--config", str(path))
    assert result.exit_code == 2
    assert "config.profiles.x.cap" in result.stderr


def test_status_reports_an_unreachable_backend(invoke: Callable[..., Result]) -> None:
    result = invoke("status", "--url", "redis://127.0.0.1:1/0")
    assert result.exit_code == 1
    assert "Redis failed" in result.stderr


def test_url_comes_from_the_environment(
    invoke: Callable[..., Result], redis_url: str, prefix: str, dialer: SyncThrottle
) -> None:
    dialer.acquire(A, timeout=0)
    result = invoke("status", "--prefix", prefix, "--json", CALLTHROTTLE_URL=redis_url)
    assert sorted(_numbers(_json(result))) == [A]


def test_top_refreshes_the_table(
    invoke: Callable[..., Result], redis_args: list[str], dialer: SyncThrottle
) -> None:
    dialer.acquire(A, token="call-1", timeout=0)
    result = invoke("top", *redis_args, "--iterations", "3", "--interval", "0.05", "--holders")
    assert result.exit_code == 0, result.output
    assert result.stdout.count(A) >= 1
    assert "call-1" in result.stdout


def test_top_refuses_a_zero_interval(invoke: Callable[..., Result]) -> None:
    result = invoke("top", "--interval", "0")
    assert result.exit_code == 2
    assert "--interval" in result.stderr
