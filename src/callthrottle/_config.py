"""Carrier policy configuration: profiles, per-number settings, feedback reactions.

Built from a dict or a TOML file and validated whole before use: every error names the key and
the rule it broke, and nothing is applied from a configuration with an error in it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import InvalidArgument
from ._health import Reaction
from ._numbers import check_region, locality, normalize_number
from ._pools import DEFAULT_STRATEGY, STICKY_TTL, MemberSpec, PoolSettings, check_strategy
from ._rates import NO_RATES, GroupPlan, RatePlan, Window, check_timezone, parse_windows
from ._terms import DEFAULT_GRACE_DAYS, DEFAULT_WARN_DAYS, Term, check_days, check_paid_until
from ._validate import (
    check_amount,
    check_limit,
    check_outcome,
    check_pool,
    check_reaction,
    check_reserve,
    check_ttl,
)

if TYPE_CHECKING:
    import datetime as dt
    import os
    from zoneinfo import ZoneInfo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ("Config", "ConfigError", "NumberSettings", "Profile")

_TOP_KEYS = (
    "default_region", "default_profile", "default_tenant", "timezone", "profiles", "numbers",
    "trunks", "tenants", "callee", "feedback", "pools",
)  # fmt: skip

_T = TypeVar("_T")


class ConfigError(InvalidArgument):
    """A configuration key broke a rule; :ivar argument: is the key's path (``config.profiles...``)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """A carrier's rules for the numbers it supplies.

    :ivar cap: concurrent outbound calls allowed per number
    :ivar rates: rate windows per number (in ``limits``' notation: ``"100/hour;500/day"``)
    :ivar daily_reset: ``"rolling"`` (a day is any 24 hours) or ``"midnight"`` (per-day
        windows count from local midnight in the configured ``timezone``)
    :ivar warmup: daily caps by week for a number in the ``warming`` state (e.g. ``[10, 20,
        30]``: 10 calls a day in its first week, 20 in the second, 30 in the third)
    :ivar paid_until: the last day its numbers are paid for (None: not tracked), unless a
        number says otherwise (see :mod:`callthrottle._terms`)
    :ivar grace_days: days a lapsed number is kept by the carrier before it is released
    :ivar warn_days: days before a number lapses that warnings begin
    """

    cap: int = 20
    rates: tuple[Window, ...] = ()
    daily_reset: str = "rolling"
    warmup: tuple[int, ...] = ()
    paid_until: dt.date | None = None
    grace_days: int = DEFAULT_GRACE_DAYS
    warn_days: int = DEFAULT_WARN_DAYS


@dataclass(frozen=True, slots=True)
class NumberSettings:
    """One number's settings; unset fields come from its profile.

    :ivar profile: the carrier profile the number belongs to (None: the default profile)
    :ivar cap: the number's own cap, overriding its profile's
    :ivar rates: the number's own rate windows, replacing its profile's
    :ivar tenant: the tenant (company, campaign) the number dials for
    :ivar trunk: the trunk its calls go out on (a 400 number's forwarding trunk, a SIP trunk)
    :ivar paid_until: the last day the number is paid for, replacing its profile's
    :ivar grace_days: its own grace period in days, replacing its profile's
    :ivar warn_days: its own warning window in days, replacing its profile's
    """

    profile: str | None = None
    cap: int | None = None
    rates: tuple[Window, ...] | None = None
    tenant: str | None = None
    trunk: str | None = None
    paid_until: dt.date | None = None
    grace_days: int | None = None
    warn_days: int | None = None


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class Config:
    """Everything callthrottle can be told about carriers and numbers.

    Build it with :meth:`from_dict` or :meth:`from_toml` (which validate) and pass it to
    :class:`~callthrottle.Throttle` as ``config=``. In TOML::

        default_region = "CN"          # national numbers are read as Chinese numbers
        default_profile = "fixed-line" # for numbers not listed under [numbers]
        timezone = "Asia/Shanghai"     # where "midnight" is, for daily_reset

        [profiles.fixed-line]
        cap = 20
        rates = "1/second;100/hour;500/day"
        daily_reset = "midnight"
        [profiles.mobile]
        cap = 3

        [profiles.400-line]
        cap = 20
        paid_until = 2027-03-31        # rent paid up to this day (then 7 days' grace)

        [numbers."+8657188880001"]
        profile = "fixed-line"
        cap = 15                       # this number's carrier allows 15
        paid_until = 2027-01-31        # the last day paid for: expired from Feb 1st
        grace_days = 7                 # released Feb 8th unless renewed (the default)
        warn_days = 14                 # warnings from Jan 18th (default 7)

        [feedback.477]                 # a carrier's "caller over-frequency" answer
        action = "cooldown"
        seconds = 3600

    A number's cap is the first that is set of: the cap set at run time
    (:meth:`Throttle.set_cap`), the ``limit`` passed to :meth:`Throttle.acquire`, the number's
    ``cap``, its profile's ``cap``, and the throttle's ``default_limit``.
    """

    default_region: str | None = None
    default_profile: str | None = None
    timezone: ZoneInfo | None = None
    default_tenant: str | None = None
    callee_windows: tuple[Window, ...] = ()
    trunks: Mapping[str, GroupPlan] = field(default_factory=lambda: _frozen({}))
    tenants: Mapping[str, GroupPlan] = field(default_factory=lambda: _frozen({}))
    _plans: dict[str, RatePlan] = field(default_factory=dict, compare=False, repr=False)
    _terms: dict[str, Term | None] = field(default_factory=dict, compare=False, repr=False)
    profiles: Mapping[str, Profile] = field(default_factory=lambda: _frozen({}))
    numbers: Mapping[str, NumberSettings] = field(default_factory=lambda: _frozen({}))
    feedback: Mapping[str, Reaction] = field(default_factory=lambda: _frozen({}))
    pools: Mapping[str, PoolSettings] = field(default_factory=lambda: _frozen({}))

    def _profile_of(self, number: str) -> tuple[NumberSettings | None, Profile | None]:
        settings = self.numbers.get(number)
        name = settings.profile if settings is not None and settings.profile else None
        return settings, self.profiles.get(name or self.default_profile or "")

    def cap_for(self, number: str, default: int) -> int:
        """The configured cap of ``number`` (E.164), or ``default`` if none is configured."""
        settings, profile = self._profile_of(number)
        if settings is not None and settings.cap is not None:
            return settings.cap
        return default if profile is None else profile.cap

    def windows_for(self, number: str) -> tuple[Window, ...]:
        """The rate windows of ``number`` (E.164): its own, else its profile's."""
        settings, profile = self._profile_of(number)
        if settings is not None and settings.rates is not None:
            return settings.rates
        return () if profile is None else profile.rates

    def term_for(self, number: str) -> Term | None:
        """The paid period of ``number`` (E.164): its own ``paid_until``, else its profile's,
        with the instants it sets in the configured time zone; None if neither sets one."""
        if number in self._terms:
            return self._terms[number]
        settings, profile = self._profile_of(number)
        paid_until = settings.paid_until if settings is not None else None
        if paid_until is None and profile is not None:
            paid_until = profile.paid_until
        term = None
        if paid_until is not None:
            grace = settings.grace_days if settings is not None else None
            warn = settings.warn_days if settings is not None else None
            if grace is None:
                grace = DEFAULT_GRACE_DAYS if profile is None else profile.grace_days
            if warn is None:
                warn = DEFAULT_WARN_DAYS if profile is None else profile.warn_days
            term = Term.of(paid_until, grace, warn, self.timezone)
        if len(self._terms) >= 65536:
            self._terms.clear()
        self._terms[number] = term
        return term

    def without_terms(self) -> Config:
        """This configuration with no paid period tracked (for a fallback whose owner judges
        them)."""
        return replace(
            self,
            profiles=_frozen({n: replace(p, paid_until=None) for n, p in self.profiles.items()}),
            numbers=_frozen({n: replace(s, paid_until=None) for n, s in self.numbers.items()}),
            _plans={},
            _terms={},
        )

    def numbers_with_terms(self) -> dict[str, Term]:
        """Every listed number whose paid period is tracked, and its term (a profile's
        ``paid_until`` also covers numbers that are not listed: those are not here)."""
        terms = {number: self.term_for(number) for number in self.numbers}
        for settings in self.pools.values():
            for number in settings.numbers:
                terms[number] = self.term_for(number)
        return {number: term for number, term in terms.items() if term is not None}

    def tag_for(self, number: str) -> str:
        """The hash tag that all keys of one decision on ``number`` share (one Cluster slot).

        Its tenant; without one, its trunk; ``*`` when callee windows are configured (they count
        calls from every number); else the number itself.
        """
        settings = self.numbers.get(number)
        tenant = (settings.tenant if settings is not None else None) or self.default_tenant
        if tenant is not None:
            return f"t:{tenant}"
        if settings is not None and settings.trunk is not None:
            return f"k:{settings.trunk}"
        return "*" if self.callee_windows else number

    def pool_numbers(self) -> Mapping[str, Sequence[str]]:
        """The configured pools' numbers, pool by pool in the order configured."""
        return {name: pool.numbers for name, pool in self.pools.items()}

    def group_named(self, kind: str, name: str) -> tuple[GroupPlan, str] | None:
        """The trunk or tenant called ``name``, with the hash tag of its numbers; or None."""
        if kind == "tenant":
            group = self.tenants.get(name)
            return None if group is None else (group, f"t:{name}")
        group = self.trunks.get(name)
        if group is None:
            return None
        for number, settings in self.numbers.items():
            if settings.trunk == name:
                return group, self.tag_for(number)
        return group, f"k:{name}"

    def groups_for(self, number: str) -> tuple[GroupPlan, ...]:
        """The trunk and tenant limits that apply to ``number``, trunk first."""
        settings = self.numbers.get(number)
        tenant = (settings.tenant if settings is not None else None) or self.default_tenant
        groups = []
        if settings is not None and settings.trunk is not None:
            groups.append(self.trunks[settings.trunk])
        if tenant is not None and tenant in self.tenants:
            groups.append(self.tenants[tenant])
        return tuple(groups)

    def rate_plan_for(self, number: str) -> RatePlan:
        """The rate windows of ``number`` (E.164) with its profile's warm-up and daily reset,
        and its groups' limits."""
        plan = self._plans.get(number)
        if plan is None:
            if len(self._plans) >= 65536:
                self._plans.clear()
            plan = self._plans[number] = self._plan(number)
        return plan

    def member_spec(self, number: str, default_limit: int) -> MemberSpec:
        """What a backend needs to admit a call on ``number`` when it is picked from a pool."""
        area, region = locality(number)
        term = self.term_for(number)
        return MemberSpec(
            self.tag_for(number),
            self.cap_for(number, default_limit),
            self.rate_plan_for(number),
            area,
            region,
            0.0 if term is None else term.lapses_at,
            0.0 if term is None else term.warn_at,
        )

    def _plan(self, number: str) -> RatePlan:
        _, profile = self._profile_of(number)
        windows = self.windows_for(number)
        groups = self.groups_for(number)
        if profile is None:
            return RatePlan(windows, groups=groups) if windows or groups else NO_RATES
        return RatePlan(windows, profile.warmup, profile.daily_reset == "midnight", groups=groups)

    @classmethod
    def from_toml(cls, source: str | os.PathLike[str]) -> Config:
        """Read a TOML file (a path), and validate it as :meth:`from_dict` does."""
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                "config", str(path), f"a readable TOML file ({exc.strerror})"
            ) from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config", str(path), f"valid TOML ({exc})") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Validate a configuration given as nested dicts (the shape of the TOML file).

        :raises ConfigError: naming the first key that breaks a rule
        """
        top = _table("config", data, _TOP_KEYS)
        region = _wrap("config.default_region", check_region, top.get("default_region"))
        timezone = _wrap("config.timezone", check_timezone, top.get("timezone"))
        default_tenant = top.get("default_tenant")
        if default_tenant is not None:
            _check_tenant("config.default_tenant", default_tenant)
        callee = _table("config.callee", top.get("callee", {}), ("rates", "daily_reset"))
        callee_reset = _daily_reset("config.callee", callee)
        callee_windows: tuple[Window, ...] = ()
        if "rates" in callee:
            callee_windows = _wrap(
                "config.callee.rates", parse_windows, callee["rates"], callee_reset == "midnight"
            )
        profiles = {
            _name("config.profiles", name): _profile(f"config.profiles.{name}", raw)
            for name, raw in _table("config.profiles", top.get("profiles", {})).items()
        }
        default_profile = top.get("default_profile")
        if default_profile is not None and (
            not isinstance(default_profile, str) or default_profile not in profiles
        ):
            raise ConfigError(
                "config.default_profile", default_profile, _one_of("a profile", profiles)
            )
        trunks = {
            _name("config.trunks", name): _group(f"config.trunks.{name}", "trunk", name, raw)
            for name, raw in _table("config.trunks", top.get("trunks", {})).items()
        }
        tenants = {
            _name("config.tenants", name): _group(f"config.tenants.{name}", "tenant", name, raw)
            for name, raw in _table("config.tenants", top.get("tenants", {})).items()
        }
        numbers: dict[str, NumberSettings] = {}
        for raw_number, raw in _table("config.numbers", top.get("numbers", {})).items():
            where = f"config.numbers.{raw_number!r}"
            number = _wrap(where, normalize_number, raw_number, region, where)
            if number in numbers:
                raise ConfigError(where, raw_number, f"listed once (it is also listed as {number})")
            numbers[number] = _number(where, raw, profiles, default_profile, trunks)
        feedback = {
            _wrap(f"config.feedback.{code}", check_outcome, code): _reaction(
                f"config.feedback.{code}", raw
            )
            for code, raw in _table("config.feedback", top.get("feedback", {})).items()
        }
        _check_trunk_tenants(numbers, default_tenant)
        pools = _pools(_table("config.pools", top.get("pools", {})), region)
        return cls(
            trunks=_frozen(trunks),
            tenants=_frozen(tenants),
            default_region=region,
            default_profile=default_profile,
            timezone=timezone,
            default_tenant=default_tenant,
            callee_windows=callee_windows,
            profiles=_frozen(profiles),
            numbers=_frozen(numbers),
            feedback=_frozen(feedback),
            pools=_frozen(pools),
        )


def _pools(raw_pools: Mapping[str, Any], region: str | None) -> dict[str, PoolSettings]:
    pools: dict[str, PoolSettings] = {}
    for name, raw in raw_pools.items():
        where = f"config.pools.{_pool_name(name)}"
        table = _table(where, raw, ("numbers", "strategy", "fallback", "sticky_ttl"))
        listed = table.get("numbers", [])
        if not isinstance(listed, list):
            raise ConfigError(f"{where}.numbers", listed, "a list of numbers")
        numbers: dict[str, None] = {}
        for index, raw_number in enumerate(listed):
            at = f"{where}.numbers[{index}]"
            numbers[_wrap(at, normalize_number, raw_number, region, at)] = None
        strategy = _wrap(
            f"{where}.strategy", check_strategy, table.get("strategy", DEFAULT_STRATEGY)
        )
        fallback = table.get("fallback")
        if fallback is not None and (not isinstance(fallback, str) or fallback not in raw_pools):
            raise ConfigError(f"{where}.fallback", fallback, _one_of("a pool", raw_pools))
        sticky_ttl = _wrap(f"{where}.sticky_ttl", check_ttl, table.get("sticky_ttl", STICKY_TTL))
        pools[name] = PoolSettings(tuple(numbers), strategy, fallback, sticky_ttl)
    for name, settings in pools.items():
        seen = [name]
        fallback = settings.fallback
        while fallback is not None:
            if fallback not in pools:
                raise ConfigError(
                    f"config.pools.{name}.fallback", fallback, _one_of("a pool", pools)
                )
            if fallback in seen:
                raise ConfigError(
                    f"config.pools.{name}.fallback",
                    fallback,
                    f"a pool that does not fall back in a circle ({' -> '.join([*seen, fallback])})",
                )
            seen.append(fallback)
            fallback = pools[fallback].fallback
    return pools


def _table(where: str, value: object, known: tuple[str, ...] | None = None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(where, value, "a table (a mapping of keys to values)")
    if known is not None:
        for key in value:
            if key not in known:
                raise ConfigError(f"{where}.{key}", value[key], "a known key: " + ", ".join(known))
    return value


def _name(where: str, name: object) -> str:
    if not isinstance(name, str) or not name or not name.isprintable():
        raise ConfigError(where, name, "keyed by non-empty printable names")
    return name


_POOL_NAME_RULE = "free of whitespace and control characters"


def _pool_name(name: object) -> str:
    # A pool is named in acquire_from, which refuses whitespace: so does its configuration.
    try:
        return check_pool(name)
    except InvalidArgument as exc:
        free_of = exc.rule if exc.rule == "free of ':'" else _POOL_NAME_RULE
        raise ConfigError("config.pools", name, f"keyed by pool names {free_of}") from None


def _one_of(what: str, names: Mapping[str, object]) -> str:
    listed = ", ".join(repr(n) for n in names) or "none are defined"
    return f"{what} defined under [profiles] ({listed})"


def _wrap(where: str, check: Callable[..., _T], *args: object) -> _T:
    """Run ``check(*args)``; re-raise its InvalidArgument as a ConfigError at ``where``."""
    try:
        return check(*args)
    except ConfigError:
        raise
    except InvalidArgument as exc:
        raise ConfigError(where, exc.value, exc.rule) from None


def _profile(where: str, raw: object) -> Profile:
    table = _table(where, raw, ("cap", "rates", "daily_reset", "warmup", *_TERM_KEYS))
    cap = _wrap(f"{where}.cap", check_limit, table.get("cap", 20))
    daily_reset = _daily_reset(where, table)
    rates: tuple[Window, ...] = ()
    if "rates" in table:
        rates = _wrap(f"{where}.rates", parse_windows, table["rates"], daily_reset == "midnight")
    warmup = table.get("warmup", [])
    if not isinstance(warmup, list):
        raise ConfigError(
            f"{where}.warmup", warmup, "a list of daily caps by week, e.g. [10, 20, 30]"
        )
    for index, daily in enumerate(warmup):
        _wrap(f"{where}.warmup[{index}]", check_amount, daily, "warmup")
    paid_until, grace, warn = _term(where, table)
    return Profile(
        cap=cap,
        rates=rates,
        daily_reset=daily_reset,
        warmup=tuple(warmup),
        paid_until=paid_until,
        grace_days=DEFAULT_GRACE_DAYS if grace is None else grace,
        warn_days=DEFAULT_WARN_DAYS if warn is None else warn,
    )


_TERM_KEYS = ("paid_until", "grace_days", "warn_days")


def _term(where: str, table: Mapping[str, Any]) -> tuple[dt.date | None, int | None, int | None]:
    paid_until = table.get("paid_until")
    if paid_until is not None:
        paid_until = _wrap(f"{where}.paid_until", check_paid_until, paid_until)
    grace, warn = table.get("grace_days"), table.get("warn_days")
    if grace is not None:
        _wrap(f"{where}.grace_days", check_days, grace, "grace_days")
    if warn is not None:
        _wrap(f"{where}.warn_days", check_days, warn, "warn_days")
    return paid_until, grace, warn


def _number(
    where: str,
    raw: object,
    profiles: Mapping[str, Profile],
    default_profile: str | None,
    trunks: Mapping[str, GroupPlan],
) -> NumberSettings:
    table = _table(where, raw, ("profile", "cap", "rates", "tenant", "trunk", *_TERM_KEYS))
    trunk = table.get("trunk")
    if trunk is not None and trunk not in trunks:
        listed = ", ".join(repr(n) for n in trunks) or "none are defined"
        raise ConfigError(f"{where}.trunk", trunk, f"a trunk defined under [trunks] ({listed})")
    profile = table.get("profile")
    if profile is not None and profile not in profiles:
        raise ConfigError(f"{where}.profile", profile, _one_of("a profile", profiles))
    cap = table.get("cap")
    if cap is not None:
        _wrap(f"{where}.cap", check_limit, cap)
    rates = None
    if "rates" in table:
        own = profiles.get(profile or default_profile or "")
        midnight = own is not None and own.daily_reset == "midnight"
        rates = _wrap(f"{where}.rates", parse_windows, table["rates"], midnight)
    tenant = table.get("tenant")
    if tenant is not None:
        _check_tenant(f"{where}.tenant", tenant)
    paid_until, grace, warn = _term(where, table)
    return NumberSettings(
        profile=profile,
        cap=cap,
        rates=rates,
        tenant=tenant,
        trunk=trunk,
        paid_until=paid_until,
        grace_days=grace,
        warn_days=warn,
    )


def _group(where: str, kind: str, name: str, raw: object) -> GroupPlan:
    table = _table(where, raw, ("cap", "rates", "reserve", "daily_reset"))
    cap = table.get("cap")
    if cap is not None:
        _wrap(f"{where}.cap", check_limit, cap)
    reserve = _wrap(f"{where}.reserve", check_reserve, table.get("reserve", 0))
    if reserve and (cap is None or reserve >= cap):
        raise ConfigError(f"{where}.reserve", reserve, f"less than the cap ({cap})")
    midnight = _daily_reset(where, table) == "midnight"
    windows: tuple[Window, ...] = ()
    if "rates" in table:
        windows = _wrap(f"{where}.rates", parse_windows, table["rates"], midnight)
    return GroupPlan(f"{kind}:{name}", cap, reserve, windows)


def _daily_reset(where: str, table: Mapping[str, Any]) -> str:
    daily_reset = table.get("daily_reset", "rolling")
    if daily_reset not in ("rolling", "midnight"):
        raise ConfigError(f"{where}.daily_reset", daily_reset, "'rolling' or 'midnight'")
    return str(daily_reset)


def _check_trunk_tenants(numbers: Mapping[str, NumberSettings], default: str | None) -> None:
    """A trunk's numbers share one tenant: one decision must stay on one hash tag."""
    seen: dict[str, str | None] = {}
    for settings in numbers.values():
        if settings.trunk is None:
            continue
        tenant = settings.tenant or default
        if settings.trunk in seen and seen[settings.trunk] != tenant:
            raise ConfigError(
                f"config.trunks.{settings.trunk}",
                [seen[settings.trunk], tenant],
                "used by numbers of one tenant only (its calls are counted together)",
            )
        seen[settings.trunk] = tenant


def _check_tenant(where: str, tenant: object) -> None:
    if (
        not isinstance(tenant, str)
        or not tenant
        or not tenant.isprintable()
        or "{" in tenant
        or "}" in tenant
    ):
        raise ConfigError(where, tenant, "a non-empty printable name without braces")


def _reaction(where: str, raw: object) -> Reaction:
    table = _table(where, raw, ("action", "seconds", "cap", "factor", "reason"))
    fields = {key: table.get(key) for key in ("seconds", "cap", "factor", "reason")}
    if fields["seconds"] is not None:
        _wrap(f"{where}.seconds", check_ttl, fields["seconds"], "seconds")
    reaction = Reaction(action=table.get("action", ""), **fields)
    try:
        return check_reaction(where.rpartition(".")[2], reaction, "config.feedback")
    except InvalidArgument as exc:
        raise ConfigError(where + exc.argument.rpartition("]")[2], exc.value, exc.rule) from None
