"""Number health and runtime policy: states, caps changed at run time, carrier feedback."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from callthrottle import (
    AcquireTimeout,
    InvalidArgument,
    NumberState,
    NumberStatus,
    NumberUnavailable,
    Reaction,
    Throttle,
    Usage,
)
from callthrottle.backends import AcquireRequest, Outcome, ReleaseState

from .test_fifo import NUMBER, wait_for_waiting

if TYPE_CHECKING:
    from ..conftest import BackendFactory, ThrottleFactory

REFUSING = [s for s in NumberState if not s.admits_calls]


@pytest.mark.parametrize("state", REFUSING, ids=[s.value for s in REFUSING])
async def test_states_that_admit_no_calls(throttle: Throttle, state: NumberState) -> None:
    held = await throttle.acquire(NUMBER, timeout=0)
    duration = 60.0 if state is NumberState.COOLING else None
    await throttle.set_state(NUMBER, state, reason="carrier notice 42", duration=duration)
    with pytest.raises(
        NumberUnavailable, match=f"is {state.value} \\(carrier notice 42\\)"
    ) as caught:
        await throttle.acquire(NUMBER, timeout=0)
    assert (caught.value.number, caught.value.state) == (NUMBER, state.value)
    assert caught.value.reason == "carrier notice 42"
    with pytest.raises(NumberUnavailable):
        await throttle.acquire(NUMBER, timeout=5)  # refused at once, not after waiting
    assert await throttle.usage(NUMBER) == Usage(in_use=1, limit=20, waiting=0)
    assert await throttle.release(held) is True  # calls already up run out normally
    status = await throttle.status(NUMBER)
    assert (status.state, status.reason) == (state, "carrier notice 42")
    await throttle.set_state(NUMBER, NumberState.ACTIVE)
    await throttle.acquire(NUMBER, timeout=0)


@pytest.mark.parametrize("state", [NumberState.ACTIVE, NumberState.WARMING, "warming"])
async def test_states_that_admit_calls(throttle: Throttle, state: NumberState | str) -> None:
    await throttle.set_state(NUMBER, state)
    await throttle.acquire(NUMBER, timeout=0)
    assert (await throttle.status(NUMBER)).state == NumberState(state)


async def test_a_cool_down_ends_by_itself(throttle: Throttle) -> None:
    await throttle.set_state(NUMBER, "cooling", reason="477 over-frequency", duration=0.4)
    with pytest.raises(NumberUnavailable, match="admits calls again in 0 s") as caught:
        await throttle.acquire(NUMBER, timeout=0)
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 0.4
    status = await throttle.status(NUMBER)
    assert status.state is NumberState.COOLING
    assert status.remaining is not None
    assert 0 < status.remaining <= 0.4
    await anyio.sleep(0.5)
    await throttle.acquire(NUMBER, timeout=0)
    assert (await throttle.status(NUMBER)).state is NumberState.ACTIVE


async def test_waiters_are_refused_when_the_number_goes_out(
    new_throttle: ThrottleFactory,
) -> None:
    errors: list[NumberUnavailable] = []

    async def waiter(throttle: Throttle) -> None:
        try:
            await throttle.acquire(NUMBER, limit=1, timeout=30)
        except NumberUnavailable as exc:
            errors.append(exc)

    async with new_throttle() as operator, new_throttle() as dialer:
        await operator.acquire(NUMBER, limit=1, timeout=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, dialer)
            tg.start_soon(waiter, operator)
            await wait_for_waiting(operator, 2)
            await operator.set_state(NUMBER, NumberState.DISABLED, reason="expired rental")
        assert [e.state for e in errors] == ["disabled", "disabled"]
        assert await operator.usage(NUMBER, limit=1) == Usage(in_use=1, limit=1, waiting=0)


async def test_cap_changed_at_run_time_holds_in_every_process(
    new_throttle: ThrottleFactory,
) -> None:
    async with new_throttle() as operator, new_throttle() as dialer:
        held = [await dialer.acquire(NUMBER, limit=5, timeout=0) for _ in range(4)]
        await operator.set_cap(NUMBER, 2)  # below what is held: nobody new until under it
        assert await dialer.usage(NUMBER, limit=5) == Usage(in_use=4, limit=2, waiting=0)
        with pytest.raises(AcquireTimeout):
            await dialer.acquire(NUMBER, limit=5, timeout=0)
        for lease in held[:3]:
            await dialer.release(lease)
        await dialer.acquire(NUMBER, limit=5, timeout=0)  # 1 held < 2
        with pytest.raises(AcquireTimeout):
            await dialer.acquire(NUMBER, limit=5, timeout=0)

        granted: list[object] = []
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(partial(_collect, dialer, granted))
            await wait_for_waiting(operator, 2)
            await operator.set_cap(NUMBER, 4)  # raised: the waiters are admitted at once
        assert len(granted) == 2
        assert (await operator.status(NUMBER)).cap == 4
        await operator.set_cap(NUMBER, None)
        assert (await operator.status(NUMBER)).cap is None
        assert (await dialer.usage(NUMBER, limit=5)).limit == 5


async def _collect(throttle: Throttle, into: list[object]) -> None:
    into.append(await throttle.acquire(NUMBER, limit=5, timeout=10))


async def test_feedback_cools_down_flags_or_lowers_the_cap(throttle: Throttle) -> None:
    cooled = await throttle.report(NUMBER, 607)
    assert cooled is not None
    assert cooled.action == "cooldown"
    status = await throttle.status(NUMBER)
    assert status.state is NumberState.COOLING
    assert status.reason is not None
    assert "607" in status.reason
    assert status.remaining is not None
    assert 23 * 3600 < status.remaining <= 24 * 3600

    await throttle.report("+8657188880002", "608")
    assert (await throttle.status("+8657188880002")).state is NumberState.FLAGGED

    other = "+8657188880003"
    assert await throttle.report(other, 200) is None
    assert (await throttle.report(other, 475)) == Reaction(
        "lower_cap", seconds=60, factor=0.5, reason="475 over calls per second"
    )
    status = await throttle.status(other)
    assert (status.state, status.lowered_cap) == (NumberState.ACTIVE, 10)
    assert status.lowered_remaining is not None
    assert 0 < status.lowered_remaining <= 60
    for _ in range(10):
        await throttle.acquire(other, timeout=0)
    with pytest.raises(AcquireTimeout):
        await throttle.acquire(other, timeout=0)


async def test_configured_reactions_replace_the_defaults(new_throttle: ThrottleFactory) -> None:
    feedback = {
        477: Reaction("lower_cap", seconds=0.3, cap=1),
        "607": Reaction("none"),
    }
    async with new_throttle(feedback=feedback) as throttle:
        assert await throttle.report(NUMBER, "607") is None
        assert (await throttle.status(NUMBER)).state is NumberState.ACTIVE
        await throttle.report(NUMBER, 477)
        await throttle.acquire(NUMBER, timeout=0)
        with pytest.raises(AcquireTimeout):
            await throttle.acquire(NUMBER, timeout=0)
        await anyio.sleep(0.4)  # the lowered cap lapses
        await throttle.acquire(NUMBER, timeout=0)
        assert (await throttle.status(NUMBER)) == NumberStatus(NumberState.ACTIVE)


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("set_state", {"state": "sleeping"}, "state must be one of 'active', 'warming'"),
    (
        "set_state",
        {"state": "cooling"},
        "duration must be a number of seconds from 0.001 to 31622400",
    ),
    (
        "set_state",
        {"state": "cooling", "duration": -1},
        "duration must be a number of seconds from 0.001",
    ),
    ("set_state", {"state": "flagged", "duration": 5}, "duration must be None unless"),
    ("set_state", {"state": "flagged", "reason": "a\nb"}, "reason must be None or a printable"),
    ("set_cap", {"cap": 0}, "cap must be an int from 1 to 100000, got 0"),
    ("report", {"outcome": "busy"}, "outcome must be a SIP status or carrier code"),
    ("report", {"outcome": True}, "outcome must be a SIP status or carrier code"),
]


@pytest.mark.parametrize(("method", "kwargs", "message"), BAD_CALLS)
async def test_bad_policy_calls_write_nothing(
    throttle: Throttle, method: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await getattr(throttle, method)(NUMBER, **kwargs)
    assert await throttle.status(NUMBER) == NumberStatus(NumberState.ACTIVE)


SET_FOR_GOOD = [s for s in REFUSING if s is not NumberState.COOLING]


@pytest.mark.parametrize("state", SET_FOR_GOOD, ids=[s.value for s in SET_FOR_GOOD])
async def test_a_carriers_cool_down_leaves_a_state_set_for_good(
    new_throttle: ThrottleFactory, state: NumberState
) -> None:
    """An operator took the number out of service; a carrier's answer that would cool it down
    for a while does not put it back in service when that while ends."""
    feedback = {477: Reaction("cooldown", seconds=0.2)}
    async with new_throttle(feedback=feedback) as throttle:
        await throttle.set_state(NUMBER, state, reason="operator")
        await throttle.report(NUMBER, 477)
        status = await throttle.status(NUMBER)
        assert (status.state, status.reason) == (state, "operator")
        await anyio.sleep(0.3)
        status = await throttle.status(NUMBER)
        assert (status.state, status.reason) == (state, "operator")
        with pytest.raises(NumberUnavailable):
            await throttle.acquire(NUMBER, timeout=0)


async def test_an_acquire_sent_again_after_the_number_was_disabled_reports_its_slot(
    new_backend: BackendFactory, new_throttle: ThrottleFactory
) -> None:
    """An acquire whose reply was lost is sent again (every function is safe to run twice for
    the same token); if an operator disabled the number in between, the token still holds the
    slot the first run granted, and the second run says so (answering "unavailable" would
    leave a slot that nobody holds, renews or releases until its lease expires). Another
    owner's token conflicts, and a new call is refused."""
    backend = new_backend()
    await backend.open()
    try:
        async with new_throttle() as operator:
            first = await backend.acquire(
                AcquireRequest(NUMBER, "call-1", "o1", 2, 30.0, None), enqueue=False
            )
            assert first.outcome is Outcome.GRANTED
            await operator.set_state(NUMBER, NumberState.DISABLED, reason="carrier cut it")
            again = await backend.acquire(
                AcquireRequest(NUMBER, "call-1", "o1", 2, 30.0, None), enqueue=False
            )
            assert again.outcome is Outcome.GRANTED
            other = await backend.acquire(
                AcquireRequest(NUMBER, "call-1", "o2", 2, 30.0, None), enqueue=False
            )
            assert other.outcome is Outcome.CONFLICT
            new = await backend.acquire(
                AcquireRequest(NUMBER, "call-2", "o1", 2, 30.0, None), enqueue=False
            )
            assert new.outcome is Outcome.UNAVAILABLE
            assert (await operator.usage(NUMBER, limit=2)).in_use == 1
            assert await backend.release(NUMBER, "call-1", "o1") == ReleaseState.RELEASED
    finally:
        await backend.aclose()
