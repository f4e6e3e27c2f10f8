"""The plan book: what the configuration says of a number (its cap, rate windows, pool
membership) and of a pool or a group, the per-number answers remembered in one cache."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ._errors import InvalidArgument
from ._pools import MemberSpec, PoolSettings
from ._rates import NO_RATES, GroupPlan, RatePlan, utc_offset
from ._validate import check_limit

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._config import Config
    from ._terms import Term

    #: A number's configured cap, rate plan and paid period (None: not tracked).
    Configured = tuple[int, RatePlan, Term | None]

__all__ = ("Plans",)

#: The cap and rate plan the configuration gives each number, until this many are known.
_PLAN_CACHE_SIZE = 65536
_NO_POOL_SETTINGS = PoolSettings()  # a pool made at run time: least-loaded, no fallback


class Plans:
    """Reads the (frozen) configuration for a throttle.

    ``known`` maps each number seen to its configured cap (else the default limit), rate plan
    and paid period (None: not tracked): the hot path looks there first (``plans.known.get(number)``) and asks
    :meth:`configured` only for a number it has not seen.
    """

    __slots__ = ("_config", "_default_limit", "known", "stamp", "version")

    def __init__(self, config: Config, default_limit: int) -> None:
        self._config = config
        self._default_limit = default_limit
        self.known: dict[str, Configured] = {}
        #: the version of the published policy the plans come from (0: none published), and
        #: its stamp (what requests carry: see ``Published.stamp``)
        self.version = 0
        self.stamp = 0

    @property
    def config(self) -> Config:
        """The configuration the plans are read from."""
        return self._config

    @property
    def default_limit(self) -> int:
        return self._default_limit

    def adopt(self, config: Config, default_limit: int, version: int, stamp: int) -> None:
        """Read the plans from now on from ``config``, a published policy's (``version``,
        ``stamp``)."""
        self._config = config
        self._default_limit = default_limit
        self.known.clear()  # the same dict: the line reads it directly
        self.version = version
        self.stamp = stamp

    def configured(self, number: str) -> Configured:
        """The number's configured cap (else ``default_limit``), rate plan and paid period,
        remembered."""
        if len(self.known) >= _PLAN_CACHE_SIZE:
            self.known.clear()
        configured = self.known[number] = (
            self._config.cap_for(number, self._default_limit),
            self._config.rate_plan_for(number),
            self._config.term_for(number),
        )
        return configured

    def cap_for(self, number: str, limit: int | None) -> int:
        """``limit`` (checked) if given, else the number's configured cap."""
        if limit is not None:
            return check_limit(limit)
        return self._config.cap_for(number, self._default_limit)

    def for_call(self, plan: RatePlan, callee: str | None, priority: int) -> RatePlan:
        """The number's rate plan for one call: its priority, its callee's windows, and the
        configured timezone's offset now (for calendar-day windows)."""
        if priority and plan.groups:
            plan = replace(plan, priority=priority)
        if callee is not None and self._config.callee_windows:
            plan = replace(plan, callee=callee, callee_windows=self._config.callee_windows)
        if self._config.timezone is None or plan is NO_RATES:
            return plan  # no window can be a calendar day: the offset is not needed
        return replace(plan, tz_offset=utc_offset(self._config.timezone))

    def for_pick(self, callee: str | None, priority: int) -> RatePlan:
        """The call's part of a pick's rate plan (each number's own part is the backend's)."""
        config = self._config
        return RatePlan(
            tz_offset=0.0 if config.timezone is None else utc_offset(config.timezone),
            callee=callee,
            callee_windows=config.callee_windows if callee is not None else (),
            priority=priority,
        )

    def midnight(self, number: str) -> bool:
        """Whether the number's per-day windows reset at local midnight."""
        return self._config.rate_plan_for(number).midnight

    def specs(self, numbers: Iterable[str]) -> dict[str, MemberSpec]:
        """What a pool is told of each of ``numbers`` (cap, windows, trunk, tenant)."""
        return {n: self._config.member_spec(n, self._default_limit) for n in numbers}

    def pool(self, name: str) -> PoolSettings:
        """The pool's configured settings (a pool made at run time: the defaults)."""
        return self._config.pools.get(name) or _NO_POOL_SETTINGS

    def configured_pools(self) -> list[tuple[str, list[str]]]:
        """Each configured pool that lists numbers, with them."""
        return [(n, list(s.numbers)) for n, s in self._config.pools.items() if s.numbers]

    def is_configured_pool(self, name: str) -> bool:
        """Whether the configuration names the pool (whether it lists numbers or not)."""
        return name in self._config.pools

    def unknown_pool(self, name: str) -> InvalidArgument:
        """The error for a pool neither configured nor with numbers in the backend (a typo)."""
        known = sorted(self._config.pools)
        listed = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        configured = f"a configured pool ({listed})" if known else "a configured pool"
        return InvalidArgument("pool", name, f"{configured} or one with numbers in the backend")

    def pool_numbers(self, name: str) -> list[str]:
        """The numbers the configuration lists for the pool (none if it is not configured)."""
        settings = self._config.pools.get(name)
        return [] if settings is None else list(settings.numbers)

    def pool_chain(self, pool: str) -> list[str]:
        """The pool, then its ``fallback`` pool, and so on."""
        chain = [pool]
        settings = self._config.pools.get(pool)
        while settings is not None and settings.fallback is not None:
            chain.append(settings.fallback)
            settings = self._config.pools.get(settings.fallback)
        return chain

    def group(self, kind: str, name: str) -> tuple[GroupPlan, str]:
        """A configured trunk's or tenant's plan and key tag.

        :raises InvalidArgument: if there is no such trunk or tenant
        """
        config = self._config
        found = config.group_named(kind, name) if kind in ("trunk", "tenant") else None
        if found is None:
            known = [f"trunk {n!r}" for n in config.trunks]
            known += [f"tenant {n!r}" for n in config.tenants]
            rule = f"a configured trunk or tenant ({', '.join(known) or 'none'})"
            raise InvalidArgument("group", f"{kind} {name}", rule)
        return found
