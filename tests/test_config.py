"""Configuration: TOML and dicts, validated whole, every error naming its key and rule."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pytest

from callthrottle import (
    Config,
    ConfigError,
    InvalidArgument,
    NumberSettings,
    Profile,
    Reaction,
    Throttle,
)

if TYPE_CHECKING:
    from pathlib import Path

TOML = """
default_region = "CN"
default_profile = "fixed-line"

[profiles.fixed-line]
cap = 20
[profiles.mobile]
cap = 3
[profiles.partner-sip]

[numbers."057188880001"]
cap = 15
[numbers."+8613800138000"]
profile = "mobile"
[numbers."+86 571 8888 0002"]
profile = "partner-sip"

[feedback.477]
action = "cooldown"
seconds = 3600
[feedback.475]
action = "lower_cap"
seconds = 60
factor = 0.5
reason = "over calls per second"
"""


def test_a_toml_file_is_read_and_normalised(tmp_path: Path) -> None:
    path = tmp_path / "carriers.toml"
    path.write_text(TOML, encoding="utf-8")
    config = Config.from_toml(path)
    assert config.default_region == "CN"
    assert config.profiles["mobile"] == Profile(cap=3)
    assert config.profiles["partner-sip"] == Profile(cap=20)
    assert config.numbers["+8657188880001"] == NumberSettings(cap=15)
    assert config.numbers["+8657188880002"] == NumberSettings(profile="partner-sip")
    assert config.feedback["475"] == Reaction(
        "lower_cap", seconds=60, factor=0.5, reason="over calls per second"
    )
    assert config.cap_for("+8657188880001", default=99) == 15  # its own cap
    assert config.cap_for("+8613800138000", default=99) == 3  # its profile's
    assert config.cap_for("+8657188880009", default=99) == 20  # the default profile's
    assert Config().cap_for("+8657188880009", default=99) == 99  # nothing configured


BAD: list[tuple[dict[str, Any], str]] = [
    ({"profile": {}}, r"config\.profile must be a known key: default_region, default_profile"),
    ({"profiles": []}, r"config\.profiles must be a table"),
    (
        {"profiles": {"x": {"cap": 0}}},
        r"config\.profiles\.x\.cap must be an int from 1 to 100000, got 0",
    ),
    (
        {"profiles": {"x": {"cap": "20"}}},
        r"config\.profiles\.x\.cap must be an int from 1 to 100000",
    ),
    ({"profiles": {"x": {"capp": 3}}}, r"config\.profiles\.x\.capp must be a known key: cap"),
    ({"default_profile": "x"}, r"config\.default_profile must be a profile defined under"),
    ({"default_region": "Mars"}, r"config\.default_region must be None or a two-letter"),
    ({"numbers": {"12": {}}}, r"config\.numbers\.'12' must be a valid phone number"),
    (
        {"numbers": {"+8657188880001": {"profile": "x"}}},
        r"config\.numbers\.'\+8657188880001'\.profile must be a profile defined under \[profiles\]",
    ),
    (
        {"numbers": {"+8657188880001": {"cap": -1}}},
        r"config\.numbers\.'\+8657188880001'\.cap must be an int from 1 to 100000, got -1",
    ),
    (
        {"default_region": "CN", "numbers": {"057188880001": {}, "+8657188880001": {}}},
        r"must be listed once \(it is also listed as \+8657188880001\)",
    ),
    ({"feedback": {"abc": {"action": "flag"}}}, r"config\.feedback\.abc must be a SIP status"),
    ({"feedback": {"477": {"action": "nap"}}}, r"config\.feedback\.477\.action must be one of"),
    ({"feedback": {"477": {"action": "cooldown"}}}, r"config\.feedback\.477\.seconds must be a"),
    (
        {"feedback": {"475": {"action": "lower_cap", "seconds": 5, "factor": 3}}},
        r"config\.feedback\.475\.factor must be a number between 0 and 1",
    ),
    # A pool is named in acquire_from, which takes no whitespace: nor does its configuration.
    (
        {"pools": {"my pool": {"numbers": ["+8657188880001"]}}},
        r"config\.pools must be keyed by pool names free of whitespace and control characters",
    ),
    # A colon would let one pool's keys (...:pool:x:t:<token>) be another's (pool "x:t").
    (
        {"pools": {"x:t": {"numbers": ["+8657188880001"]}}},
        r"config\.pools must be keyed by pool names free of ':'",
    ),
    # Paid periods: a date (TOML's, or ISO text) in range, whole days in range.
    (
        {"numbers": {"+8657188880001": {"paid_until": "31/01/2027"}}},
        r"config\.numbers\.'\+8657188880001'\.paid_until must be a date from 1970 to 9000",
    ),
    (
        {"profiles": {"x": {"paid_until": dt.datetime(2027, 1, 31, 12)}}},
        r"config\.profiles\.x\.paid_until must be a date from 1970 to 9000",
    ),
    (
        {"profiles": {"x": {"paid_until": dt.date(9999, 12, 31)}}},
        r"config\.profiles\.x\.paid_until must be a date from 1970 to 9000",
    ),
    (
        {"profiles": {"x": {"grace_days": -1}}},
        r"config\.profiles\.x\.grace_days must be a whole number of days from 0 to 3650, got -1",
    ),
    (
        {"numbers": {"+8657188880001": {"warn_days": 2.5}}},
        r"config\.numbers\.'\+8657188880001'\.warn_days must be a whole number of days",
    ),
    (
        {"numbers": {"+8657188880001": {"grace_days": True}}},
        r"config\.numbers\.'\+8657188880001'\.grace_days must be a whole number of days",
    ),
    (
        {"numbers": {"+8657188880001": {"paid_untill": "2027-01-31"}}},
        r"paid_untill must be a known key: .*paid_until, grace_days, warn_days",
    ),
]


@pytest.mark.parametrize(("data", "message"), BAD)
def test_every_bad_key_is_named(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Config.from_dict(data)
    assert isinstance(caught.value, InvalidArgument)
    assert caught.value.argument.startswith("config")
    with pytest.raises(ConfigError, match=message):
        Throttle.from_url("memory://", config=data)


def test_unreadable_or_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config must be a readable TOML file"):
        Config.from_toml(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[profiles\ncap = ", encoding="utf-8")
    with pytest.raises(ConfigError, match="config must be valid TOML"):
        Throttle.from_url("memory://", config=str(broken))


def test_config_must_be_a_config_a_dict_or_a_path() -> None:
    with pytest.raises(ConfigError, match="config must be a Config, a dict, or the path"):
        Throttle.from_url("memory://", config=42)  # type: ignore[arg-type]


def test_paid_periods_are_read_from_toml_and_published_as_they_were_read(
    tmp_path: Path,
) -> None:
    from callthrottle._policy_doc import PolicyDocument

    path = tmp_path / "carriers.toml"
    path.write_text(
        'timezone = "Asia/Shanghai"\n'
        "[profiles.rented]\npaid_until = 2027-03-31\nwarn_days = 10\n"
        '[numbers."+8657188880001"]\nprofile = "rented"\npaid_until = 2027-01-31\n'
        "grace_days = 3\n"
        '[numbers."+8657188880002"]\nprofile = "rented"\n',
        encoding="utf-8",
    )
    config = Config.from_toml(path)
    own, profiles = config.term_for("+8657188880001"), config.term_for("+8657188880002")
    assert own is not None
    assert profiles is not None
    assert (own.paid_until, own.grace_days, own.warn_days) == (dt.date(2027, 1, 31), 3, 10)
    assert (profiles.paid_until, profiles.grace_days) == (dt.date(2027, 3, 31), 7)
    # Local midnight in Shanghai (UTC+8) after the last day paid for.
    assert own.lapses_at == dt.datetime(2027, 1, 31, 16, tzinfo=dt.timezone.utc).timestamp()
    assert config.term_for("+8657188880009") is None  # not of the profile: not tracked
    document = PolicyDocument.of(config, 20)
    assert PolicyDocument.parse(document.text).config == config
    assert '"paid_until":"2027-01-31"' in document.text
    # A configuration without paid periods is written as before they existed.
    plain = PolicyDocument.of(Config.from_dict({"profiles": {"p": {"cap": 3}}}), 20)
    assert "grace_days" not in plain.text
    assert "warn_days" not in plain.text


@pytest.mark.parametrize("text", ["2027-W05-1", "20270131"])
def test_a_paid_until_not_written_as_a_calendar_date_is_refused(text: str) -> None:
    """ISO week dates (and the basic format) name a day nobody reading the file
    sees: "2027-W05-1" is February 1st. Only YYYY-MM-DD (or a TOML date) is a paid_until."""
    with pytest.raises(ConfigError, match="paid_until must be a date from 1970 to 9000"):
        Config.from_dict({"numbers": {"+8657188880001": {"paid_until": text}}})
