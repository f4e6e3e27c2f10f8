"""The Kamailio handler's settings and its session's slots, without Kamailio (tests/sip runs it
inside a real Kamailio)."""

from __future__ import annotations

import logging
import random
import socket
import time
from typing import TYPE_CHECKING

import pytest

from callthrottle import InvalidArgument
from callthrottle.integrations.kamailio import Settings, Slots
from tests._servers import free_port, own_server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def _number() -> str:
    return f"+86571{random.randrange(10**7, 10**8)}"


def test_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "CALLTHROTTLE_URL": "redis://127.0.0.1:7000/2",
            "CALLTHROTTLE_CAP": "7",
            "CALLTHROTTLE_LEASE_TTL": "2.5",
            "CALLTHROTTLE_MAX_HOLD": "7200",
            "CALLTHROTTLE_ON_BACKEND_DOWN": "Admit",
            "CALLTHROTTLE_REGION": "CN",
            "CALLTHROTTLE_INSTANCE": "edge-1",
        }
    )
    assert settings == Settings(
        url="redis://127.0.0.1:7000/2",
        cap=7,
        lease_ttl=2.5,
        max_hold=7200,
        on_backend_down="admit",
        region="CN",
        instance="edge-1",
    )


def test_unset_settings_keep_their_defaults() -> None:
    settings = Settings.from_env({"CALLTHROTTLE_CAP": " "})
    assert (settings.url, settings.cap, settings.lease_ttl) == ("redis://127.0.0.1:6379/0", 20, 30)
    assert settings.on_backend_down == "refuse"
    assert settings.config is None
    assert settings.max_hold is None  # the library's: one day
    # The same in every process and after a restart: the proxy's calls keep their slots.
    assert settings.instance == f"kamailio@{socket.gethostname()}"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CAP", "many"),
        ("CAP", "0"),
        ("LEASE_TTL", "soon"),
        ("LEASE_TTL", "-1"),
        ("MAX_HOLD", "long"),
        ("MAX_HOLD", "0"),
        ("INSTANCE", "two words"),
        ("ON_BACKEND_DOWN", "maybe"),
        ("URL", "http://127.0.0.1/"),
        ("CONFIG", "/nonexistent/caps.toml"),
        ("REGION", "Atlantis"),
    ],
)
def test_a_wrong_setting_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Settings.from_env({f"CALLTHROTTLE_{variable}": value})
    assert caught.value.argument == f"CALLTHROTTLE_{variable}"


def test_a_wrong_cap_in_the_configuration_names_the_variable_and_the_key(tmp_path: Path) -> None:
    config = tmp_path / "caps.toml"
    config.write_text('[numbers."+8657188880001"]\ncap = 0\n')
    with pytest.raises(InvalidArgument) as caught:
        Settings.from_env({"CALLTHROTTLE_CONFIG": str(config)})
    assert caught.value.argument == "CALLTHROTTLE_CONFIG"
    assert "+8657188880001" in str(caught.value)


def _session() -> str:
    return f"kamailio@test-{random.randrange(10**9)}"


@pytest.fixture
def slots(redis_url: str) -> Iterator[Slots]:
    opened = Slots(Settings(url=redis_url, cap=2, lease_ttl=5, instance=_session()))
    yield opened
    opened.close()


@pytest.mark.redis
def test_slots_admit_up_to_the_cap_and_take_back_what_is_released(slots: Slots) -> None:
    number = _number()
    assert slots.acquire(number, "call-1")
    assert slots.acquire(number, "call-2")
    assert not slots.acquire(number, "call-3")  # full: refused at once
    assert slots.acquire(number, "call-2")  # the same call again: it has its slot already
    slots.release(number, "call-1")
    slots.release(number, "call-1")  # a BYE after the failure route: nothing more happens
    assert slots.acquire(number, "call-3")
    assert not slots.acquire(number, "call-4")


@pytest.mark.redis
def test_a_caller_id_that_is_no_number_is_refused_and_its_release_ignored(slots: Slots) -> None:
    assert not slots.acquire("anonymous", "call-1")
    slots.release("anonymous", "call-1")


@pytest.mark.parametrize(("on_down", "admitted"), [("refuse", False), ("admit", True)])
def test_an_unreachable_backend_refuses_or_admits_as_configured(
    on_down: str, admitted: bool
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens there
    slots = Slots(Settings(url=url, on_backend_down=on_down, lease_ttl=5))
    try:
        assert slots.acquire(_number(), "call-1") is admitted
        slots.release(_number(), "call-1")  # logged, not raised
    finally:
        slots.close()


@pytest.mark.redis
def test_slots_belong_to_the_proxy_not_to_the_process(redis_url: str) -> None:
    """Another process of the proxy (a restarted one too) gives a slot back: same session."""
    settings = Settings(url=redis_url, cap=1, lease_ttl=5, instance=_session())
    first, second = Slots(settings), Slots(settings)
    try:
        number = _number()
        assert first.acquire(number, "call-1")
        first.close()  # its process stops: the call goes on, counted
        assert not second.acquire(number, "call-2")
        assert second.acquire(number, "call-1")  # the INVITE seen again by another process
        second.release(number, "call-1")
        assert second.acquire(number, "call-2")
    finally:
        second.close()


@pytest.mark.redis
@pytest.mark.slow
def test_the_keepalive_keeps_every_slot_past_the_ttl_and_its_end_lets_them_lapse(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(url=redis_url, cap=1, lease_ttl=0.6, instance=_session())
    worker, timer = Slots(settings), Slots(settings)
    try:
        number = _number()
        assert worker.acquire(number, "call-1")
        for _ in range(6):  # 1.2 s: twice the TTL, kept alive by the timer process alone
            time.sleep(0.2)
            timer.keepalive()
        assert not worker.acquire(number, "call-2")
        time.sleep(0.9)  # no keep-alive for longer than the TTL: the session's life ended
        timer.keepalive()  # a new life: the old one's slots never count again
        assert worker.acquire(number, "call-2")
        with caplog.at_level(logging.WARNING, logger="callthrottle.kamailio"):
            worker.release(number, "call-1")
        assert "call-1" in caplog.text
        assert "lapsed before the call ended" in caplog.text
    finally:
        worker.close()
        timer.close()


@pytest.mark.redis
def test_a_release_says_nothing_when_there_was_no_slot(
    slots: Slots, caplog: pytest.LogCaptureFixture
) -> None:
    number = _number()
    assert slots.acquire(number, "call-1")
    with caplog.at_level(logging.INFO, logger="callthrottle.kamailio"):
        slots.release(number, "call-1")
        slots.release(number, "call-1")  # the failure route after the CANCEL
    assert not caplog.records


@pytest.mark.redis
@pytest.mark.slow
def test_slots_not_given_back_while_redis_was_down_are_given_back_once_it_is_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with own_server(persistent=True) as (url, server):
        settings = Settings(url=url, cap=2, lease_ttl=2, instance=_session())
        slots = Slots(settings)
        number = _number()
        try:
            assert slots.acquire(number, "call-1")
            assert slots.acquire(number, "call-2")
            server.stop()
            with caplog.at_level(logging.ERROR, logger="callthrottle.kamailio"):
                slots.release(number, "call-1")  # logged, not raised
                assert not slots.acquire(number, "call-3")  # fail closed
                slots.keepalive()  # logged, not raised
            assert "keep-alive of session" in caplog.text
            server.start()
            # The next message first gives back call-1's slot; a restarted server admits no
            # new call for a lease TTL (it cannot know what it lost: the fence).
            assert not slots.acquire(number, "call-4")
            assert "call-1" not in slots._unreleased
            for _ in range(5):  # the timer keeps the session alive: call-2 still counts
                slots.keepalive()
                time.sleep(0.5)
            assert slots.acquire(number, "call-4")  # call-1's slot
            assert not slots.acquire(number, "call-5")  # call-2 and call-4 hold the cap
            slots.release(number, "call-2")
            slots.release(number, "call-4")
            assert slots.acquire(number, "call-5")
            assert slots.acquire(number, "call-6")
        finally:
            slots.close()
