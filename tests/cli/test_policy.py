"""``callthrottle policy``: show, diff, apply, history and restore of the carrier policy
published on a real Redis (and a Redis Cluster for the read-only checks); apply and restore ask
on a real terminal (a pty) and write nothing when declined or raced."""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from callthrottle.backends._keys import glob_escape
from callthrottle.sync import SyncThrottle
from tests.cli.test_read_only import _assert_same, _clients
from tests.cli.test_read_only import _keyspace as _dumps

if TYPE_CHECKING:
    from collections.abc import Callable

    from click.testing import Result

    import redis

pytestmark = pytest.mark.redis

SRC = Path(__file__).resolve().parents[2] / "src"
A, B, C = "+8657188880001", "+8657188880002", "+8657188880003"

#: A's cap comes from its profile (3), B's is its own (15), C's the default limit.
V1 = f"""
[profiles.mobile]
cap = 3
rates = "100/hour"
[numbers."{A}"]
profile = "mobile"
[numbers."{B}"]
cap = 15
[pools.sales]
numbers = ["{A}", "{B}", "{C}"]
[trunks.sip-1]
cap = 40
rates = "500/day"
[feedback.477]
action = "cooldown"
seconds = 3600
"""
V2 = V1.replace("cap = 3", "cap = 2")  # the mobile carrier lowers its cap
V3 = V1.replace("cap = 15", "cap = 9")
#: A moves to a tenant: its keys move under the tenant's hash tag.
MOVED = V1 + f'[tenants.acme]\ncap = 50\n[numbers."{C}"]\ntenant = "acme"\n'


@pytest.fixture
def toml(tmp_path: Path) -> Callable[[str, str], str]:
    def write(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def files(toml: Callable[[str, str], str]) -> dict[str, str]:
    return {
        name: toml(f"{name}.toml", text)
        for name, text in (("v1", V1), ("v2", V2), ("v3", V3), ("moved", MOVED))
    }


def _keyspace(clients: list[redis.Redis], prefix: str) -> Any:
    """Every key's DUMP and expiry (see ``test_read_only``), except that a hash is its fields
    and values: the published policy is a hash large enough to be a hash table, which Redis
    rehashes a step at a time on each lookup, so that a mere read can change the order in
    which DUMP writes its fields, not what they hold."""
    keys, functions = _dumps(clients, prefix)
    for client in clients:
        for key in client.scan_iter(match=glob_escape(prefix) + "*", _type="hash"):
            content = sorted(client.hgetall(key).items())
            keys[key] = (repr(content).encode(), keys[key][1])
    return keys, functions


def _audit_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "callthrottle.audit"]


def _follower(redis_url: str, prefix: str) -> SyncThrottle:
    options: dict[str, Any] = {"key_prefix": prefix, "policy": "follow"}
    return SyncThrottle.from_url(redis_url, **options)


def _read_until(fd: int, marker: bytes, timeout: float = 30.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while marker not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in {out.decode(errors='replace')!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the command closed the terminal
                chunk = b""
            assert chunk, f"the command ended without {marker!r}: {out.decode(errors='replace')}"
            out += chunk
    return out


def _on_a_terminal(
    args: list[str], answer: str, meanwhile: Callable[[], None] | None = None
) -> tuple[int, str]:
    """Run ``python -m callthrottle ARGS`` on a pseudo-terminal; at its question, run
    ``meanwhile`` and then type ``answer``. Returns the exit status and everything it printed."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "callthrottle", *args],
        stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    try:
        out = _read_until(master, b"[y/N]")
        if meanwhile is not None:
            meanwhile()
        os.write(master, answer.encode() + b"\n")
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            out += chunk
        return process.wait(timeout=30), out.decode(errors="replace")
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()


def test_show_says_none_is_published_then_shows_the_applied_policy(
    invoke: Callable[..., Result], redis_args: list[str], files: dict[str, str]
) -> None:
    result = invoke("policy", "show", *redis_args)
    assert result.exit_code == 0, result.output
    assert "no policy is published" in result.stdout
    result = invoke("policy", "show", *redis_args, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) is None

    applied = invoke(
        "policy", "apply", *redis_args, files["v1"], "--comment", "carrier contract", "--yes"
    )
    assert applied.exit_code == 0, applied.output

    result = invoke("policy", "show", *redis_args)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "version 1" in out
    assert "carrier contract" in out
    assert "mobile" in out
    assert "100/hour" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows[A][:4] == ["3", "profile", "mobile", "100/hour"]
    assert rows[B][:2] == ["15", "number"]
    assert rows[C][:2] == ["20", "default_limit"]  # only in a pool
    assert rows["sales"] == ["least-loaded", A, B, C]
    assert rows["trunk"] == ["sip-1", "40", "0", "500/day"]
    assert rows["477"] == ["cooldown", "seconds", "3600"]

    result = invoke("policy", "show", *redis_args, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["version"] == 1
    assert shown["comment"] == "carrier contract"
    assert shown["default_limit"] == 20
    assert shown["config"]["profiles"]["mobile"]["cap"] == 3
    assert shown["config"]["numbers"][B] == {"cap": 15}
    assert len(shown["digest"]) == 64
    assert shown["digest"][:12] in out


def test_an_unreachable_backend_exits_1_naming_it(
    invoke: Callable[..., Result], files: dict[str, str]
) -> None:
    url = "redis://127.0.0.1:1/0"
    for command in (["show"], ["diff", files["v1"]], ["history"], ["apply", files["v1"], "-y"]):
        result = invoke("policy", command[0], "--url", url, *command[1:])
        assert result.exit_code == 1, result.output
        assert f"{url} is unreachable" in result.output


def test_diff_exits_1_on_differences_0_when_identical_2_on_a_bad_file(
    invoke: Callable[..., Result],
    redis_args: list[str],
    files: dict[str, str],
    toml: Callable[[str, str], str],
) -> None:
    result = invoke("policy", "diff", *redis_args, files["v1"])
    assert result.exit_code == 1, result.output
    assert "no policy is published" in result.stdout
    assert f'+ numbers."{B}".cap: 15' in result.stdout

    assert invoke("policy", "apply", *redis_args, files["v1"], "--yes").exit_code == 0

    result = invoke("policy", "diff", *redis_args, files["v1"])
    assert result.exit_code == 0, result.output
    assert "identical" in result.stdout
    result = invoke("policy", "diff", *redis_args, files["v2"])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[-1] == "~ profiles.mobile.cap: 3 -> 2"
    result = invoke("policy", "diff", *redis_args, files["v1"], "--default-limit", "30")
    assert result.exit_code == 1, result.output
    assert "~ default_limit: 20 -> 30" in result.stdout

    bad = toml("bad.toml", "[profiles.mobile]\ncap = -1\n")
    result = invoke("policy", "diff", *redis_args, bad)
    assert result.exit_code == 2, result.output
    assert "cap" in result.output
    result = invoke("policy", "diff", *redis_args, toml("broken.toml", "[numbers\n"))
    assert result.exit_code == 2, result.output
    assert "TOML" in result.output
    result = invoke("policy", "diff", *redis_args, files["v1"] + ".missing")
    assert result.exit_code == 2, result.output


def test_apply_publishes_for_every_process_and_writes_an_audit_line(
    invoke: Callable[..., Result],
    redis_args: list[str],
    redis_url: str,
    prefix: str,
    files: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callthrottle.audit")
    result = invoke(
        "policy", "apply", *redis_args, files["v1"], "--comment", "new contract", "--yes"
    )
    assert result.exit_code == 0, result.output
    assert f'+ numbers."{B}".cap: 15' in result.stdout  # the diff is shown
    assert "version 1 published" in result.stdout
    [line] = _audit_lines(caplog)
    assert "action=policy-apply" in line
    assert 'result="version 1 published"' in line
    assert 'comment="new contract"' in line
    assert line in result.stderr

    with _follower(redis_url, prefix) as throttle:
        assert throttle.policy_version == 1
        assert throttle.usage(A).limit == 3
        assert throttle.usage(B).limit == 15
        assert throttle.pool_members("sales") == [A, B, C]  # its pools are published with it

    result = invoke("policy", "apply", *redis_args, files["v2"], "-y")
    assert result.exit_code == 0, result.output
    assert "version 2 published" in result.stdout
    with _follower(redis_url, prefix) as throttle:
        assert throttle.policy_version == 2
        assert throttle.usage(A).limit == 2


def test_apply_declined_on_the_terminal_writes_nothing(
    invoke: Callable[..., Result],
    redis_args: list[str],
    redis_url: str,
    prefix: str,
    files: dict[str, str],
) -> None:
    assert invoke("policy", "apply", *redis_args, files["v1"], "--yes").exit_code == 0
    clients = _clients(redis_url)
    before = _keyspace(clients, prefix)

    code, out = _on_a_terminal(["policy", "apply", *redis_args, files["v2"]], "n")
    assert code == 1, out
    assert "~ profiles.mobile.cap: 3 -> 2" in out
    assert "Publish this policy as version 2?" in out
    _assert_same(before, _keyspace(clients, prefix))


def test_apply_without_a_terminal_needs_yes(
    invoke: Callable[..., Result],
    redis_args: list[str],
    redis_url: str,
    prefix: str,
    files: dict[str, str],
) -> None:
    clients = _clients(redis_url)
    before = _keyspace(clients, prefix)
    result = invoke("policy", "apply", *redis_args, files["v1"], input="y\n")
    assert result.exit_code == 2, result.output
    assert "--yes" in result.output
    _assert_same(before, _keyspace(clients, prefix))


def test_apply_raced_by_another_publish_writes_nothing(
    invoke: Callable[..., Result],
    redis_args: list[str],
    redis_url: str,
    prefix: str,
    files: dict[str, str],
) -> None:
    assert invoke("policy", "apply", *redis_args, files["v1"], "--yes").exit_code == 0
    clients = _clients(redis_url)
    after_the_other: list[Any] = []

    def another_publish() -> None:  # while the first asks
        result = invoke("policy", "apply", *redis_args, files["v3"], "--yes")
        assert result.exit_code == 0, result.output
        after_the_other.append(_keyspace(clients, prefix))

    code, out = _on_a_terminal(["policy", "apply", *redis_args, files["v2"]], "y", another_publish)
    assert code == 1, out
    assert "policy version 2 is in force, not 1" in out
    _assert_same(after_the_other[0], _keyspace(clients, prefix))
    with _follower(redis_url, prefix) as throttle:
        assert throttle.policy_version == 2
        assert throttle.usage(A).limit == 3  # v3's, not v2's
        assert throttle.usage(B).limit == 9


def test_apply_of_the_policy_in_force_writes_nothing(
    invoke: Callable[..., Result],
    redis_args: list[str],
    redis_url: str,
    prefix: str,
    files: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert invoke("policy", "apply", *redis_args, files["v1"], "--yes").exit_code == 0
    caplog.set_level(logging.INFO, logger="callthrottle.audit")
    clients = _clients(redis_url)
    before = _keyspace(clients, prefix)
    result = invoke("policy", "apply", *redis_args, files["v1"], "--yes")
    assert result.exit_code == 0, result.output
    assert "nothing to change: version 1 is this policy" in result.stdout
    _assert_same(before, _keyspace(clients, prefix))
    assert _audit_lines(caplog) == []


def test_history_lists_the_versions_newest_first(
    invoke: Callable[..., Result], redis_args: list[str], files: dict[str, str]
) -> None:
    result = invoke("policy", "history", *redis_args)
    assert result.exit_code == 0, result.output
    assert "no policy is published" in result.stdout
    for name in ("v1", "v2", "v3"):
        applied = invoke("policy", "apply", *redis_args, files[name], "-y", "--comment", name)
        assert applied.exit_code == 0, applied.output

    result = invoke("policy", "history", *redis_args)
    assert result.exit_code == 0, result.output
    rows = [
        line.split()
        for line in result.stdout.splitlines()
        if line.split()[:1] in (["3"], ["2"], ["1"])
    ]
    assert [row[0] for row in rows] == ["3", "2", "1"]
    assert [row[-1] for row in rows] == ["v3", "v2", "v1"]
    assert "in force" in " ".join(rows[0])
    assert not any("in force" in " ".join(row) for row in rows[1:])

    result = invoke("policy", "history", *redis_args, "--json", "--count", "1")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [(v["version"], v["in_force"], v["comment"]) for v in listed] == [
        (3, True, "v3"),
        (2, False, "v2"),
    ]
    assert all(len(v["digest"]) == 64 for v in listed)


def test_restore_publishes_an_old_version_again(
    invoke: Callable[..., Result],
    redis_args: list[str],
    redis_url: str,
    prefix: str,
    files: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert invoke("policy", "apply", *redis_args, files["v1"], "--yes").exit_code == 0
    assert invoke("policy", "apply", *redis_args, files["v2"], "--yes").exit_code == 0
    caplog.set_level(logging.INFO, logger="callthrottle.audit")

    result = invoke("policy", "restore", *redis_args, "1", "--yes")
    assert result.exit_code == 0, result.output
    assert "~ profiles.mobile.cap: 2 -> 3" in result.stdout
    assert "version 3 published" in result.stdout
    [line] = _audit_lines(caplog)
    assert "action=policy-restore" in line
    assert 'comment="restore of version 1"' in line
    with _follower(redis_url, prefix) as throttle:
        assert throttle.policy_version == 3
        assert throttle.usage(A).limit == 3
        published = throttle.published_policy()
        [v2, v1] = throttle.policy_history()
        assert published is not None
        assert published.digest == v1.digest != v2.digest
        assert published.comment == "restore of version 1"

    clients = _clients(redis_url)
    before = _keyspace(clients, prefix)
    result = invoke("policy", "restore", *redis_args, "1", "--yes")  # version 3 is it
    assert result.exit_code == 0, result.output
    assert "nothing to change" in result.stdout
    result = invoke("policy", "restore", *redis_args, "7", "--yes")
    assert result.exit_code == 2, result.output
    assert "version 7" in result.output
    _assert_same(before, _keyspace(clients, prefix))


def test_a_policy_that_moves_numbers_needs_moves_numbers(
    invoke: Callable[..., Result],
    redis_args: list[str],
    redis_url: str,
    prefix: str,
    files: dict[str, str],
) -> None:
    assert invoke("policy", "apply", *redis_args, files["v1"], "--yes").exit_code == 0
    clients = _clients(redis_url)
    before = _keyspace(clients, prefix)
    result = invoke("policy", "apply", *redis_args, files["moved"], "--yes")
    assert result.exit_code == 2, result.output
    assert "refuse" in result.output
    assert "--moves-numbers" in result.output
    _assert_same(before, _keyspace(clients, prefix))

    result = invoke("policy", "apply", *redis_args, files["moved"], "--yes", "--moves-numbers")
    assert result.exit_code == 0, result.output
    assert "refuse" in result.output
    assert "version 2 published" in result.stdout
    with _follower(redis_url, prefix) as throttle:
        assert throttle.policy_version == 2
        assert throttle.pool_members("sales") == [A, B, C]


@pytest.mark.parametrize("where", ["redis", "cluster"])
def test_show_diff_and_history_write_nothing(
    invoke: Callable[..., Result],
    where: str,
    prefix: str,
    files: dict[str, str],
    request: pytest.FixtureRequest,
) -> None:
    url = str(request.getfixturevalue("redis_url" if where == "redis" else "cluster_url"))
    args = ["--url", url, "--prefix", prefix]
    clients = _clients(url)
    reads = [
        ["show"], ["show", "--json"], ["diff", files["v1"]], ["diff", files["v2"]], ["diff", files["moved"]],
        ["history"], ["history", "--json", "--count", "5"],
    ]  # fmt: skip
    before = _keyspace(clients, prefix)  # nothing published yet
    for command in reads:
        assert invoke("policy", command[0], *args, *command[1:]).exit_code in (0, 1)
    _assert_same(before, _keyspace(clients, prefix))

    for name in ("v1", "v2"):
        assert invoke("policy", "apply", *args, files[name], "--yes").exit_code == 0
    with SyncThrottle.from_url(url, key_prefix=prefix, policy="follow") as dialer:
        dialer.acquire(A, token="call-1", timeout=0)
        before = _keyspace(clients, prefix)
        for command in reads:
            result = invoke("policy", command[0], *args, *command[1:])
            assert result.exit_code in (0, 1), result.output
        _assert_same(before, _keyspace(clients, prefix))


def test_apply_on_a_cluster_writes_pools_where_the_policy_puts_them(
    invoke: Callable[..., Result],
    cluster_url: str,
    prefix: str,
    toml: Callable[[str, str], str],
) -> None:
    """On a Cluster a pool whose numbers share a tenant lives under the tenant's hash tag (the
    slot of its numbers' keys): apply writes it there, where a throttle following the policy
    picks from it."""
    tenant = toml(
        "tenant.toml",
        f'[tenants.acme]\ncap = 50\n[numbers."{A}"]\ntenant = "acme"\n'
        f'[numbers."{B}"]\ntenant = "acme"\n[pools.acme]\nnumbers = ["{A}", "{B}"]\n',
    )
    args = ["--url", cluster_url, "--prefix", prefix]
    result = invoke("policy", "apply", *args, tenant, "--yes")
    assert result.exit_code == 0, result.output
    with SyncThrottle.from_url(cluster_url, key_prefix=prefix, policy="follow") as throttle:
        assert throttle.pool_members("acme") == [A, B]
        lease = throttle.acquire_from("acme", timeout=0)
        assert lease.number == A
        assert throttle.usage(A).in_use == 1


def test_a_pool_a_cluster_cannot_hold_is_refused_before_anything_is_written(
    invoke: Callable[..., Result],
    cluster_url: str,
    prefix: str,
    toml: Callable[[str, str], str],
) -> None:
    """On a Cluster a pool's numbers must share a slot: a pool of two tenants' numbers is bad
    input, refused before the policy is published (no version in force afterwards)."""
    mixed = toml(
        "mixed.toml",
        f'[tenants.acme]\n[tenants.beta]\n[numbers."{A}"]\ntenant = "acme"\n'
        f'[numbers."{B}"]\ntenant = "beta"\n[pools.mixed]\nnumbers = ["{A}", "{B}"]\n',
    )
    args = ["--url", cluster_url, "--prefix", prefix]
    result = invoke("policy", "apply", *args, mixed, "--yes")
    assert result.exit_code == 2, result.output
    assert "share the pool's hash tag" in result.output
    shown = invoke("policy", "show", *args, "--json")
    assert shown.exit_code == 0, shown.output
    assert shown.output.strip() == "null"
