"""``callthrottle status`` and ``top`` never write: the server's keys (each one's DUMP, and
when it expires: PEXPIRETIME, which a shortened expiry changes too) and its function libraries
are the same after them, on an empty database and on one in use, on Redis and on a Redis
Cluster."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest

import redis
from callthrottle.backends._keys import glob_escape
from callthrottle.sync import SyncThrottle
from tests._servers import own_server

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from click.testing import Result

pytestmark = pytest.mark.redis

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
CARRIERS = re.findall(r"```toml\n(.*?)```", README, flags=re.DOTALL)[0]

A, B, C, D = "+8657188880001", "+8657188880002", "+8657188880003", "+8657188880004"
LIVE = f'[pools.sales]\nnumbers = ["{A}", "{B}"]\n'
OTHER = f'[pools.sales]\nnumbers = ["{C}"]\n'  # another list of the dialers' pool

Keyspace = tuple[dict[bytes, tuple[bytes | None, int]], list[Any]]


def _clients(url: str) -> list[redis.Redis]:
    """A client per server: the one of a single-server URL, each master of a Cluster's."""
    if url.startswith("redis+cluster://"):
        hosts = url.removeprefix("redis+cluster://").split(",")
        return [redis.Redis(host=h.split(":")[0], port=int(h.split(":")[1])) for h in hosts]
    return [redis.Redis.from_url(url)]


def _keyspace(clients: list[redis.Redis], prefix: str) -> Keyspace:
    """Every key of the prefix (its DUMP, and when it expires: PEXPIRETIME, -1 for never) and
    every server's function libraries."""
    keys: dict[bytes, tuple[bytes | None, int]] = {}
    functions = []
    for client in clients:
        for key in client.scan_iter(match=glob_escape(prefix) + "*", count=1000):
            keys[key] = (client.dump(key), int(client.execute_command("PEXPIRETIME", key)))  # type: ignore[no-untyped-call]
        functions.append(client.function_list(withcode=True))
    return keys, functions


def _assert_same(before: Keyspace, after: Keyspace) -> None:
    keys, functions = before
    keys_after, functions_after = after
    assert sorted(keys_after) == sorted(keys), "keys were added or removed"
    for key, (dump, expires) in keys.items():
        dump_after, expires_after = keys_after[key]
        assert dump_after == dump, f"{key!r} was changed"
        assert expires_after == expires, f"the expiry of {key!r} was changed"
    assert functions_after == functions, "the function libraries were changed"


@pytest.fixture(params=["redis", "cluster"])
def where(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(where: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("redis_url" if where == "redis" else "cluster_url"))


@pytest.fixture
def toml(tmp_path: Path) -> Callable[[str, str], str]:
    def write(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def empty_url(where: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A server that holds nothing: on Redis, a new one without the function library either;
    on a Cluster, the tests' own (a key prefix no test used)."""
    if where == "cluster":
        yield str(request.getfixturevalue("cluster_url"))
        return
    with own_server() as (started, _):
        client = redis.Redis.from_url(started)
        try:
            client.function_flush()
            client.flushall()
        finally:
            client.close()
        yield started


def test_status_writes_nothing_into_an_empty_database(
    invoke: Callable[..., Result], empty_url: str, prefix: str, toml: Callable[[str, str], str]
) -> None:
    clients = _clients(empty_url)
    before = _keyspace(clients, prefix)
    carriers = toml("carriers.toml", CARRIERS)
    result = invoke("status", "--url", empty_url, "--prefix", prefix, "--config", carriers)
    assert result.exit_code == 0, result.output
    assert "+8657188880001" in result.stdout  # the configured numbers, all idle
    _assert_same(before, _keyspace(clients, prefix))


def test_status_and_top_write_nothing_into_a_database_in_use(
    invoke: Callable[..., Result], url: str, prefix: str, toml: Callable[[str, str], str]
) -> None:
    live, other = toml("live.toml", LIVE), toml("other.toml", OTHER)
    options: dict[str, Any] = {"key_prefix": prefix, "owner_id": "switch-7", "config": live}
    with SyncThrottle.from_url(url, **options) as dialer:
        dialer.acquire(A, token="call-1", timeout=0)
        dialer.acquire_from("sales", token="call-2", timeout=0)
        dialer.set_state(D, "flagged", reason="spam label")
        clients = _clients(url)
        before = _keyspace(clients, prefix)
        args = ["--url", url, "--prefix", prefix]

        result = invoke("status", *args, "--config", other, "--json", "--holders")
        assert result.exit_code == 0, result.output
        _assert_same(before, _keyspace(clients, prefix))
        rows = {row["number"]: row for row in json.loads(result.stdout)["numbers"]}
        assert rows[A]["in_use"] + rows[B]["in_use"] == 2
        assert rows[D]["state"] == "flagged"
        [pool] = json.loads(result.stdout)["pools"]
        assert (pool["pool"], pool["members"], pool["published"]) == ("sales", 2, True)

        result = invoke("status", *args)
        assert result.exit_code == 0, result.output
        result = invoke("top", *args, "--config", live, "--iterations", "1", "--holders")
        assert result.exit_code == 0, result.output
        assert "call-1" in result.stdout
        _assert_same(before, _keyspace(clients, prefix))
        assert dialer.pool_members("sales") == [A, B]  # the pool as its dialers made it


def test_status_reads_a_number_where_its_keys_are(
    invoke: Callable[..., Result], url: str, prefix: str, toml: Callable[[str, str], str]
) -> None:
    """The dialers' configuration puts A's keys under its tenant's hash tag; a status without
    it (or with another) still finds A busy, where its keys are."""
    tenants = toml("tenants.toml", f'[tenants.acme]\ncap = 50\n[numbers."{A}"]\ntenant = "acme"\n')
    options: dict[str, Any] = {"key_prefix": prefix, "owner_id": "switch-7", "config": tenants}
    with SyncThrottle.from_url(url, **options) as dialer:
        dialer.acquire(A, token="call-1", timeout=0)
        for config in ([], ["--config", toml("other.toml", OTHER)]):
            result = invoke(
                "status", "--url", url, "--prefix", prefix, *config, "--json", "--holders"
            )
            assert result.exit_code == 0, result.output
            rows = {row["number"]: row for row in json.loads(result.stdout)["numbers"]}
            assert rows[A]["in_use"] == 1
            assert [h["token"] for h in rows[A]["holders"]] == ["call-1"]


def test_status_runs_as_a_redis_user_that_may_not_write(
    invoke: Callable[..., Result], redis_url: str, prefix: str, toml: Callable[[str, str], str]
) -> None:
    """An operator's status needs no right to write: the server refuses writes to this user
    (and FUNCTION LOAD, EVAL, FCALL), and status still shows the calls up."""
    admin = redis.Redis.from_url(redis_url)
    user = "viewer-" + prefix.rstrip(":")
    admin.acl_setuser(
        user, enabled=True, passwords=["+secret"], keys=["*"], channels=[],
        commands=["-@all", "+@read", "+ping", "+time", "+fcall_ro", "+eval_ro", "+evalsha_ro"],
    )  # fmt: skip
    try:
        options: dict[str, Any] = {"key_prefix": prefix, "config": toml("live.toml", LIVE)}
        with SyncThrottle.from_url(redis_url, **options) as dialer:
            dialer.acquire(A, token="call-1", timeout=0)
            viewer = redis_url.replace("redis://", f"redis://{user}:secret@")
            args = ["--url", viewer, "--prefix", prefix, "--config", toml("other.toml", OTHER)]
            result = invoke("status", *args, "--json")
            assert result.exit_code == 0, result.output
            rows = {row["number"]: row for row in json.loads(result.stdout)["numbers"]}
            assert rows[A]["in_use"] == 1
            result = invoke("top", *args, "--iterations", "1")
            assert result.exit_code == 0, result.output
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_status_runs_as_a_read_only_user_on_a_server_without_the_library(
    invoke: Callable[..., Result], prefix: str
) -> None:
    """On a server without the library the views run as read-only scripts (EVALSHA_RO, then
    EVAL_RO): the rights the README lists suffice, and nothing is loaded."""
    with own_server() as (url, _):
        admin = redis.Redis.from_url(url)
        try:
            admin.function_flush()
            admin.acl_setuser(
                "viewer", enabled=True, passwords=["+secret"], keys=["*"], channels=[],
                commands=["-@all", "+@read", "+ping", "+time", "+fcall_ro", "+evalsha_ro",
                          "+eval_ro"],
            )  # fmt: skip
            viewer = url.replace("redis://", "redis://viewer:secret@")
            for command in (["status"], ["top", "--iterations", "2", "--interval", "0.05"]):
                result = invoke(*command, "--url", viewer, "--prefix", prefix, "--number", A)
                assert result.exit_code == 0, result.output
            assert admin.function_list() == []
        finally:
            admin.close()


def test_without_a_configuration_status_and_top_show_the_published_caps_and_write_nothing(
    invoke: Callable[..., Result], url: str, prefix: str
) -> None:
    """The dialers published their policy (A capped at 3, its profile's; B at 2, its own):
    an operator without their configuration sees the caps they enforce, and where each comes
    from, and the server is the same afterwards (the published policy included)."""
    policy = {
        "default_profile": "mobile",
        "profiles": {"mobile": {"cap": 3, "rates": "100/hour"}},
        "numbers": {B: {"cap": 2}},
    }
    options: dict[str, Any] = {"key_prefix": prefix, "owner_id": "switch-7", "config": policy}
    with SyncThrottle.from_url(url, **options) as dialer:
        dialer.publish_policy(comment="carrier caps")
        dialer.acquire(A, token="call-1", timeout=0)
        dialer.set_cap(C, 5)
        clients = _clients(url)
        before = _keyspace(clients, prefix)
        args = ["--url", url, "--prefix", prefix]
        result = invoke("status", *args, "--number", A, "--number", B, "--number", C, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["policy"].startswith("policy v1 (")
        rows = {row["number"]: row for row in data["numbers"]}
        assert (rows[A]["in_use"], rows[A]["cap"], rows[A]["cap_from"]) == (1, 3, "policy v1")
        assert (rows[B]["cap"], rows[B]["cap_from"]) == (2, "policy v1")
        assert (rows[C]["cap"], rows[C]["cap_from"]) == (5, "run-time")
        assert rows[A]["rates"] == ["1 of 100/hour"]
        assert rows[A]["windows_from"] == "policy v1"
        result = invoke("top", *args, "--iterations", "1", "--match", A)
        assert result.exit_code == 0, result.output
        assert re.search(r"1/3 +policy v1", result.stdout)
        _assert_same(before, _keyspace(clients, prefix))


def test_status_top_and_metrics_on_paid_periods_write_nothing(
    invoke: Callable[..., Result], url: str, prefix: str, toml: Callable[[str, str], str]
) -> None:
    """Numbers with paid periods (one lapsed, one dialled, one never dialled) read by
    ``status`` and ``top`` with ``--expiring-within`` and by ``metrics --once``: the server is
    the same afterwards."""
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    terms = toml(
        "terms.toml",
        f'timezone = "Asia/Shanghai"\n'
        f'[numbers."{A}"]\npaid_until = {today + dt.timedelta(days=3)}\n'
        f'[numbers."{B}"]\npaid_until = {today - dt.timedelta(days=2)}\n'
        f'[numbers."{C}"]\npaid_until = {today + dt.timedelta(days=1)}\n',
    )
    options: dict[str, Any] = {"key_prefix": prefix, "owner_id": "switch-7", "config": terms}
    with SyncThrottle.from_url(url, **options) as dialer:
        dialer.acquire(A, token="call-1", timeout=0)
        dialer.set_state(D, "flagged", reason="spam label")
        clients = _clients(url)
        before = _keyspace(clients, prefix)
        args = ["--url", url, "--prefix", prefix, "--config", terms]

        result = invoke("status", *args, "--json", "--holders", "--expiring-within", "4")
        assert result.exit_code == 0, result.output
        rows = {row["number"]: row for row in json.loads(result.stdout)["numbers"]}
        assert sorted(rows) == [A, B, C]
        assert (rows[A]["in_use"], rows[A]["days_left"]) == (1, 4)
        assert (rows[B]["state"], rows[C]["expires"]) == ("expired", "expires in 2 days")
        result = invoke("top", *args, "--iterations", "1", "--expiring-within", "0")
        assert result.exit_code == 0, result.output
        assert "expired yesterday" in result.stdout
        result = invoke("metrics", *args, "--once")
        assert result.exit_code == 0, result.output
        assert f'callthrottle_number_days_left{{number="{B}"}} -1.0' in result.stdout
        _assert_same(before, _keyspace(clients, prefix))
