"""Fixtures for the command line: a runner, and a dialer holding leases on a real Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result

from callthrottle.cli._app import cli
from callthrottle.sync import SyncThrottle

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture
def invoke() -> Callable[..., Result]:
    """Run ``callthrottle ARGS`` in-process; returns click's Result (exit code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None, **env: str) -> Result:
        return runner.invoke(
            cli, list(args), input=input, env={"COLUMNS": "200", **env}, catch_exceptions=False
        )

    return run


@pytest.fixture
def redis_args(redis_url: str, prefix: str) -> list[str]:
    return ["--url", redis_url, "--prefix", prefix]


@pytest.fixture
def dialer(redis_url: str, prefix: str) -> Iterator[SyncThrottle]:
    """A dialer (a throttle in a background thread) holding leases on the test's Redis keys."""
    options: dict[str, Any] = {"key_prefix": prefix, "owner_id": "switch-7", "lease_ttl": 30.0}
    with SyncThrottle.from_url(redis_url, **options) as throttle:
        yield throttle
