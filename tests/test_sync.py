"""The blocking facade: the same semantics, from plain threads, on every backend."""

from __future__ import annotations

import inspect
import signal
import threading
import time
from collections import Counter
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from callthrottle import (
    AcquireTimeout,
    BackendUnavailable,
    Event,
    InvalidArgument,
    Lease,
    PoolExhausted,
    Throttle,
    Usage,
)
from callthrottle.backends import MemoryBackend
from callthrottle.sync import SyncThrottle

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

NUMBER = "+8657188880001"


@pytest.fixture(params=["memory", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    redis_url: str = request.getfixturevalue("redis_url")
    return redis_url


def options(url: str, prefix: str) -> dict[str, Any]:
    return {} if url.startswith("memory") else {"key_prefix": prefix}


def test_a_slot_is_held_for_the_block_and_given_back(url: str, prefix: str) -> None:
    with SyncThrottle.from_url(url, default_limit=2, **options(url, prefix)) as throttle:
        with throttle.slot(NUMBER, timeout=0) as lease:
            assert lease.number == NUMBER
            assert throttle.usage(NUMBER).in_use == 1
            assert throttle.held == (lease,)
        assert throttle.usage(NUMBER).in_use == 0
        with pytest.raises(RuntimeError), throttle.slot(NUMBER, timeout=0):
            raise RuntimeError("the call failed")
        assert throttle.usage(NUMBER).in_use == 0
        first = throttle.acquire(NUMBER, timeout=0)
        second = throttle.acquire(NUMBER, timeout=0)
        with pytest.raises(AcquireTimeout):
            throttle.acquire(NUMBER, timeout=0)
        assert throttle.release(Lease(NUMBER, first.token)) is True
        assert throttle.release(second) is True


def test_many_threads_never_pass_the_cap_and_a_waiter_is_served(url: str, prefix: str) -> None:
    with SyncThrottle.from_url(url, default_limit=3, **options(url, prefix)) as throttle:
        peak = current = 0
        lock = threading.Lock()
        done: Counter[str] = Counter()

        def call() -> None:
            nonlocal peak, current
            for _ in range(5):
                with throttle.slot(NUMBER, timeout=10):
                    with lock:
                        current += 1
                        peak = max(peak, current)
                    time.sleep(0.002)
                    with lock:
                        current -= 1
                done["calls"] += 1

        threads = [threading.Thread(target=call) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert done["calls"] == 60
        assert peak == 3
        assert throttle.usage(NUMBER).in_use == 0


def test_pools_and_errors_come_through(url: str, prefix: str) -> None:
    numbers = ["+8657188880001", "+8657188880002"]
    with SyncThrottle.from_url(url, default_limit=1, **options(url, prefix)) as throttle:
        assert throttle.add_to_pool("p", numbers) == 2
        with throttle.slot_from("p", timeout=0) as one, throttle.slot_from("p", timeout=0) as two:
            assert {one.number, two.number} == set(numbers)
            with pytest.raises(PoolExhausted):
                throttle.acquire_from("p", timeout=0)
        with pytest.raises(InvalidArgument):
            throttle.acquire("not a number")
        throttle.set_state(NUMBER, "disabled", reason="test")
        assert throttle.status(NUMBER).state == "disabled"


def test_bad_arguments_are_refused_before_anything_starts() -> None:
    with pytest.raises(InvalidArgument):
        SyncThrottle.from_url("memory://", default_limit=0)
    with pytest.raises(RuntimeError, match="open the SyncThrottle first"):
        SyncThrottle.from_url("memory://").acquire(NUMBER)


def public_names(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def parameters(function: Callable[..., object]) -> list[tuple[str, object, object]]:
    found = inspect.signature(function).parameters.values()
    return [(each.name, each.kind, each.default) for each in found]


def test_the_facade_offers_every_public_method_and_property_of_the_throttle() -> None:
    assert public_names(Throttle) - public_names(SyncThrottle) == set()
    assert public_names(SyncThrottle) - public_names(Throttle) == {"throttle"}
    for name in public_names(Throttle):
        mine, theirs = getattr(SyncThrottle, name), getattr(Throttle, name)
        assert isinstance(mine, property) == isinstance(theirs, property), name
        assert not inspect.iscoroutinefunction(mine), name
        # from_url passes its arguments on to Throttle.from_url (and takes a portal).
        if not isinstance(theirs, property) and name != "from_url":
            assert parameters(mine) == parameters(theirs), name


def test_hooks_properties_and_run_time_settings_come_through(url: str, prefix: str) -> None:
    config = {"trunks": {"t": {"cap": 5}}, "numbers": {NUMBER: {"trunk": "t"}}}
    events: list[Event] = []
    threads: set[int] = set()

    def hook(event: Event) -> None:
        events.append(event)
        threads.add(threading.get_ident())

    opened = SyncThrottle.from_url(
        url, owner_id="dialer-1", lease_ttl=9, config=config, **options(url, prefix)
    )
    with opened as throttle:
        assert (throttle.owner_id, throttle.lease_ttl, throttle.default_limit) == (
            "dialer-1",
            9,
            20,
        )
        assert throttle.backend is throttle.throttle.backend
        throttle.add_hook(hook)
        throttle.set_cap(NUMBER, 1)
        with throttle.slot(NUMBER, timeout=0), pytest.raises(AcquireTimeout):
            throttle.acquire(NUMBER, timeout=0)
        throttle.set_cap(NUMBER, None)
        throttle.set_rates(NUMBER, "1/minute")
        throttle.release(throttle.acquire(NUMBER, timeout=0))
        with pytest.raises(AcquireTimeout, match="rate window 1 per 60 s"):
            throttle.acquire(NUMBER, timeout=0)
        throttle.set_rates(NUMBER, None)
        throttle.set_group_cap("trunk", "t", 2)
        throttle.set_group_rates("trunk", "t", "100/second")
        assert throttle.group_usage("trunk", "t") == Usage(in_use=0, limit=2, waiting=0)
        assert throttle.add_to_pool("p", [NUMBER]) == 1
        assert throttle.pool_members("p") == [NUMBER]
        throttle.remove_hook(hook)
        throttle.release(throttle.acquire(NUMBER, timeout=0))
    kinds = [type(event).__name__ for event in events]
    assert kinds == ["Admitted", "Refused", "Released", "Admitted", "Released", "Refused"]
    assert threading.get_ident() not in threads  # called on the facade's event loop


def test_facades_can_share_one_event_loop() -> None:
    from anyio.from_thread import start_blocking_portal

    backend = MemoryBackend()
    with start_blocking_portal("asyncio") as portal:
        first = SyncThrottle(lambda: Throttle(backend, default_limit=1), portal=portal)
        second = SyncThrottle(lambda: Throttle(backend, default_limit=1), portal=portal)
        with first, second:
            lease = first.acquire(NUMBER, timeout=0)
            with pytest.raises(AcquireTimeout):
                second.acquire(NUMBER, timeout=0)
            assert second.release(lease) is True
            second.acquire(NUMBER, timeout=0)
        with second:  # the loop outlives the facades that use it
            assert second.usage(NUMBER).in_use == 0


class _ReleaseFails(MemoryBackend):
    async def release(
        self, number: str, token: str, releaser: str, pool: str | None = None
    ) -> bool:
        raise BackendUnavailable("the backend went away")


def test_a_slot_whose_release_fails_is_not_raised_over_the_block(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with SyncThrottle(lambda: Throttle(_ReleaseFails())) as throttle:
        with throttle.slot(NUMBER, timeout=0) as lease:
            pass
        assert not lease.released
    assert "could not release" in caplog.text


class _Interrupted(BaseException):
    """What a signal's handler raises in the waiting thread (as ``KeyboardInterrupt`` does)."""


@contextmanager
def interrupt_on(signum: int) -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise _Interrupted

    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signum, previous)


@pytest.mark.parametrize("way", ["acquire", "slot", "pool"])
def test_a_waiter_interrupted_gives_its_place_in_line_up(url: str, prefix: str, way: str) -> None:
    config = {"pools": {"p": {"numbers": [NUMBER]}}}
    opened = SyncThrottle.from_url(url, default_limit=1, config=config, **options(url, prefix))
    with opened as throttle:
        held = throttle.acquire(NUMBER, timeout=0)
        started = time.monotonic()
        with interrupt_on(signal.SIGALRM), pytest.raises(_Interrupted):
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            if way == "acquire":
                throttle.acquire(NUMBER, timeout=10)
            elif way == "pool":
                throttle.acquire_from("p", timeout=10)
            else:
                with throttle.slot(NUMBER, timeout=10):
                    pass
        assert time.monotonic() - started < 3  # at once, not when the wait would have ended
        # The wait was cancelled on the loop before the interruption went on.
        assert throttle.usage(NUMBER) == Usage(in_use=1, limit=1, waiting=0)
        assert throttle.release(held) is True
        assert throttle.held == ()
        assert throttle.usage(NUMBER).in_use == 0  # nobody was handed the slot


def test_a_slot_granted_as_its_caller_is_interrupted_is_given_back(url: str, prefix: str) -> None:
    caller = threading.get_ident()

    def interrupt_once_admitted(event: Event) -> None:
        if type(event).__name__ == "Admitted":
            signal.pthread_kill(caller, signal.SIGALRM)
            time.sleep(0.2)  # the acquire ends with its lease before the cancellation comes

    with SyncThrottle.from_url(url, default_limit=1, **options(url, prefix)) as throttle:
        throttle.add_hook(interrupt_once_admitted)

        def by_acquire() -> Lease:
            return throttle.acquire(NUMBER, timeout=0)

        def by_slot() -> Lease:
            return throttle.slot(NUMBER, timeout=0).__enter__()

        for take in (by_acquire, by_slot):
            with interrupt_on(signal.SIGALRM), pytest.raises(_Interrupted):
                take()
            assert throttle.held == ()
            assert throttle.usage(NUMBER).in_use == 0


def test_calls_run_as_asyncio_whatever_the_callers_context_says() -> None:
    sniffio = pytest.importorskip("sniffio")
    seen: list[str] = []
    with SyncThrottle.from_url("memory://") as throttle:
        throttle.add_hook(lambda event: seen.append(sniffio.current_async_library()))
        token = sniffio.current_async_library_cvar.set("trio")  # as in a trio task's thread
        try:
            throttle.release(throttle.acquire(NUMBER, timeout=0))
        finally:
            sniffio.current_async_library_cvar.reset(token)
    assert seen == ["asyncio", "asyncio"]


def test_a_facade_on_a_trio_loop_calls_through_its_portal() -> None:
    pytest.importorskip("trio")
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal("trio") as portal:
        facade = SyncThrottle(lambda: Throttle(MemoryBackend(), default_limit=1), portal=portal)
        with facade as throttle:
            with throttle.slot(NUMBER, timeout=0) as lease:
                assert throttle.held == (lease,)
                with pytest.raises(AcquireTimeout):
                    throttle.acquire(NUMBER, timeout=0)
            assert throttle.release(throttle.acquire(NUMBER, timeout=0)) is True
            assert throttle.usage(NUMBER).in_use == 0


def test_a_blocking_call_from_the_loops_own_thread_is_refused(url: str, prefix: str) -> None:
    errors: list[BaseException] = []
    with SyncThrottle.from_url(url, **options(url, prefix)) as throttle:

        def hook(event: Event) -> None:  # hooks run in the loop's thread
            try:
                throttle.usage(NUMBER)
            except RuntimeError as exc:
                errors.append(exc)

        throttle.add_hook(hook)
        throttle.release(throttle.acquire(NUMBER, timeout=0))
    assert len(errors) == 2
