"""Bad input is refused with an error naming the argument and the rule; nothing is written."""

from __future__ import annotations

import math
from typing import Any

import pytest

from callthrottle import InvalidArgument, Lease, Throttle, ThrottleError, Usage

from .test_fifo import NUMBER

BAD_NUMBERS = [
    ("", "number must be a non-empty str"),
    (None, "number must be a non-empty str"),
    (8657188880001, "number must be a non-empty str"),
    ("057188880001", "number must be a valid phone number .no default_region is set"),
    ("+86 571", "number must be a valid phone number"),
    ("+8600000000000", "number must be a valid phone number"),
    ("not a number", "number must be a valid phone number"),
    ("1" * 300, "number must be a valid phone number"),
]
BAD_TOKENS = [
    ("", "token must be a non-empty str"),
    (42, "token must be a non-empty str"),
    ("call 42", "token must be free of whitespace"),
]
BAD_ACQUIRE_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"limit": 0}, "limit must be an int from 1 to 100000, got 0"),
    ({"limit": -3}, "limit must be an int from 1 to 100000"),
    ({"limit": 2.5}, "limit must be an int from 1 to 100000"),
    ({"limit": True}, "limit must be an int from 1 to 100000"),
    (
        {"timeout": -1},
        "timeout must be None, 0 .try once., inf or a number of seconds up to 31622400",
    ),
    (
        {"timeout": math.nan},
        "timeout must be None, 0 .try once., inf or a number of seconds up to 31622400",
    ),
    (
        {"timeout": "5"},
        "timeout must be None, 0 .try once., inf or a number of seconds up to 31622400",
    ),
]


async def assert_nothing_written(throttle: Throttle) -> None:
    assert await throttle.usage(NUMBER) == Usage(in_use=0, limit=20, waiting=0)
    assert throttle.held == ()


@pytest.mark.parametrize(("number", "message"), BAD_NUMBERS)
async def test_bad_number(throttle: Throttle, number: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        await throttle.acquire(number)
    assert caught.value.argument == "number"
    assert caught.value.value == number
    with pytest.raises(InvalidArgument, match=message):
        await throttle.usage(number)
    with pytest.raises(InvalidArgument, match=message):
        await throttle.release(Lease(number, "t"))
    await assert_nothing_written(throttle)


@pytest.mark.parametrize(("token", "message"), BAD_TOKENS)
async def test_bad_token(throttle: Throttle, token: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        await throttle.acquire(NUMBER, token=token)
    assert caught.value.argument == "token"
    await assert_nothing_written(throttle)


@pytest.mark.parametrize(("options", "message"), BAD_ACQUIRE_OPTIONS)
async def test_bad_acquire_options(
    throttle: Throttle, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await throttle.acquire(NUMBER, **options)
    with pytest.raises(InvalidArgument, match=message):
        async with throttle.slot(NUMBER, **options):
            pass  # pragma: no cover
    await assert_nothing_written(throttle)


async def test_release_needs_a_lease(throttle: Throttle) -> None:
    with pytest.raises(InvalidArgument, match="lease must be a Lease, got 'call-1'"):
        await throttle.release("call-1")  # type: ignore[arg-type]


async def test_release_owner_needs_an_owner(throttle: Throttle) -> None:
    with pytest.raises(InvalidArgument, match="owner_id must be a non-empty str"):
        await throttle.release_owner("")


async def test_invalid_argument_is_a_value_error_and_a_throttle_error(throttle: Throttle) -> None:
    with pytest.raises(ValueError, match="limit"):
        await throttle.acquire(NUMBER, limit=0)
    with pytest.raises(ThrottleError, match="limit"):
        await throttle.acquire(NUMBER, limit=0)


async def test_bad_run_time_rates(throttle: Throttle) -> None:
    with pytest.raises(InvalidArgument, match="rates must be rate limits such as"):
        await throttle.set_rates(NUMBER, "lots")
    assert (await throttle.status(NUMBER)).rates is None
