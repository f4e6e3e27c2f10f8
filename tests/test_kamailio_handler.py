"""The Kamailio handler's settings and its throttle calls, without Kamailio (tests/sip runs it
inside a real Kamailio)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from callthrottle import InvalidArgument
from callthrottle.integrations.kamailio import Settings, Slots
from tests._servers import free_port

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
            "CALLTHROTTLE_ON_BACKEND_DOWN": "Admit",
            "CALLTHROTTLE_REGION": "CN",
            "CALLTHROTTLE_INSTANCE": "edge-1",
        }
    )
    assert settings == Settings(
        url="redis://127.0.0.1:7000/2",
        cap=7,
        lease_ttl=2.5,
        on_backend_down="admit",
        region="CN",
        instance="edge-1",
    )


def test_unset_settings_keep_their_defaults() -> None:
    settings = Settings.from_env({"CALLTHROTTLE_CAP": " "})
    assert (settings.url, settings.cap, settings.lease_ttl) == ("redis://127.0.0.1:6379/0", 20, 30)
    assert settings.on_backend_down == "refuse"
    assert settings.config is None
    assert settings.instance  # host:pid of the process that read them


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CAP", "many"),
        ("CAP", "0"),
        ("LEASE_TTL", "soon"),
        ("LEASE_TTL", "-1"),
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


@pytest.fixture
def slots(redis_url: str) -> Iterator[Slots]:
    opened = Slots(Settings(url=redis_url, cap=2, lease_ttl=5))
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
