"""Admin actions: confirmation, --yes, the audit line, and bad input refused with nothing
written."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import pytest

import redis
from callthrottle import AcquireTimeout, Lease, Usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from click.testing import Result

    from callthrottle.sync import SyncThrottle

pytestmark = pytest.mark.redis

A, B = "+8657188880001", "+8657188880002"


def _audit_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "callthrottle.audit"]


def _wait_released(lease: Lease) -> None:
    deadline = time.monotonic() + 5
    while not lease.released:
        assert time.monotonic() < deadline, "the holder was never told"
        time.sleep(0.01)


def test_reset_asks_then_frees_the_number(
    invoke: Callable[..., Result],
    redis_args: list[str],
    dialer: SyncThrottle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callthrottle.audit")
    leases = [dialer.acquire(A, token=f"call-{i}", timeout=0) for i in range(2)]

    declined = invoke("reset", *redis_args, A, input="n\n")
    assert declined.exit_code == 1
    assert "drop 2 lease(s)" in declined.stdout
    assert "call-0 (switch-7)" in declined.stdout
    assert dialer.usage(A).in_use == 2  # nothing written
    assert _audit_lines(caplog) == []

    result = invoke("reset", *redis_args, A, input="y\n")
    assert result.exit_code == 0, result.output
    assert dialer.usage(A) == Usage(in_use=0, limit=20, waiting=0)
    for lease in leases:
        _wait_released(lease)
    [line] = _audit_lines(caplog)
    assert "action=reset" in line
    assert f"number={A}" in line
    assert 'result="2 lease(s) dropped, 0 waiter(s) woken"' in line
    assert "user=" in line
    assert "host=" in line
    assert line in result.stderr  # also on stderr


def test_release_by_token_alone_finds_the_number(
    invoke: Callable[..., Result],
    redis_args: list[str],
    dialer: SyncThrottle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callthrottle.audit")
    lease = dialer.acquire(B, token="call-42", timeout=0)
    dialer.acquire(B, token="call-43", timeout=0)

    result = invoke("release", *redis_args, "call-42", "--yes")
    assert result.exit_code == 0, result.output
    assert "released" in result.stdout
    _wait_released(lease)
    assert dialer.usage(B).in_use == 1
    [line] = _audit_lines(caplog)
    assert all(f in line for f in ("action=release", f"number={B}", "token=call-42"))
    assert "owner=switch-7" in line


def test_release_with_number(
    invoke: Callable[..., Result], redis_args: list[str], dialer: SyncThrottle
) -> None:
    dialer.acquire(B, token="call-42", timeout=0)
    result = invoke("release", *redis_args, B, "call-42", input="y\n")
    assert result.exit_code == 0, result.output
    assert dialer.usage(B).in_use == 0


def test_release_refuses_an_unknown_token(
    invoke: Callable[..., Result],
    redis_args: list[str],
    dialer: SyncThrottle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callthrottle.audit")
    dialer.acquire(B, token="call-42", timeout=0)
    alone = invoke("release", *redis_args, "call-99", "--yes")
    assert alone.exit_code == 2
    assert "no live lease with token 'call-99' on any number" in alone.stderr
    on_number = invoke("release", *redis_args, A, "call-42", "--yes")
    assert on_number.exit_code == 2
    assert f"no live lease with token 'call-42' on number {A}" in on_number.stderr
    assert dialer.usage(B).in_use == 1
    assert _audit_lines(caplog) == []


def test_release_owner_frees_a_dead_switch(
    invoke: Callable[..., Result],
    redis_args: list[str],
    dialer: SyncThrottle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callthrottle.audit")
    dialer.acquire(A, timeout=0)
    dialer.acquire(B, timeout=0)

    unknown = invoke("release-owner", *redis_args, "switch-9", "--yes")
    assert unknown.exit_code == 2
    assert "owner 'switch-9' holds no live lease" in unknown.stderr

    result = invoke("release-owner", *redis_args, "switch-7", input="y\n")
    assert result.exit_code == 0, result.output
    assert f"Release the 2 lease(s) of switch-7 on {A}, {B}" in result.stdout
    assert dialer.usage(A).in_use == dialer.usage(B).in_use == 0
    [line] = _audit_lines(caplog)
    assert "action=release-owner" in line
    assert "owner=switch-7" in line


def test_lift_fence_asks_then_admits_new_calls_at_once(
    invoke: Callable[..., Result],
    redis_args: list[str],
    redis_url: str,
    prefix: str,
    dialer: SyncThrottle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callthrottle.audit")
    dialer.release(dialer.acquire(A, timeout=0))
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(f"{prefix}*"))  # the prefix's data lost, its marker with it
    client.close()
    with pytest.raises(AcquireTimeout) as fenced:
        dialer.acquire(A, timeout=0)
    assert fenced.value.refused_by == "fence"

    declined = invoke("lift-fence", *redis_args, input="n\n")
    assert declined.exit_code == 1
    assert "Admit new calls at once" in declined.stdout
    with pytest.raises(AcquireTimeout):
        dialer.acquire(A, timeout=0)

    result = invoke("lift-fence", *redis_args, "--yes")
    assert result.exit_code == 0, result.output
    assert "fence lifted" in result.stdout
    dialer.release(dialer.acquire(A, timeout=0))
    [line] = _audit_lines(caplog)
    assert "action=lift-fence" in line


def test_set_state_then_back(
    invoke: Callable[..., Result],
    redis_args: list[str],
    dialer: SyncThrottle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callthrottle.audit")
    result = invoke("set-state", *redis_args, A, "disabled", "--reason", "carrier audit", "-y")
    assert result.exit_code == 0, result.output
    status = dialer.status(A)
    assert (status.state.value, status.reason) == ("disabled", "carrier audit")

    cooling = invoke("set-state", *redis_args, A, "cooling", "--duration", "60", "-y")
    assert cooling.exit_code == 0, cooling.output
    assert dialer.status(A).remaining == pytest.approx(60, abs=5)
    lines = _audit_lines(caplog)
    assert len(lines) == 2
    assert 'result="active -> disabled"' in lines[0]
    assert 'reason="carrier audit"' in lines[0]
    assert 'result="disabled -> cooling"' in lines[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reset", "12345"], "Invalid value for NUMBER: number must be a valid phone number"),
        (["set-state", "+8657188880001", "asleep"], "'asleep' is not one of 'active'"),
        (["set-state", "+8657188880001", "cooling"], "--duration: required for cooling"),
        (
            ["set-state", "+8657188880001", "flagged", "--duration", "5"],
            "--duration: only for cooling, not flagged",
        ),
        (["set-state", "not-a-number", "flagged"], "number must be a valid phone number"),
        (["release", "a", "b", "c"], "expected [NUMBER] TOKEN, got 3 argument(s)"),
        (["release", "12", "call-1"], "number must be a valid phone number"),
    ],
)
def test_bad_input_exits_2_naming_it_and_writes_nothing(
    invoke: Callable[..., Result],
    redis_args: list[str],
    dialer: SyncThrottle,
    caplog: pytest.LogCaptureFixture,
    args: list[str],
    message: str,
) -> None:
    caplog.set_level(logging.INFO, logger="callthrottle.audit")
    dialer.acquire(A, token="call-1", timeout=0)
    result = invoke(*args[:1], *redis_args, *args[1:], "--yes")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert dialer.status(A).state.value == "active"
    assert dialer.usage(A).in_use == 1
    assert _audit_lines(caplog) == []


def test_lift_fence_refuses_a_backend_without_a_fence(
    invoke: Callable[..., Result], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="callthrottle.audit")
    result = invoke("lift-fence", "--url", "memory://", "--yes")
    assert result.exit_code == 2
    assert "memory:// has no fence to lift: it needs a Redis URL" in result.stderr
    assert not _audit_lines(caplog)
