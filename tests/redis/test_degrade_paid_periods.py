"""The degrade policy and paid periods: a number whose paid period lapsed is refused while the
backend is unreachable too (the calendar and the policy in force are this process's own)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from callthrottle import NumberUnavailable, Throttle

from .._servers import own_server
from ..conformance.test_paid_periods import Calendar, at, config

pytestmark = pytest.mark.redis
NUMBER = "+8657188880001"


async def test_a_lapsed_number_of_the_published_policy_is_refused_while_degraded() -> None:
    calendar = Calendar(at(dt.date(2027, 2, 3), 10))  # expired since Feb 1st
    with own_server() as (url, server):
        async with (
            Throttle.from_url(url, config=config(), calendar=calendar) as operator,
            Throttle.from_url(
                url, degraded_share=0.5, restore_leases=False, calendar=calendar
            ) as dialer,
        ):
            await operator.publish_policy(comment="January's rent")
            with pytest.raises(NumberUnavailable):
                await dialer.acquire(NUMBER, timeout=0)
            server.stop()
            try:
                with pytest.raises(NumberUnavailable) as caught:
                    await dialer.acquire(NUMBER, timeout=0)
                assert caught.value.state == "expired"
            finally:
                server.start()


async def test_a_renewed_number_is_admitted_while_degraded() -> None:
    """The dialer was given the old period as config= but follows the published renewal."""
    calendar = Calendar(at(dt.date(2027, 2, 3), 10))
    with own_server() as (url, server):
        async with (
            Throttle.from_url(url, config=config(dt.date(2027, 2, 28))) as operator,
            Throttle.from_url(
                url,
                config=config(),
                policy="follow",
                degraded_share=0.5,
                restore_leases=False,
                calendar=calendar,
            ) as dialer,
        ):
            await operator.publish_policy(comment="renewed")
            await dialer.release(await dialer.acquire(NUMBER, timeout=0))
            server.stop()
            try:
                lease = await dialer.acquire(NUMBER, timeout=0)
                assert lease.degraded
            finally:
                server.start()


async def test_a_number_is_warned_of_once_a_day_while_degraded_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calendar = Calendar(at(dt.date(2027, 1, 29), 10))  # 3 days left: inside the warning window
    caplog.set_level(logging.WARNING, logger="callthrottle")
    with own_server() as (url, server):
        async with Throttle.from_url(
            url, config=config(), degraded_share=0.5, restore_leases=False, calendar=calendar
        ) as dialer:
            await dialer.release(await dialer.acquire(NUMBER, timeout=0))
            server.stop()
            try:
                lease = await dialer.acquire(NUMBER, timeout=0)
                assert lease.degraded
            finally:
                server.start()
    warned = [r.getMessage() for r in caplog.records if "paid until" in r.getMessage()]
    assert warned == [f"{NUMBER} expires in 3 days (paid until 2027-01-31)"]
