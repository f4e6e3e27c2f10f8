"""The thread-free blocking client: session leases taken and given back from the calling thread."""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from typing import TYPE_CHECKING, cast

import pytest

from callthrottle import (
    AcquireTimeout,
    InvalidArgument,
    Lease,
    NumberUnavailable,
    ReleaseOutcome,
    Throttle,
)
from callthrottle.blocking import SessionClient
from callthrottle.sync import SyncThrottle

if TYPE_CHECKING:
    import redis

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"
CONFIG = {"numbers": {NUMBER: {"cap": 2}}}


def client(redis_url: str, prefix: str, session: str = "host-a", **kwargs: object) -> SessionClient:
    settings: dict[str, object] = {"config": CONFIG, "lease_ttl": 1.0, **kwargs}
    return SessionClient.from_url(redis_url, session=session, key_prefix=prefix, **settings)


def live(sync_client: redis.Redis, prefix: str) -> int:
    """Live leases on NUMBER, read from the server's side: each holder's lease score in the
    future, and its session's life the current one and not ended."""
    now_s, now_us = sync_client.time()
    now = now_s * 1000 + now_us // 1000
    key = f"{prefix}{{{NUMBER}}}:n:{NUMBER}:"
    # session name -> "<when its life ends>\t<life>\t<when the life before ended>"
    records = cast("dict[bytes, bytes]", sync_client.hgetall(f"{prefix}sessions"))
    sessions = {
        name: [int(field) for field in value.split(b"\t")] for name, value in records.items()
    }
    count = 0
    for token in cast("list[bytes]", sync_client.zrangebyscore(key + "h", now, "+inf")):
        meta = cast("bytes", sync_client.hget(key + "m", token) or b"").split(b"\t")
        ends, life, _ = sessions.get(meta[0], [0, 0, 0])
        if int(meta[-1]) == life and ends > now:  # in the session's current life, not ended
            count += 1
    return count


def test_acquire_and_end_call_run_in_the_calling_thread(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    threads = threading.active_count()
    with client(redis_url, prefix) as dialer:
        first = dialer.acquire(NUMBER, token="call-1")
        second = dialer.acquire(NUMBER, token="call-2")
        assert threading.active_count() == threads  # no thread was started
        assert live(sync_client, prefix) == 2
        with pytest.raises(AcquireTimeout):
            dialer.acquire(NUMBER, token="call-3")  # the cap is 2
        assert dialer.end_call(first) is ReleaseOutcome.RELEASED
        assert dialer.end_call(first) is ReleaseOutcome.UNKNOWN
        assert dialer.release(second) is True
        assert live(sync_client, prefix) == 0


def test_leases_live_while_another_process_keeps_the_session_and_lapse_after(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    with client(redis_url, prefix) as dialer, client(redis_url, prefix) as timer:
        dialer.acquire(NUMBER, token="call-1")
        dialer.acquire(NUMBER, token="call-2")
        for _ in range(6):  # 3 s: three lease TTLs, kept alive by the other client
            time.sleep(0.5)
            timer.keepalive()
        assert live(sync_client, prefix) == 2
        with pytest.raises(AcquireTimeout):
            dialer.acquire(NUMBER, token="call-3")
        # The keep-alive stops: a caller waiting gets a slot once the session lapsed, although
        # nobody released anything.
        other = client(redis_url, prefix, session="host-b")
        started = time.monotonic()
        lease = other.acquire(NUMBER, token="call-4", timeout=3.0)
        assert time.monotonic() - started <= 1.5
        assert live(sync_client, prefix) == 1
        assert dialer.end_call(Lease(NUMBER, "call-1")) is ReleaseOutcome.EXPIRED
        assert other.end_call(lease) is ReleaseOutcome.RELEASED
        other.close()


async def test_the_blocking_client_and_a_throttle_share_the_cap(
    redis_url: str, prefix: str
) -> None:
    with client(redis_url, prefix) as dialer:
        dialer.acquire(NUMBER, token="call-1")
        async with Throttle.from_url(redis_url, key_prefix=prefix, config=CONFIG) as throttle:
            await throttle.acquire(NUMBER, timeout=0)
            assert (await throttle.usage(NUMBER)).in_use == 2
            with pytest.raises(AcquireTimeout):
                dialer.acquire(NUMBER, token="call-2")


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"session": ""}, "session"),
        ({"lease_ttl": -1}, "lease_ttl"),
        ({"default_limit": "x"}, "default_limit"),
        ({"calendar": "today"}, "calendar"),
    ],
)
def test_bad_settings_are_refused_by_name(
    redis_url: str, prefix: str, kwargs: dict[str, object], argument: str
) -> None:
    settings = {"session": "host-a", **kwargs}
    with pytest.raises(InvalidArgument) as caught:
        SessionClient.from_url(redis_url, key_prefix=prefix, **settings)  # type: ignore[arg-type]
    assert caught.value.argument == argument


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"timeout": -1}, "timeout"), ({"limit": "x"}, "limit"), ({"token": ""}, "token")],
)
def test_bad_requests_are_refused_by_name_and_write_nothing(
    redis_url: str, prefix: str, sync_client: redis.Redis, kwargs: dict[str, object], argument: str
) -> None:
    with client(redis_url, prefix) as dialer:
        with pytest.raises(InvalidArgument) as caught:
            dialer.acquire(NUMBER, **kwargs)  # type: ignore[arg-type]
        assert caught.value.argument == argument
    assert sync_client.keys(f"{prefix}*") == []


def test_national_numbers_are_read_in_the_default_region(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    with client(redis_url, prefix, default_region="CN") as dialer:
        lease = dialer.acquire("057188880001", token="call-1")
        assert lease.number == NUMBER
        assert live(sync_client, prefix) == 1
        assert dialer.end_call(Lease("0571 8888 0001", "call-1")) is ReleaseOutcome.RELEASED


class _Interrupted(Exception):
    """Raised into a waiting acquire (a host's request timeout, a signal)."""


def test_a_wait_interrupted_leaves_no_place_in_line(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """An exception raised into a waiting acquire (between its asks) must not leave its place
    in line: else the next slot that frees is granted to a token nobody will ever release, a
    session lease that the session's keep-alive keeps counting up to max_hold."""

    def interrupt(*_: object) -> None:
        raise _Interrupted

    with client(redis_url, prefix) as dialer, client(redis_url, prefix) as waiter:
        first = dialer.acquire(NUMBER, token="call-1")
        dialer.acquire(NUMBER, token="call-2")  # the cap (2) is reached
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(_Interrupted):
                waiter.acquire(NUMBER, token="call-3", timeout=5.0)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert dialer.end_call(first) is ReleaseOutcome.RELEASED
        for _ in range(4):  # two TTLs, the session kept alive by its timer
            time.sleep(0.5)
            dialer.keepalive()
        assert live(sync_client, prefix) == 1  # call-2 only: call-3 was never placed


@pytest.mark.parametrize("token", ["", "two words", None])
def test_end_call_refuses_a_bad_token_by_name(
    redis_url: str, prefix: str, sync_client: redis.Redis, token: object
) -> None:
    """As Throttle.end_call: a lease's token is checked before anything is sent (an empty or
    spaced token, or none at all, is InvalidArgument naming ``token``, not a Redis failure)."""
    with client(redis_url, prefix) as dialer:
        with pytest.raises(InvalidArgument) as caught:
            dialer.end_call(Lease(NUMBER, token))  # type: ignore[arg-type]
        assert caught.value.argument == "token"
    assert sync_client.keys(f"{prefix}*") == []


def test_a_wait_ended_by_a_disabled_number_leaves_no_place_in_line(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """A waiting acquire told that the number was disabled meanwhile (NumberUnavailable)
    leaves the number's line, as a Throttle's does: else, once the number is enabled again
    and a slot frees, the slot goes to a token nobody holds, a session lease counted as long
    as the session is kept alive."""
    outcome: list[BaseException] = []

    def wait_for_a_slot(waiter: SessionClient) -> None:
        try:
            waiter.acquire(NUMBER, token="call-3", timeout=5.0)
        except BaseException as exc:  # noqa: BLE001 (the outcome is checked below)
            outcome.append(exc)

    with (
        client(redis_url, prefix) as dialer,
        client(redis_url, prefix) as waiter,
        SyncThrottle.from_url(redis_url, key_prefix=prefix, config=CONFIG) as admin,
    ):
        first = dialer.acquire(NUMBER, token="call-1")
        dialer.acquire(NUMBER, token="call-2")  # the cap (2) is reached
        thread = threading.Thread(target=wait_for_a_slot, args=(waiter,))
        thread.start()
        time.sleep(0.3)
        admin.set_state(NUMBER, "disabled")
        thread.join(5.0)
        assert [type(exc) for exc in outcome] == [NumberUnavailable]
        admin.set_state(NUMBER, "active")
        assert admin.usage(NUMBER).waiting == 0
        assert dialer.end_call(first) is ReleaseOutcome.RELEASED
        dialer.keepalive()
        assert live(sync_client, prefix) == 1  # call-2 only: call-3 was never placed


def test_a_published_policy_binds_the_blocking_client_too(redis_url: str, prefix: str) -> None:
    """The client decides with its config= until a policy is published; then the server
    refuses its requests as stale: with another config= it refuses calls (match), following
    it takes the published caps, at its next acquire."""
    from callthrottle import PolicyMismatch

    with (
        client(redis_url, prefix, "sbc-1") as matching,
        client(redis_url, prefix, "sbc-2", policy="follow") as following,
        SyncThrottle.from_url(redis_url, key_prefix=prefix, config=CONFIG) as publisher,
    ):
        held = following.acquire(NUMBER, timeout=0)  # cap 2 (its config), nothing published
        publisher.publish_policy({"numbers": {NUMBER: {"cap": 1}}}, comment="cap 1")
        with pytest.raises(AcquireTimeout):  # under its own cap (2) it would be granted
            following.acquire(NUMBER, timeout=0)
        with pytest.raises(PolicyMismatch, match="not this client's config"):
            matching.acquire(NUMBER, timeout=0)
        assert following.end_call(held) is ReleaseOutcome.RELEASED
        lease = following.acquire(NUMBER, timeout=0)
        with pytest.raises(AcquireTimeout):
            following.acquire(NUMBER, timeout=0)
        following.end_call(lease)


def test_a_wait_that_took_a_published_policy_moving_the_number_leaves_no_place_in_line(
    redis_url: str, prefix: str
) -> None:
    """The client's config= has NUMBER on its own; the published policy puts it in a tenant
    (its keys move under the tenant's tag). The client's first ask is stale, it takes the
    policy and waits in the line where the number now lives; when its wait times out, that
    place must go (not a place under the keys of its config=)."""
    tenant = {"tenants": {"acme": {"cap": 10}}, "numbers": {NUMBER: {"cap": 1, "tenant": "acme"}}}
    with SyncThrottle.from_url(redis_url, key_prefix=prefix, config=tenant) as publisher:
        publisher.publish_policy(comment="NUMBER dials for acme")
        publisher.acquire(NUMBER, timeout=0)  # its cap, 1, is taken
        with (
            client(redis_url, prefix, "sbc-1", policy="follow") as waiting,
            pytest.raises(AcquireTimeout),
        ):
            waiting.acquire(NUMBER, timeout=0.3)
        assert publisher.usage(NUMBER).waiting == 0


def test_the_blocking_client_refuses_a_lapsed_number_until_a_renewal_is_published(
    redis_url: str, prefix: str
) -> None:
    """By its own calendar, as a throttle: expired through the grace period, then released;
    a renewal published by any process admits calls at its next acquire."""
    lapsed = {"timezone": "UTC", "numbers": {NUMBER: {"cap": 2, "paid_until": "2027-01-31"}}}
    renewed = {"timezone": "UTC", "numbers": {NUMBER: {"cap": 2, "paid_until": "2027-02-28"}}}
    now = [dt.datetime(2027, 1, 31, 23, 59, tzinfo=dt.timezone.utc).timestamp()]
    with (
        client(
            redis_url, prefix, config=lapsed, policy="follow", calendar=lambda: now[0]
        ) as dialer,
        SyncThrottle.from_url(redis_url, key_prefix=prefix, config=lapsed) as publisher,
    ):
        dialer.end_call(dialer.acquire(NUMBER, timeout=0))
        now[0] += 60  # midnight, UTC
        with pytest.raises(NumberUnavailable, match="is expired \\(paid until 2027-01-31"):
            dialer.acquire(NUMBER, timeout=0)
        now[0] += 7 * 86400
        with pytest.raises(NumberUnavailable, match="is released") as caught:
            dialer.acquire(NUMBER, timeout=5)  # at once: it takes a renewal, not time
        assert caught.value.retry_after is None
        publisher.publish_policy(renewed, comment="renewed")
        dialer.end_call(dialer.acquire(NUMBER, timeout=0))


def test_the_blocking_client_refuses_a_number_a_newer_policy_ended_the_period_of(
    redis_url: str, prefix: str
) -> None:
    """The client decided with a policy paying the number; one ending its period is
    published: the server refuses the stale request, and the client, taking the newer policy,
    must refuse the lapsed number as a throttle does (not ask again and be granted)."""
    paid = {"timezone": "UTC", "numbers": {NUMBER: {"cap": 2, "paid_until": "2027-02-28"}}}
    ended = {"timezone": "UTC", "numbers": {NUMBER: {"cap": 2, "paid_until": "2027-02-01"}}}
    now = dt.datetime(2027, 2, 3, 10, tzinfo=dt.timezone.utc).timestamp()
    with (
        SyncThrottle.from_url(redis_url, key_prefix=prefix, config=paid) as publisher,
        client(redis_url, prefix, config=paid, policy="follow", calendar=lambda: now) as dialer,
    ):
        publisher.publish_policy(paid)
        dialer.end_call(dialer.acquire(NUMBER, timeout=0))
        publisher.publish_policy(ended, comment="not renewed")
        with pytest.raises(NumberUnavailable, match="is expired"):
            dialer.acquire(NUMBER, timeout=0)
        assert publisher.usage(NUMBER).in_use == 0


def test_a_refused_call_on_a_lapsed_number_costs_the_blocking_client_its_reads_only(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """As a throttle's: the read of the published policy, inside the grace period one of the
    number's run-time state (released by an operator, it is refused as such), and no
    withdrawal of a place in line it never took (a call that would have waited, refused
    before it asked); once released by the calendar, the policy read alone."""
    from .test_redis_backend import command_counts, round_trips_since

    lapsed = {"timezone": "UTC", "numbers": {NUMBER: {"cap": 2, "paid_until": "2027-01-31"}}}
    now = dt.datetime(2027, 2, 3, 10, tzinfo=dt.timezone.utc).timestamp()
    with client(redis_url, prefix, config=lapsed, calendar=lambda: now) as dialer:
        with pytest.raises(NumberUnavailable):
            dialer.acquire(NUMBER, timeout=5)  # connected, the policy read once
        before = command_counts(sync_client)
        with pytest.raises(NumberUnavailable):
            dialer.acquire(NUMBER, timeout=5)
        assert round_trips_since(sync_client, before) == {"fcall": 2}
        now += 7 * 86400  # released by the calendar: nothing more to read
        before = command_counts(sync_client)
        with pytest.raises(NumberUnavailable, match="is released"):
            dialer.acquire(NUMBER, timeout=5)
        assert round_trips_since(sync_client, before) == {"fcall": 1}
