"""``callthrottle policy apply`` cut off half-way (the connection drops after the document was
written, before its pools were): what the operator can do then must leave every process
enforcing the policy in force."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from callthrottle import AcquireTimeout, BackendUnavailable
from callthrottle.backends import RedisBackend
from callthrottle.sync import SyncThrottle
from tests.cli.test_policy import V1, V2, A

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from click.testing import Result

pytestmark = pytest.mark.redis


def _cut_before_the_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next pool write fails as a dropped connection does (the document is written)."""
    original = RedisBackend.pool_update

    async def cut(self: RedisBackend, *args: Any, **kwargs: Any) -> int:
        monkeypatch.setattr(RedisBackend, "pool_update", original)
        raise BackendUnavailable("Redis failed during pool_update: connection reset")

    monkeypatch.setattr(RedisBackend, "pool_update", cut)


def test_apply_run_again_after_it_was_cut_off_publishes_the_pools_caps(
    invoke: Callable[..., Result],
    redis_args: list[str],
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """V2 lowers A's cap from 3 to 2. The first apply is cut off after the document; the
    operator runs it again, as they would, and is told there is nothing to change: the pool
    must then admit no more than 2 calls on A, under the version in force."""
    v1, v2 = tmp_path / "v1.toml", tmp_path / "v2.toml"
    v1.write_text(V1, encoding="utf-8")
    v2.write_text(V2, encoding="utf-8")
    assert invoke("policy", "apply", *redis_args, str(v1), "--yes").exit_code == 0
    options: dict[str, Any] = {"key_prefix": prefix, "policy": "follow", "lease_ttl": 600}
    with SyncThrottle.from_url(redis_url, **options) as dialer:
        _cut_before_the_pools(monkeypatch)
        assert invoke("policy", "apply", *redis_args, str(v2), "--yes").exit_code == 1
        again = invoke("policy", "apply", *redis_args, str(v2), "--yes")
        assert again.exit_code == 0, again.output
        taken = 0
        while True:
            try:
                dialer.acquire_from("sales", timeout=0)
            except AcquireTimeout:
                break
            taken += 1
        assert dialer.policy_version == 2
        assert dialer.usage(A).in_use <= 2
        assert taken == 2 + 15 + 20


def test_apply_cut_off_after_the_policy_changed_writes_an_audit_line(
    invoke: Callable[..., Result],
    redis_args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The version in force changed: the audit log says so, whatever failed after."""
    v1, v2 = tmp_path / "v1.toml", tmp_path / "v2.toml"
    v1.write_text(V1, encoding="utf-8")
    v2.write_text(V2, encoding="utf-8")
    assert invoke("policy", "apply", *redis_args, str(v1), "--yes").exit_code == 0
    caplog.set_level(logging.INFO, logger="callthrottle.audit")
    _cut_before_the_pools(monkeypatch)
    assert invoke("policy", "apply", *redis_args, str(v2), "--yes").exit_code == 1
    shown = invoke("policy", "show", *redis_args, "--json")
    assert '"version": 2' in shown.stdout  # the policy in force did change
    lines = [r.getMessage() for r in caplog.records if r.name == "callthrottle.audit"]
    assert any("action=policy-apply" in line for line in lines), lines


def test_apply_run_again_after_it_was_cut_off_on_a_cluster_binds_every_slot(
    invoke: Callable[..., Result],
    cluster_url: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a Cluster, apply raises the policy stamp of every slot after writing the document.
    Cut off before that, then run again ("nothing to change"), it must leave no slot where a
    throttle still on the old version (it looks for a new one every 200 s) is admitted under
    the old cap."""
    v1, v2 = tmp_path / "v1.toml", tmp_path / "v2.toml"
    v1.write_text('default_profile = "fixed"\n[profiles.fixed]\ncap = 3\n', encoding="utf-8")
    v2.write_text('default_profile = "fixed"\n[profiles.fixed]\ncap = 1\n', encoding="utf-8")
    args = ["--url", cluster_url, "--prefix", prefix]
    assert invoke("policy", "apply", *args, str(v1), "--yes").exit_code == 0
    options: dict[str, Any] = {"key_prefix": prefix, "policy": "follow", "lease_ttl": 600}
    with SyncThrottle.from_url(cluster_url, **options) as dialer:
        assert dialer.policy_version == 1

        async def cut(self: RedisBackend, version: int) -> int:
            raise BackendUnavailable("Redis failed during policy_stamp: connection reset")

        monkeypatch.setattr(RedisBackend, "raise_stamps", cut)
        assert invoke("policy", "apply", *args, str(v2), "--yes").exit_code == 1
        monkeypatch.undo()
        again = invoke("policy", "apply", *args, str(v2), "--yes")
        assert again.exit_code == 0, again.output
        dialer.acquire(A, timeout=0)
        with pytest.raises(AcquireTimeout):  # cap 1, version 2's
            dialer.acquire(A, timeout=0)
