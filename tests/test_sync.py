"""The blocking facade: the same semantics, from plain threads, on every backend."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from callthrottle import AcquireTimeout, InvalidArgument, Lease, PoolExhausted
from callthrottle.sync import SyncThrottle

NUMBER = "+8657188880001"


@pytest.fixture(params=["memory", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    redis_url: str = request.getfixturevalue("redis_url")
    return redis_url


def options(url: str, prefix: str) -> dict[str, object]:
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
