"""Which carrier policy a throttle decides with: the one published to the backend for every
process, or, while none is, its own configuration.

A throttle opened with ``config=`` and ``policy="match"`` (the default) must find that same
policy published, or none: a different one is a :class:`PolicyMismatch`, at open and whenever a
new one is published while it runs. With ``policy="follow"``, or without ``config=``, it takes
whatever is published. Every request carries the version decided with; the backend refuses one
made with an older version than the newest published (``Outcome.STALE``), and the throttle
then loads the new one (:meth:`PolicySource.refresh`) and asks again: no decision is made with
a superseded policy, whichever process made it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import anyio

from ._config import ConfigError
from ._errors import InvalidArgument, PolicyMismatch, ThrottleError
from ._policy_doc import PolicyDocument
from .backends import MemoryBackend

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._config import Config
    from ._plans import Plans
    from ._settings import Settings
    from .backends import Backend
    from .backends._policy import Published

__all__ = ("PolicyMode", "PolicySource", "check_policy_mode", "same_layout")

logger = logging.getLogger("callthrottle")

PolicyMode = Literal["match", "follow"]


def check_policy_mode(mode: object) -> PolicyMode:
    if mode == "match":
        return "match"
    if mode == "follow":
        return "follow"
    raise InvalidArgument("policy", mode, "'match' or 'follow'")


def same_layout(old: Config, new: Config, *, pools: bool) -> bool:
    """Whether every number's keys stay where they are from ``old`` to ``new``: the same
    tenant, trunk (and with ``pools``, a Redis Cluster's, first pool) for each number either
    lists, the same default tenant, and callee windows on in both or off in both (see
    ``Config.tag_for`` and ``KeySpace.tag_of``)."""
    if old.default_tenant != new.default_tenant:
        return False
    if bool(old.callee_windows) != bool(new.callee_windows):
        return False
    numbers = old.numbers.keys() | new.numbers.keys()
    for pool in (old.pools, new.pools):
        for settings in pool.values():
            numbers |= set(settings.numbers)
    return all(_place(old, n, pools) == _place(new, n, pools) for n in numbers)


def _place(config: Config, number: str, pools: bool) -> tuple[str | None, str | None, str | None]:
    settings = config.numbers.get(number)
    first_pool = None
    if pools:
        first_pool = next((name for name, p in config.pools.items() if number in p.numbers), None)
    if settings is None:
        return None, None, first_pool
    return settings.tenant, settings.trunk, first_pool


class PolicySource:
    """The policy a throttle's plans hold (their ``version`` and ``stamp``: 0 for its own
    configuration, none being published)."""

    __slots__ = ("_backend", "_given", "_local", "_mode", "_plans", "_settings")

    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        plans: Plans,
        mode: PolicyMode,
        *,
        given: bool,
    ) -> None:
        self._backend = backend
        self._settings = settings
        self._plans = plans
        self._mode = mode
        self._given = given  # config= was passed: it is what "match" compares
        self._local = PolicyDocument.of(settings.config, settings.default_limit)

    @property
    def local(self) -> PolicyDocument:
        """The policy this throttle was given (its ``config=`` and ``default_limit``)."""
        return self._local

    async def open(self) -> None:
        """At open: take the published policy, if any (see the module's docstring)."""
        published = await self._backend.published_policy()
        if published is None:
            if self._given and not isinstance(self._backend, MemoryBackend):
                # Other processes may enforce other caps on the same numbers: said once.
                logger.warning(
                    "no carrier policy is published on %r: this process enforces its own "
                    "config=, which other processes sharing the backend may not; publish it "
                    "(`callthrottle policy apply FILE`) so that every process enforces one",
                    self._backend,
                )
            return
        self._adopt(published, opening=True)

    async def refresh(self) -> None:
        """A newer policy is published (a request was refused as stale): take it."""
        published = await self._backend.published_policy(self._plans.stamp)
        if published is not None and published.stamp > self._plans.stamp:
            self._adopt(published, opening=False)

    def published(self, document: PolicyDocument, version: int, stamp: int) -> None:
        """This throttle published ``document`` as ``version``: it is its own from now on."""
        self._local = document
        self._plans.adopt(document.config, document.default_limit, version, stamp)
        self._settings.adopt(document.config)

    async def watch(
        self, interval: float, waiting: Callable[[], bool], changed: Callable[[], None]
    ) -> None:
        """While the throttle is open and callers of it wait (``waiting()``), look every
        ``interval`` seconds for a newer published policy (one read): callers that only wait
        learn of it (a raised cap may admit them); ``changed()`` is called once one is found
        (the waiters ask again, with it). A throttle whose callers do not wait reads nothing:
        its next acquire learns of it (the backend refuses it as stale)."""
        while True:
            await anyio.sleep(interval)
            if not waiting():
                continue
            try:
                published = await self._backend.published_policy(self._plans.stamp)
            except ThrottleError:
                continue  # the heartbeat says that the backend is unreachable
            if published is None or published.stamp <= self._plans.stamp:
                continue
            try:
                self._adopt(published, opening=False)
            except (PolicyMismatch, ConfigError) as exc:
                logger.error("%s", exc)  # each acquire raises it from now on
            changed()

    def _adopt(self, published: Published, *, opening: bool) -> None:
        document = PolicyDocument.parse(published.document)
        if self._mode == "match" and self._given and document.digest != self._local.digest:
            raise PolicyMismatch(
                f"the carrier policy published on the backend (version {published.version}, "
                f"{document.short}, by {published.by}) is not this throttle's config= "
                f"({self._local.short}); run `callthrottle policy diff` with this "
                "configuration to see how, and open the throttle with policy='follow' to take "
                "whatever is published",
                published.version,
                document.short,
            )
        current = self._plans.config
        moves = not same_layout(current, document.config, pools=self._backend.pools_place_numbers)
        if not opening and moves:
            raise PolicyMismatch(
                f"the carrier policy published on the backend (version {published.version}) "
                "moves numbers to another tenant, trunk or first pool (or turns callee windows "
                "on or off), which changes where their keys are: this throttle cannot take it "
                "while open; reopen it",
                published.version,
                document.short,
            )
        replaced = self._plans.version
        self._plans.adopt(
            document.config, document.default_limit, published.version, published.stamp
        )
        self._settings.adopt(document.config)
        if opening:
            self._backend.use_layout(document.config)
        if replaced and published.version != replaced:
            logger.warning(
                "carrier policy version %d (%s, by %s) is now in force, replacing version %d",
                published.version,
                document.short,
                published.by,
                replaced,
            )
