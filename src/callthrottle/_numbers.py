"""Caller-ID and callee numbers: one canonical key (E.164) per phone number."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

from ._errors import InvalidArgument

__all__ = ("check_region", "locality", "normalize_number")


@lru_cache(maxsize=65536)
def _e164(text: str, region: str | None) -> str | None:
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_number(number: object, region: str | None, argument: str = "number") -> str:
    """The E.164 form of ``number``: ``+86 571 8888 0001``, ``057188880001`` (with region
    ``CN``) and ``+8657188880001`` are one key.

    :raises InvalidArgument: if it is not a string, or not a valid phone number
    """
    if not isinstance(number, str) or not number:
        raise InvalidArgument(argument, number, "a non-empty str")
    e164 = _e164(number, region) if len(number) <= 64 else None
    if e164 is None:
        where = (
            f"national numbers are read as {region}"
            if region
            else "no default_region is set, so it must start with +country code"
        )
        raise InvalidArgument(argument, number, f"a valid phone number ({where})")
    return e164


def check_region(region: object) -> str | None:
    """A default region: None or a two-letter region code phonenumbers knows (e.g. ``CN``)."""
    if region is None:
        return None
    if not isinstance(region, str) or region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidArgument(
            "default_region", region, "None or a two-letter region code such as 'CN' or 'US'"
        )
    return region.upper()


@lru_cache(maxsize=65536)
def locality(e164: str) -> tuple[str, str]:
    """Where a number (E.164) is: its geographic area (``"+86-571"``; ``""`` for numbers
    without one, such as mobiles) and its region (``"CN"``, or ``"+<country code>"``)."""
    parsed = phonenumbers.parse(e164)
    region = phonenumbers.region_code_for_number(parsed) or f"+{parsed.country_code}"
    length = phonenumbers.length_of_geographical_area_code(parsed)
    if not length:
        return "", region
    national = phonenumbers.national_significant_number(parsed)
    return f"+{parsed.country_code}-{national[:length]}", region
