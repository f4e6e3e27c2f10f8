"""``callthrottle metrics``: every dialer's calls read from Redis and served to Prometheus, or
printed once; the backend left unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from callthrottle.sync import SyncThrottle
from tests._servers import free_port
from tests.cli.test_read_only import _assert_same, _clients, _keyspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from click.testing import Result

pytestmark = pytest.mark.redis

SRC = Path(__file__).resolve().parents[2] / "src"
A, B = "+8657188880001", "+8657188880002"


def test_once_prints_every_dialers_calls_and_writes_nothing(
    invoke: Callable[..., Result], redis_url: str, prefix: str, tmp_path: Path
) -> None:
    carriers = tmp_path / "carriers.toml"
    carriers.write_text(f'[trunks.t]\ncap = 5\n[numbers."{A}"]\ntrunk = "t"\ncap = 3\n')
    options: dict[str, Any] = {"key_prefix": prefix, "config": str(carriers)}
    with (
        SyncThrottle.from_url(redis_url, owner_id="dialer-1", **options) as one,
        SyncThrottle.from_url(redis_url, owner_id="dialer-2", **options) as two,
    ):
        one.acquire(A, timeout=0)
        two.acquire(A, timeout=0)
        two.acquire(B, timeout=0)
        clients = _clients(redis_url)
        before = _keyspace(clients, prefix)
        args = ["--url", redis_url, "--prefix", prefix, "--config", str(carriers)]
        result = invoke("metrics", *args, "--once")
        _assert_same(before, _keyspace(clients, prefix))
    assert result.exit_code == 0, result.output
    lines = set(result.stdout.splitlines())
    assert f'callthrottle_number_in_use{{number="{A}"}} 2.0' in lines
    assert f'callthrottle_number_cap{{number="{A}"}} 3.0' in lines
    assert f'callthrottle_number_in_use{{number="{B}"}} 1.0' in lines
    assert f'callthrottle_number_state{{number="{A}",state="active"}} 1.0' in lines
    assert 'callthrottle_group_in_use{group="t",kind="trunk"} 2.0' in lines
    assert "callthrottle_shared_backend_up 1.0" in lines


def test_once_on_an_unreachable_backend_says_so_and_exits_1(
    invoke: Callable[..., Result],
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    result = invoke("metrics", "--url", url, "--once")
    assert result.exit_code == 1
    assert "callthrottle_shared_backend_up 0.0" in result.stdout.splitlines()
    assert "callthrottle_number_in_use{" not in result.stdout


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_serves_the_calls_as_they_change(redis_url: str, prefix: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "callthrottle", "metrics", "--url", redis_url]
    command += ["--prefix", prefix, "--addr", "127.0.0.1", "--port", str(port)]
    command += ["--interval", "0.1"]
    exporter = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with SyncThrottle.from_url(redis_url, key_prefix=prefix) as dialer:
            lease = dialer.acquire(A, token="call-1", timeout=0)
            expected = f'callthrottle_number_in_use{{number="{A}"}} 1.0'
            deadline = time.monotonic() + 20
            while True:
                try:
                    if expected in _scrape(url).splitlines():
                        break
                except OSError:  # not listening yet
                    pass
                assert time.monotonic() < deadline, "the exporter never showed the call"
                assert exporter.poll() is None, exporter.communicate()[1]
                time.sleep(0.05)
            dialer.release(lease)
            deadline = time.monotonic() + 10
            while f'callthrottle_number_in_use{{number="{A}"}}' in _scrape(url):
                assert time.monotonic() < deadline, "the released number stayed"
                time.sleep(0.05)
    finally:
        exporter.terminate()
        _, stderr = exporter.communicate(timeout=10)
    assert f"serving http://127.0.0.1:{port}/metrics" in stderr


def test_without_prometheus_client_names_the_extra(
    invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "callthrottle.prometheus", raising=False)
    result = invoke("metrics", "--once")
    assert result.exit_code == 1
    assert "pip install 'callthrottle[prometheus]'" in result.output
