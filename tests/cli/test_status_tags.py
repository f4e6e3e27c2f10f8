"""``callthrottle status`` on a Redis Cluster whose keys of one number, or of one pool, sit
under several hash tags (processes with different configurations wrote them)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from callthrottle.sync import SyncThrottle

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from click.testing import Result

pytestmark = pytest.mark.redis

A = "+8657188880001"


def _status(invoke: Callable[..., Result], *args: str) -> dict[str, Any]:
    result = invoke("status", *args, "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_a_pool_held_under_two_tags_counts_each_number_once(
    invoke: Callable[..., Result], cluster_url: str, prefix: str
) -> None:
    """A pool made at run time by processes with different default tenants ({t:acme} and
    {t:beta}): its number is one number, with one cap."""
    options: dict[str, Any] = {"key_prefix": prefix}
    with (
        SyncThrottle.from_url(cluster_url, **options, config={"default_tenant": "acme"}) as one,
        SyncThrottle.from_url(cluster_url, **options, config={"default_tenant": "beta"}) as two,
    ):
        one.add_to_pool("east", [A])
        two.add_to_pool("east", [A])
        data = _status(invoke, "--url", cluster_url, "--prefix", prefix)
        [pool] = data["pools"]
        assert (pool["pool"], pool["members"], pool["cap"]) == ("east", 1, 20)


def test_without_a_configuration_a_number_is_read_where_its_leases_are(
    invoke: Callable[..., Result], redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """The dialers keep A under its tenant's tag; an operator flagged it by hand without their
    configuration (its policy key under A's own tag). A status without a configuration still
    finds A's calls up (on one server too: no Cluster needed)."""
    options: dict[str, Any] = {"key_prefix": prefix}
    tenants = {"tenants": {"acme": {"cap": 50}}, "numbers": {A: {"tenant": "acme"}}}
    with (
        SyncThrottle.from_url(redis_url, **options, config=tenants) as dialer,
        SyncThrottle.from_url(redis_url, **options) as operator,
    ):
        dialer.acquire(A, token="call-1", timeout=0)
        operator.set_state(A, "flagged", reason="by hand")
        data = _status(invoke, "--url", redis_url, "--prefix", prefix, "--holders")
        [row] = [r for r in data["numbers"] if r["number"] == A]
        assert row["in_use"] == 1
        assert [h["token"] for h in row["holders"]] == ["call-1"]


def test_a_number_found_under_its_own_tag_is_read_there_whatever_pool_lists_it(
    invoke: Callable[..., Result], cluster_url: str, prefix: str, tmp_path: Path
) -> None:
    """On a Cluster a pool of the configuration puts its numbers under the pool's tag; a number
    whose state was written under its own tag (by a process without that pool) is still read
    where it is."""
    config = tmp_path / "pool.toml"
    config.write_text(f'[pools.p]\nnumbers = ["{A}"]\n', encoding="utf-8")
    with SyncThrottle.from_url(cluster_url, key_prefix=prefix) as operator:
        operator.set_state(A, "flagged", reason="by hand")
        args = ["--url", cluster_url, "--prefix", prefix]
        for given in ([], ["--config", str(config)]):
            [row] = [r for r in _status(invoke, *args, *given)["numbers"] if r["number"] == A]
            assert (row["state"], row["reason"]) == ("flagged", "by hand"), given
