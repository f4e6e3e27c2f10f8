"""The carrier policy as one document: what is published to a backend for every process.

A :class:`~callthrottle.Config` is written as the dict :meth:`Config.from_dict` reads (numbers
in E.164, rate windows in ``limits``' notation, every default spelt out), then as canonical
JSON (sorted keys, no spaces): two configurations that say the same have the same text, and
the SHA-256 of that text (the *digest*) tells them apart from any other. Reading the text back
gives an equal ``Config``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._config import Config, ConfigError
from ._terms import DEFAULT_GRACE_DAYS, DEFAULT_WARN_DAYS
from ._validate import check_limit

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from ._config import NumberSettings, Profile
    from ._health import Reaction
    from ._pools import PoolSettings
    from ._rates import GroupPlan, Window

__all__ = ("PolicyDocument", "config_to_dict", "differences")


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    """A configuration and the cap of a number it gives none (a throttle's ``default_limit``),
    with their canonical text and digest."""

    config: Config
    default_limit: int
    text: str
    digest: str

    @classmethod
    def of(cls, config: Config, default_limit: int) -> PolicyDocument:
        data = {"config": config_to_dict(config), "default_limit": default_limit}
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return cls(config, default_limit, text, hashlib.sha256(text.encode()).hexdigest())

    @classmethod
    def parse(cls, text: str) -> PolicyDocument:
        """A published document read back (validated as any configuration).

        :raises ConfigError: if the text is not a valid configuration
        """
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError("policy", text[:40], f"a JSON document ({exc})") from None
        if not isinstance(data, dict) or set(data) != {"config", "default_limit"}:
            raise ConfigError("policy", text[:40], "a document of config and default_limit")
        limit = check_limit(data["default_limit"], "policy.default_limit")
        return cls.of(Config.from_dict(data["config"]), limit)

    @property
    def short(self) -> str:
        """The digest's first 12 characters, as shown to people."""
        return self.digest[:12]


def config_to_dict(config: Config) -> dict[str, Any]:
    """``config`` as the dict :meth:`Config.from_dict` reads back into an equal ``Config``."""
    out: dict[str, Any] = {}
    for key in ("default_region", "default_profile", "default_tenant"):
        value = getattr(config, key)
        if value is not None:
            out[key] = value
    if config.timezone is not None:
        out["timezone"] = config.timezone.key
    if config.callee_windows:
        out["callee"] = _windows_table(config.callee_windows)
    out["profiles"] = {name: _profile(p) for name, p in config.profiles.items()}
    out["numbers"] = {number: _number(s) for number, s in config.numbers.items()}
    out["trunks"] = {name: _group(g) for name, g in config.trunks.items()}
    out["tenants"] = {name: _group(g) for name, g in config.tenants.items()}
    out["feedback"] = {code: _reaction(r) for code, r in config.feedback.items()}
    out["pools"] = {name: _pool(p) for name, p in config.pools.items()}
    return out


def _written(windows: tuple[Window, ...]) -> str:
    return ";".join(window.written for window in windows)


def _windows_table(windows: tuple[Window, ...]) -> dict[str, Any]:
    midnight = any(window.calendar for window in windows)
    return {"rates": _written(windows), "daily_reset": "midnight" if midnight else "rolling"}


def _profile(profile: Profile) -> dict[str, Any]:
    out: dict[str, Any] = {"cap": profile.cap, "daily_reset": profile.daily_reset}
    if profile.rates:
        out["rates"] = _written(profile.rates)
    if profile.warmup:
        out["warmup"] = list(profile.warmup)
    if profile.paid_until is not None:
        out["paid_until"] = profile.paid_until.isoformat()
    # The term's defaults are spelt out only where a term is set: a document that sets none
    # reads as before they existed (and keeps its digest).
    if profile.paid_until is not None or profile.grace_days != DEFAULT_GRACE_DAYS:
        out["grace_days"] = profile.grace_days
    if profile.paid_until is not None or profile.warn_days != DEFAULT_WARN_DAYS:
        out["warn_days"] = profile.warn_days
    return out


def _number(settings: NumberSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("profile", "cap", "tenant", "trunk", "grace_days", "warn_days"):
        value = getattr(settings, key)
        if value is not None:
            out[key] = value
    if settings.rates is not None:
        out["rates"] = _written(settings.rates)
    if settings.paid_until is not None:
        out["paid_until"] = settings.paid_until.isoformat()
    return out


def _group(group: GroupPlan) -> dict[str, Any]:
    out: dict[str, Any] = {"reserve": group.reserve}
    if group.cap is not None:
        out["cap"] = group.cap
    if group.windows:
        out.update(_windows_table(group.windows))
    return out


def _reaction(reaction: Reaction) -> dict[str, Any]:
    out: dict[str, Any] = {"action": reaction.action}
    for key in ("seconds", "cap", "factor", "reason"):
        value = getattr(reaction, key)
        if value is not None:
            out[key] = value
    return out


def _pool(pool: PoolSettings) -> dict[str, Any]:
    out: dict[str, Any] = {
        "numbers": list(pool.numbers),
        "strategy": pool.strategy,
        "sticky_ttl": pool.sticky_ttl,
    }
    if pool.fallback is not None:
        out["fallback"] = pool.fallback
    return out


def differences(old: PolicyDocument | None, new: PolicyDocument) -> list[str]:
    """What changes from ``old`` (None: nothing published) to ``new``, one line per setting:
    ``~ numbers."+8657188880001".cap: 20 -> 3``, ``+ pools.sales.strategy: ...``."""
    before = _settings(old) if old is not None else {}
    after = _settings(new)
    lines = []
    for path in sorted(before.keys() | after.keys()):
        if path not in after:
            lines.append(f"- {path}: {before[path]}")
        elif path not in before:
            lines.append(f"+ {path}: {after[path]}")
        elif before[path] != after[path]:
            lines.append(f"~ {path}: {before[path]} -> {after[path]}")
    return lines


def _settings(document: PolicyDocument) -> dict[str, str]:
    data = json.loads(document.text)
    return dict(_leaves({"default_limit": data["default_limit"], **data["config"]}))


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in data.items():
        part = json.dumps(key) if any(c in key for c in ".+ ") else key
        path = f"{prefix}.{part}" if prefix else part
        if isinstance(value, dict) and value:
            yield from _leaves(value, path)
        else:
            yield path, json.dumps(value)
