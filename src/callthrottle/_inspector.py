"""The operator's read-only window on a backend: what ``callthrottle status`` and ``top`` show.

An :class:`Inspector` is not a :class:`~callthrottle.Throttle`: opening it publishes no pool,
subscribes to nothing and runs no heartbeat, and it only asks the backend's views
(:class:`~callthrottle.backends._base.Views`). On Redis each view is a function registered
``no-writes`` and called with ``FCALL_RO`` (``EVAL_RO`` of the same code when the server lacks
this release's library, which is never loaded for a view), and the lists of numbers and pools
are SCANs: the server itself refuses any write. The configuration only says where numbers live
(their trunks and tenants) and their configured caps and rate windows; a number the backend
holds state for is read under the hash tag its keys were found under.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import Config
from ._numbers import check_region, normalize_number
from ._operator import status_from_policy
from ._plans import Plans
from ._publishing import read_published
from ._settings import check_calendar
from ._url import backend_from_url
from ._validate import check_limit, check_pool

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    from ._health import NumberStatus
    from ._models import Holder, Usage, WindowUsage
    from ._publishing import PublishedPolicy
    from ._rates import GroupPlan
    from ._terms import Calendar, Term
    from .backends._base import Views

__all__ = ("Inspector",)


class _Found:
    """The configuration's layout, except that a number is read where its keys were found: a
    view with another configuration than the dialers' (or none) must not read an empty place
    and call a busy number idle."""

    __slots__ = ("_config", "_tags")

    def __init__(self, config: Config, found: Mapping[str, Sequence[str]]) -> None:
        self._config = config
        self._tags: dict[str, str] = {}
        for number, tags in found.items():
            configured = config.tag_for(number)
            self._tags[number] = configured if configured in tags or not tags else tags[0]

    def tag_for(self, number: str) -> str:
        return self._tags.get(number) or self._config.tag_for(number)

    def groups_for(self, number: str) -> tuple[GroupPlan, ...]:
        return self._config.groups_for(number)

    def pool_numbers(self) -> Mapping[str, Sequence[str]]:
        # A number found under its own tag is read there: no pool of the configuration moves
        # it under the pool's tag (as a Cluster's layout would, see KeySpace.tag_of).
        return {
            pool: [n for n in numbers if self._tags.get(n) != n]
            for pool, numbers in self._config.pool_numbers().items()
        }


class Inspector:
    """Read what every process holds, without writing anything (``async with`` it).

    Once a carrier policy is published to the backend, it is what the inspector reads caps,
    rate windows, trunks, tenants and pools from (what every throttle enforces): ``config``
    and ``default_limit`` only stand in while none is (:attr:`published`).

    :param backend: the backend to read (only its views are used); not shared with a
        throttle (the inspector tells it where numbers are found)
    :param config: where numbers live, and their configured caps and rate windows, while no
        policy is published
    :param default_limit: the cap of a number the configuration does not give one
    :param default_region: region for national numbers (default: the configuration's)
    :param close_backend: close the backend when the inspector closes (``from_url`` sets it)
    :param calendar: the clock that says which day it is for numbers' paid periods (seconds
        since the epoch; ``time.time`` if None), as :class:`Throttle`'s
    """

    __slots__ = (
        "_backend", "_calendar", "_close_backend", "_config", "_plans", "_published", "_region",
    )  # fmt: skip

    def __init__(
        self,
        backend: Views,
        *,
        config: Config | None = None,
        default_limit: int = 20,
        default_region: str | None = None,
        close_backend: bool = False,
        calendar: Calendar | None = None,
    ) -> None:
        self._calendar = check_calendar(calendar)
        self._config = Config() if config is None else config
        self._plans = Plans(self._config, check_limit(default_limit, "default_limit"))
        self._region = check_region(default_region) or self._config.default_region
        self._backend = backend
        self._close_backend = close_backend
        self._published: PublishedPolicy | None = None
        backend.use_layout(self._config)  # where keys are: read only, in this process

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        config: Config | None = None,
        default_limit: int = 20,
        default_region: str | None = None,
        calendar: Calendar | None = None,
        **options: Any,
    ) -> Inspector:
        """An inspector of the backend the URL names (see :meth:`Throttle.from_url`)."""
        calendar = check_calendar(calendar)  # bad input before a connection is made
        backend = backend_from_url(url, options)
        return cls(
            backend,
            config=config,
            default_limit=default_limit,
            default_region=default_region,
            close_backend=True,
            calendar=calendar,
        )

    async def __aenter__(self) -> Inspector:
        await self._backend.open()  # connects: nothing is written
        try:
            if not await self.refresh_policy():
                await self._locate()
        except BaseException:
            if self._close_backend:
                await self._backend.aclose()
            raise
        return self

    async def refresh_policy(self) -> bool:
        """Read the published policy again (one read; ``top`` and the metrics exporter do at
        each refresh); True if another version is in force since it was last read."""
        published = await self._backend.published_policy()
        if published is None or (
            self._published is not None and published.stamp == self._published.stamp
        ):
            return False
        self._published = policy = read_published(published)
        self._config = policy.config
        self._plans = Plans(policy.config, policy.default_limit)
        self._backend.use_layout(policy.config)
        await self._locate()  # where each number's keys are found, under this policy
        return True

    async def _locate(self) -> list[str]:
        """Find where every number's keys are (a SCAN on Redis), read them there from now on,
        and return the numbers."""
        found = await self._backend.number_tags()
        if found:
            self._backend.use_layout(_Found(self._config, found))
        return sorted(found)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._close_backend:
            await self._backend.aclose()

    @property
    def config(self) -> Config:
        """The configuration in force: the published policy's once the inspector is open and
        one is published, else the one it was made with. Where numbers live, their configured
        caps, the trunks, tenants and pools a snapshot of the shared state lists."""
        return self._config

    @property
    def published(self) -> PublishedPolicy | None:
        """The carrier policy published to the backend (read when the inspector opened), or
        None."""
        return self._published

    @property
    def calendar(self) -> Calendar:
        """The clock that says which day it is (numbers' paid periods)."""
        return self._calendar

    def term_for(self, number: str) -> Term | None:
        """The number's paid period under the configuration in force (None: not tracked)."""
        return self._config.term_for(self._number(number))

    def cap_source(self, number: str, status: NumberStatus) -> str:
        """Where the number's cap in force comes from: ``run-time`` (``set_cap``), ``lowered``
        (for a while, after a carrier's answer), ``policy vN`` (the published policy names
        it, or its profile does), ``config`` (the configuration given, none being published),
        or ``default`` (``default_limit``)."""
        if status.cap is not None:
            return "run-time"
        lowered = status.lowered_cap
        if lowered is not None and lowered < self._plans.cap_for(self._number(number), None):
            return "lowered"
        return self._configured_source(number, "cap")

    def windows_source(self, number: str, status: NumberStatus) -> str | None:
        """Where the number's rate windows come from (as :meth:`cap_source`; None: it has
        none)."""
        if status.rates is not None:
            return "run-time"
        if not self._config.windows_for(self._number(number)):
            return None
        return self._configured_source(number, "rates")

    def _configured_source(self, number: str, what: str) -> str:
        number = self._number(number)
        settings = self._config.numbers.get(number)
        profile_name = (settings.profile if settings is not None else None) or (
            self._config.default_profile
        )
        own = settings is not None and getattr(settings, what) is not None
        if not own and (profile_name is None or profile_name not in self._config.profiles):
            return "default" if what == "cap" else "config"
        published = self._published
        return "config" if published is None else f"policy v{published.version}"

    def _number(self, number: str) -> str:
        return normalize_number(number, self._region)

    async def known_numbers(self) -> list[str]:
        """See :meth:`Throttle.known_numbers`. Each is read where its keys are from now on
        (under the hash tag they were found under, whatever the configuration says)."""
        located = await self._locate()
        return located or await self._backend.known_numbers()

    async def known_pools(self) -> dict[str, list[str]]:
        """Every pool the backend holds numbers for, whoever published it (configured here or
        not), with its numbers in round-robin order."""
        return await self._backend.known_pools()

    async def pool_members(self, pool: str) -> list[str]:
        """See :meth:`Throttle.pool_members`."""
        return await self._backend.pool_members(check_pool(pool))

    async def usage(self, number: str, *, limit: int | None = None) -> Usage:
        """See :meth:`Throttle.usage`."""
        number = self._number(number)
        return await self._backend.usage(number, self._plans.cap_for(number, limit))

    async def holders(self, number: str) -> list[Holder]:
        """See :meth:`Throttle.holders`."""
        return await self._backend.holders(self._number(number))

    async def oldest_wait(self, number: str) -> float | None:
        """Seconds the longest-waiting live caller in the number's line has waited (None:
        nobody waits)."""
        return await self._backend.oldest_wait(self._number(number))

    async def window_usage(self, number: str) -> list[WindowUsage]:
        """See :meth:`Throttle.window_usage`."""
        number = self._number(number)
        return await self._backend.window_usage(number, self._plans.configured(number)[1])

    async def group_usage(self, kind: str, name: str) -> Usage:
        """See :meth:`Throttle.group_usage`."""
        group, tag = self._plans.group(kind, name)
        return await self._backend.group_usage(group, tag)

    async def status(self, number: str, *, now: float | None = None) -> NumberStatus:
        """See :meth:`Throttle.status`: the run-time state, unless the calendar (at ``now``,
        the :attr:`calendar`'s time if None) says the number's paid period is over."""
        number = self._number(number)
        policy = await self._backend.get_policy(number)
        term = self._config.term_for(number)
        return status_from_policy(policy, term, lambda: self._calendar() if now is None else now)
