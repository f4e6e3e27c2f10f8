"""Every line the library logs is structured: it carries the throttle's owner id, and the
number and token when it is about a lease."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from callthrottle import Throttle

if TYPE_CHECKING:
    import pytest

NUMBER = "+8657188880001"


async def test_log_records_carry_owner_number_and_token(caplog: pytest.LogCaptureFixture) -> None:
    config = {"trunks": {"t": {"cap": 5}}, "numbers": {NUMBER: {"trunk": "t"}}}
    with caplog.at_level(logging.DEBUG, logger="callthrottle"):
        async with Throttle.from_url("memory://", config=config) as throttle:
            await throttle.set_group_cap("trunk", "t", 3)
            await throttle.set_group_rates("trunk", "t", "10/second")
            await throttle.set_state(NUMBER, "cooling", duration=1, reason="test")
            await throttle.set_state(NUMBER, "active")
            await throttle.acquire(NUMBER, timeout=0)  # still held when the throttle closes
            await throttle.release_owner("someone-else")
    records = [r for r in caplog.records if r.name.startswith("callthrottle")]
    assert len(records) >= 4
    for record in records:
        assert getattr(record, "owner", None) == throttle.owner_id, record.getMessage()
    about_leases = [r for r in records if "lease" in r.getMessage()]
    assert about_leases
    for record in about_leases:
        if hasattr(record, "token"):
            assert getattr(record, "number", None) == NUMBER
