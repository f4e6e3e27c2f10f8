"""The carrier policy published for every process, on :class:`~callthrottle.Throttle`: read
it, publish one, look at the versions it replaced. Done by the throttle's
:class:`~callthrottle._policy_source.PolicySource` and ``_publishing``; none is on the hot
path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import InvalidArgument
from ._policy_doc import PolicyDocument
from ._policy_source import same_layout
from ._publishing import PublishedPolicy, publish, read_published
from ._settings import load_config
from ._validate import check_int, check_limit

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

    from ._config import Config
    from ._plans import Plans
    from ._policy_source import PolicySource
    from ._settings import Settings
    from ._terms import Calendar
    from .backends import Backend

__all__ = ("PolicyMethods",)


class PolicyMethods:
    """Mixed into :class:`~callthrottle.Throttle`, which provides the attributes below."""

    __slots__ = ()

    if TYPE_CHECKING:
        _backend: Backend
        _plans: Plans
        _policy: PolicySource
        _settings: Settings

        def _check_open(self) -> None: ...

    @property
    def config(self) -> Config:
        """The configuration this throttle decides with: its ``config=``, or the published
        policy's once it follows one."""
        return self._plans.config

    @property
    def calendar(self) -> Calendar:
        """The clock that says which day it is for numbers' paid periods (``calendar=``)."""
        return self._settings.calendar

    @property
    def policy_version(self) -> int:
        """The version of the published carrier policy this throttle decides with (0: none is
        published, it decides with its own ``config=``)."""
        return self._plans.version

    async def published_policy(self) -> PublishedPolicy | None:
        """The carrier policy in force for every process, or None if none was published."""
        self._check_open()
        published = await self._backend.published_policy()
        return None if published is None else read_published(published)

    async def policy_history(self, count: int = 20) -> list[PublishedPolicy]:
        """Up to ``count`` of the versions the one in force replaced, newest first (the
        backend keeps the last 50)."""
        count = check_limit(count, "count")
        self._check_open()
        return [read_published(p) for p in await self._backend.policy_history(count)]

    async def publish_policy(
        self,
        config: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        *,
        default_limit: int | None = None,
        comment: str = "",
        expected: int | None = None,
    ) -> PublishedPolicy:
        """Publish a carrier policy for every process: ``config`` (default: this throttle's
        own) with ``default_limit`` (default: this throttle's), as the next version. From then
        on no process decides with an older version: each takes it at its next acquire (or
        within ``renew_interval``), or refuses calls with :class:`PolicyMismatch` if it was
        opened with another ``config=`` and ``policy="match"``. This throttle takes it at
        once. The pools it lists are published with it.

        Publishing the policy in force again makes a new version with the same digest.

        :param comment: why (one line), kept with the version
        :param expected: the version the caller compared against (see ``callthrottle policy
            diff``): if another is in force, nothing is written; default: the one in force now
        :raises PolicyConflict: if ``expected`` is not the version in force
        :raises InvalidArgument: if the policy would move numbers' keys under this throttle
            (publish such a change with ``callthrottle policy apply``, then reopen throttles)
        """
        new_config = self._plans.config if config is None else load_config(config)
        limit = self._plans.default_limit if default_limit is None else default_limit
        document = PolicyDocument.of(new_config, check_limit(limit, "default_limit"))
        if expected is not None:  # a version number (0: none published), else bad input
            expected = check_int(expected, "expected", 0, 2**53)
        self._check_open()
        if not same_layout(self._plans.config, new_config, pools=self._backend.pools_place_numbers):
            raise InvalidArgument(
                "config",
                document.short,
                "a policy that leaves every number's tenant, trunk and first pool as they are "
                "(publish a change of them with `callthrottle policy apply`)",
            )
        current = await self._backend.published_policy()
        in_force = 0 if current is None else current.version
        previous = None if current is None else PolicyDocument.parse(current.document)
        published = await publish(
            self._backend,
            document,
            expected=in_force if expected is None else expected,
            previous=previous,
            comment=comment,
        )
        self._policy.published(document, published.version, published.stamp)
        return published
