"""Our moving window is our own code: check it against ``limits`` on the same random hits."""

from __future__ import annotations

import random

import limits
import pytest
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from callthrottle._rates import RatePlan, parse_windows
from callthrottle.backends import AcquireRequest, MemoryBackend, Outcome


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("spec", ["3/second", "10/10seconds", "25/minute"])
@pytest.mark.parametrize("seed", [1, 2])
async def test_same_decisions_as_limits_moving_window(
    spec: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each window alone, 600 random attempts (exact window edges included): every decision
    matches ``MovingWindowRateLimiter.hit``. (All-or-nothing across several windows is ours
    alone: ``limits`` counts a hit in each window separately.)"""
    clock = FakeClock()
    monkeypatch.setattr("limits.storage.memory.time.time", clock)
    # MemoryStorage also drops expired keys from a timer thread, which would race the steps
    # at exact window edges (where it drops events its own check still counts): keep to the
    # decisions alone.
    monkeypatch.setattr(MemoryStorage, "_MemoryStorage__schedule_expiry", lambda self: None)
    storage = MemoryStorage()
    # Its constructor starts that timer once too (10 ms): stopped here, before any hit (had it
    # already fired, it found nothing to drop), so it cannot fire at a window edge mid-run.
    storage.timer.cancel()
    try:
        reference = MovingWindowRateLimiter(storage)
        [item] = limits.parse_many(spec)
        backend = MemoryBackend(clock=clock, wall_clock=clock)
        windows = parse_windows(spec)
        rng = random.Random(seed)
        granted = 0
        for index in range(600):
            clock.now += rng.choice([0.0, 0.001, 0.05, 0.2, 0.5, 1.0, 3.0])
            expected = reference.hit(item, "n")
            result = await backend.acquire(
                AcquireRequest(
                    "+8657188880001", f"t{index}", "owner", 1000, 60.0, None, RatePlan(windows)
                ),
                enqueue=False,
            )
            ours = result.outcome is Outcome.GRANTED
            assert ours == expected, f"step {index} at {clock.now}: limits {expected}, ours {ours}"
            if ours:
                granted += 1
                await backend.release("+8657188880001", f"t{index}", "owner")
        assert 30 < granted < 570  # the sequence exercised both outcomes
    finally:
        storage.reset()
