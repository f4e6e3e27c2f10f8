"""Session leases: kept alive by one keep-alive per session, from any process; they lapse
together once nobody keeps the session alive, and never outlive their deadline."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import InvalidArgument, Lease, ReleaseOutcome, Throttle, ThrottleError, Usage

from .test_fifo import NUMBER

if TYPE_CHECKING:
    from ..conftest import ThrottleFactory

SESSION = "kamailio@sbc-1"
TTL = 0.4  # the session's lease_ttl: every throttle of a session uses the same
OTHER = "+8657188880002"  # on the same trunk as NUMBER in TRUNK


async def in_use(throttle: Throttle, number: str = NUMBER, limit: int = 20) -> int:
    return (await throttle.usage(number, limit=limit)).in_use


async def keep_alive_for(throttle: Throttle, seconds: float) -> None:
    """Call ``throttle.keepalive()`` every third of a TTL for ``seconds``."""
    with anyio.move_on_after(seconds):
        while True:
            await throttle.keepalive()
            await anyio.sleep(TTL / 3)


@pytest.mark.parametrize("taker_stays_open", [False, True], ids=["taker-closed", "taker-open"])
async def test_a_session_lease_outlives_its_ttl_while_another_throttle_keeps_the_session_alive(
    new_throttle: ThrottleFactory, taker_stays_open: bool
) -> None:
    """The throttle that took the lease never keeps the session alive (closed, or opened with
    keepalive=False): another throttle's keepalive() calls alone keep the lease counted."""
    async with (
        new_throttle(session=SESSION, lease_ttl=TTL, keepalive=False) as keeper,
        new_throttle() as observer,
    ):
        taker = new_throttle(session=SESSION, lease_ttl=TTL, keepalive=False)
        async with taker:
            lease = await taker.acquire(NUMBER, timeout=0)
            if taker_stays_open:
                await keep_alive_for(keeper, 5 * TTL)
                assert await in_use(observer) == 1
                assert await taker.end_call(lease) is ReleaseOutcome.RELEASED
        if not taker_stays_open:
            await keep_alive_for(keeper, 5 * TTL)
            assert await in_use(observer) == 1
            assert await keeper.end_call(lease) is ReleaseOutcome.RELEASED
        assert await in_use(observer) == 0


async def test_a_session_lease_lapses_within_a_ttl_once_its_keepalive_stops(
    new_throttle: ThrottleFactory,
) -> None:
    """Nobody releases it: a caller waiting on the full number is admitted once the session's
    last keep-alive is a TTL old, and not before."""
    async with (
        new_throttle(session=SESSION, lease_ttl=TTL, keepalive=False) as taker,
        new_throttle() as waiter,
    ):
        held = await taker.acquire(NUMBER, limit=1, timeout=0)
        await keep_alive_for(taker, 3 * TTL)
        last_keepalive = anyio.current_time()
        await taker.keepalive()
        admitted = await waiter.acquire(NUMBER, limit=1, timeout=5)
        waited = anyio.current_time() - last_keepalive
        assert TTL - 0.05 <= waited <= TTL + 1.0
        assert await waiter.usage(NUMBER, limit=1) == Usage(in_use=1, limit=1, waiting=0)
        assert await taker.end_call(held) is ReleaseOutcome.EXPIRED
        assert await waiter.end_call(admitted) is ReleaseOutcome.RELEASED


async def test_max_hold_ends_a_session_lease_kept_alive(new_throttle: ThrottleFactory) -> None:
    async with (
        new_throttle(session=SESSION, lease_ttl=0.3, max_hold=1.0) as throttle,
        new_throttle() as observer,
    ):
        started = anyio.current_time()
        await throttle.acquire(NUMBER, timeout=0)
        await anyio.sleep(0.6)  # two TTLs: the heartbeat's keep-alives hold it
        assert await in_use(observer) == 1
        with anyio.fail_after(3):
            while await in_use(observer) != 0:
                await anyio.sleep(0.02)
        assert anyio.current_time() - started >= 1.0 - 0.05


async def test_release_owner_of_a_session_frees_its_leases_at_once(
    new_throttle: ThrottleFactory,
) -> None:
    async with (
        new_throttle(session=SESSION, lease_ttl=TTL) as session,
        new_throttle(lease_ttl=TTL) as operator,
    ):
        await session.acquire(NUMBER, timeout=0)
        await session.acquire(OTHER, timeout=0)
        assert await operator.release_owner(SESSION) == 2
        assert await in_use(operator) == 0
        assert await in_use(operator, OTHER) == 0
        # The session's heartbeat goes on: later leases of the session live as before.
        lease = await session.acquire(NUMBER, timeout=0)
        await anyio.sleep(3 * TTL)
        assert await in_use(operator) == 1
        assert await session.end_call(lease) is ReleaseOutcome.RELEASED


async def test_a_release_from_another_throttle_of_the_session_is_the_owners_own(
    new_throttle: ThrottleFactory,
) -> None:
    async with (
        new_throttle(session=SESSION, lease_ttl=TTL) as dialer,
        new_throttle(session=SESSION, lease_ttl=TTL) as hangup_handler,
    ):
        lease = await dialer.acquire(NUMBER, token="call-42", timeout=0)
        assert lease.owner == dialer.owner_id == hangup_handler.owner_id == SESSION
        handle = Lease(NUMBER, "call-42")
        assert await hangup_handler.end_call(handle) is ReleaseOutcome.RELEASED
        assert await in_use(dialer) == 0
        assert await dialer.end_call(lease) is ReleaseOutcome.UNKNOWN


async def test_end_call_says_what_it_found(new_throttle: ThrottleFactory) -> None:
    async with (
        new_throttle(lease_ttl=TTL) as throttle,
        new_throttle(session=SESSION, lease_ttl=TTL, keepalive=False) as script,
    ):
        lease = await throttle.acquire(NUMBER, timeout=0)
        await anyio.sleep(2 * TTL)  # renewed by the heartbeat: live
        assert await throttle.end_call(lease) is ReleaseOutcome.RELEASED
        assert await throttle.end_call(lease) is ReleaseOutcome.UNKNOWN  # released twice
        assert await throttle.end_call(Lease(NUMBER, "never-taken")) is ReleaseOutcome.UNKNOWN
        assert await throttle.release(Lease(NUMBER, "never-taken")) is False
        # Nobody keeps the script's session alive: its lease lapses, then its call ends.
        lapsed = await script.acquire(NUMBER, timeout=0)
        await anyio.sleep(2 * TTL)
        assert await in_use(throttle) == 0
        assert await throttle.end_call(Lease(NUMBER, lapsed.token)) is ReleaseOutcome.EXPIRED
        assert await script.end_call(lapsed) is ReleaseOutcome.UNKNOWN  # the record is used up
        again = await script.acquire(NUMBER, timeout=0)
        await anyio.sleep(2 * TTL)
        assert await script.release(again) is False  # release() says only "not released"


TRUNK = {"trunks": {"t1": {"cap": 1}}, "numbers": {NUMBER: {"trunk": "t1"}, OTHER: {"trunk": "t1"}}}


async def test_a_trunk_slot_held_by_a_dead_sessions_lease_is_freed(
    new_throttle: ThrottleFactory,
) -> None:
    async with (
        new_throttle(session=SESSION, lease_ttl=TTL, keepalive=False, config=TRUNK) as script,
        new_throttle(config=TRUNK) as dialer,
    ):
        await script.acquire(NUMBER, timeout=0)
        await script.keepalive()
        started = anyio.current_time()
        # Waits for the trunk on another number: only the session's lapse frees its slot.
        admitted = await dialer.acquire(OTHER, timeout=5)
        assert TTL - 0.05 <= anyio.current_time() - started <= TTL + 1.0
        assert await dialer.group_usage("trunk", "t1") == Usage(in_use=1, limit=1, waiting=0)
        assert await in_use(dialer) == 0
        await dialer.release(admitted)


@pytest.mark.direct_only("reads the log records of the throttle, which a facade runs elsewhere")
async def test_closing_a_session_throttle_leaves_its_leases_with_the_session(
    new_throttle: ThrottleFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="callthrottle")
    async with new_throttle(session=SESSION, lease_ttl=TTL) as keeper:
        async with new_throttle(session=SESSION, lease_ttl=TTL) as closing:
            first = await closing.acquire(NUMBER, timeout=0)
            await closing.acquire(OTHER, timeout=0)
        assert await in_use(keeper) == 1
        await anyio.sleep(3 * TTL)  # kept alive by the keeper's heartbeat
        assert await in_use(keeper) == 1
        assert await in_use(keeper, OTHER) == 1
        assert await keeper.end_call(first) is ReleaseOutcome.RELEASED
        assert await keeper.release_owner(SESSION) == 1
    [record] = [r for r in caplog.records if "stay with the session" in r.message]
    assert "2 lease(s)" in record.message


async def test_without_a_session_closing_still_gives_leases_back(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle() as observer:
        async with new_throttle(lease_ttl=TTL) as closing:
            await closing.acquire(NUMBER, timeout=0)
        assert await in_use(observer) == 0


BAD_SESSION_OPTIONS: list[tuple[dict[str, Any], str, str]] = [
    ({"session": ""}, "session", "session must be a non-empty str"),
    ({"session": "sbc 1"}, "session", "session must be free of whitespace"),
    ({"session": 7}, "session", "session must be a non-empty str"),
    ({"session": SESSION, "owner_id": "dialer-7"}, "owner_id", "owner_id must be None or"),
    ({"keepalive": False}, "keepalive", "keepalive must be True unless a session is given"),
    ({"session": SESSION, "keepalive": "no"}, "keepalive", "keepalive must be True or False"),
]


@pytest.mark.parametrize(("options", "argument", "message"), BAD_SESSION_OPTIONS)
async def test_bad_session_arguments(
    new_throttle: ThrottleFactory, options: dict[str, Any], argument: str, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        new_throttle(**options)
    assert caught.value.argument == argument
    with pytest.raises(InvalidArgument, match=message):
        Throttle.from_url("memory://", **options)
    async with new_throttle() as observer:
        assert await observer.known_numbers() == []


async def test_a_session_named_twice_is_one_owner(new_throttle: ThrottleFactory) -> None:
    async with new_throttle(session=SESSION, owner_id=SESSION) as throttle:
        assert throttle.owner_id == throttle.session == SESSION


async def test_keepalive_needs_a_session(new_throttle: ThrottleFactory) -> None:
    async with new_throttle() as throttle:
        assert throttle.session is None
        with pytest.raises(ThrottleError, match="no session"):
            await throttle.keepalive()


async def test_every_throttle_of_a_session_hears_of_its_grants(
    new_throttle: ThrottleFactory,
) -> None:
    """A caller of the first throttle of a session, waiting in line, is handed the slot as it
    frees: the second throttle's listener does not take the session's events from it (else it
    would wait for its heartbeat, a third of the 30 s TTL)."""
    async with (
        new_throttle() as holder,
        new_throttle(session=SESSION) as first,
        new_throttle(session=SESSION) as second,
    ):
        held = await holder.acquire(NUMBER, limit=1, timeout=0)
        async with anyio.create_task_group() as tg:
            got: list[Lease] = []

            async def wait() -> None:
                got.append(await first.acquire(NUMBER, limit=1, timeout=5))

            tg.start_soon(wait)
            with anyio.fail_after(2):
                while (await holder.usage(NUMBER, limit=1)).waiting != 1:
                    await anyio.sleep(0.01)
            released_at = anyio.current_time()
            await holder.release(held)
        assert anyio.current_time() - released_at < 1.0
        assert await second.end_call(got[0]) is ReleaseOutcome.RELEASED
