"""Slots taken and given back from the calling thread: no event loop, no background thread.

For hosts where a background thread cannot be relied on: a SIP proxy's worker that runs Python
only while it handles a message (Kamailio's app_python3 keeps the interpreter's lock between
messages), an AGI script or a webhook handler that exits while its call goes on. Every lease
belongs to a named session (see :class:`~callthrottle.Throttle`'s ``session``), which something
else keeps alive: the host's timer calling :meth:`SessionClient.keepalive`, or
``callthrottle keepalive --session NAME``. When the keep-alive stops, the session's leases lapse
within ``lease_ttl``.

::

    from callthrottle.blocking import SessionClient

    client = SessionClient.from_url("redis://localhost:6379/0", session="kamailio@sbc-1",
                                    config="carriers.toml")
    lease = client.acquire("+8657188880001", token=call_id, timeout=0)  # or raises
    ...
    client.end_call(lease)  # on hang-up: ReleaseOutcome.RELEASED / EXPIRED / UNKNOWN

Each call is one round trip to Redis (plus one to load the function library into a server that
lacks it). Waiting (``timeout`` > 0) asks again at the times the server suggests, at most every
0.25 s: no events, no thread. A single server, or Sentinel's master; not Redis Cluster.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from redis.exceptions import ReadOnlyError, RedisError, ResponseError
from redis.sentinel import Sentinel

import redis

from ._errors import (
    AcquireTimeout,
    BackendUnavailable,
    InvalidArgument,
    LeaseConflict,
    NumberUnavailable,
    PolicyMismatch,
    RateLimited,
)
from ._expiry import ExpiryWatch, lapse_refusal, refusal_if_lapsed
from ._health import NumberState
from ._hooks import Hooks
from ._line import no_newer_policy
from ._models import Lease, ReleaseOutcome
from ._numbers import check_region, normalize_number
from ._policy_doc import PolicyDocument
from ._policy_source import PolicyMode, check_policy_mode, same_layout
from ._rates import NO_RATES, utc_offset
from ._settings import check_calendar, load_config
from ._validate import (
    check_limit,
    check_max_hold,
    check_session,
    check_timeout,
    check_token,
    check_ttl,
)
from .backends._codec import (
    abandon_argv,
    acquire_argv,
    acquire_result,
    get_policy_result,
    keepalive_argv,
    policy_read_result,
    release_argv,
)
from .backends._keys import KeySpace
from .backends._redis_url import parse_sentinel_url
from .backends._requests import AcquireRequest
from .backends._results import Outcome
from .backends.redis import _LIBRARY

if TYPE_CHECKING:
    import os

    from ._config import Config
    from ._terms import Calendar

__all__ = ("SessionClient",)

_OUTCOMES = {1: ReleaseOutcome.RELEASED, 2: ReleaseOutcome.EXPIRED, 0: ReleaseOutcome.UNKNOWN}
_POLL_MAX = 0.25  # seconds between two asks of a waiting caller, at most


class SessionClient:
    """Blocking acquire and release for the leases of one session, from the calling thread.

    :param client: a redis-py (blocking) client of a single server or of Sentinel's master
    :param session: the session the leases belong to (e.g. ``"kamailio@sbc-1"``)
    :param config: as :class:`~callthrottle.Throttle`'s (a :class:`~callthrottle.Config`, a
        dict or the path of a TOML file): caps, rate windows, trunks and tenants
    :param default_limit: the cap of a number the config does not name
    :param lease_ttl: how long (seconds) the session lives after its last keep-alive or acquire
    :param max_hold: if set, no lease lives longer than this (else one day)
    :param key_prefix: as the throttles' that share the numbers
    :param default_region: the region of national numbers (e.g. ``"CN"``), else the config's
    :param policy: as :class:`~callthrottle.Throttle`'s: with a carrier policy published on
        Redis, ``"match"`` (the default) refuses calls (:class:`PolicyMismatch`) unless it is
        ``config=`` and ``default_limit``; ``"follow"`` takes it. It is read at the first
        acquire after a new one is published (the server refuses a request made with an
        older one).
    :param calendar: as :class:`~callthrottle.Throttle`'s: the clock that says which day it
        is for numbers' paid periods (``time.time`` if None)
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        session: str,
        config: Config | str | os.PathLike[str] | dict[str, Any] | None = None,
        default_limit: int = 20,
        lease_ttl: float = 30.0,
        max_hold: float | None = None,
        key_prefix: str = "callthrottle:",
        default_region: str | None = None,
        policy: PolicyMode = "match",
        calendar: Calendar | None = None,
    ) -> None:
        self._mode = check_policy_mode(policy)
        self._calendar = check_calendar(calendar)
        self._given = config is not None
        self._config = load_config(config)
        self._session = check_session(session)
        # Warnings of numbers whose paid period ends soon: logged once a day per number.
        self._expiry = ExpiryWatch(self._calendar, Hooks(self._session), self._session)
        self._region = check_region(default_region) or self._config.default_region
        self._default_limit = check_limit(default_limit, "default_limit")
        self._lease_ttl = check_ttl(lease_ttl)
        self._max_hold = check_max_hold(max_hold)
        self._client = client
        # The Redis backend's key layout and argument encoding: the same requests as the
        # async path sends, sent here from the calling thread.
        self._space = KeySpace(key_prefix, cluster=False)
        self._space.use(self._config)
        self._local = PolicyDocument.of(self._config, self._default_limit)
        # The published policy in use: its version and stamp (0: none, the config given).
        self._version = self._stamp = 0

    @classmethod
    def from_url(cls, url: object, *, session: str, **kwargs: Any) -> SessionClient:
        """Connect lazily to ``redis://`` (or ``rediss://``, ``unix://``) ``url``, or through
        Sentinel to a service's master (``redis+sentinel://host:port[,...]/service[/db]``, as
        :meth:`~callthrottle.Throttle.from_url`: the master is asked of the sentinels at each
        connection, so the client follows a failover)."""
        timeouts: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
        if isinstance(url, str) and url.startswith("redis+sentinel://"):
            hosts, service, settings = parse_sentinel_url(url)
            sentinel = Sentinel(hosts, sentinel_kwargs=timeouts, **timeouts, **settings)
            return cls(sentinel.master_for(service), session=session, **kwargs)
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise InvalidArgument(
                "url", url, "a redis://, rediss://, unix:// or redis+sentinel:// URL"
            )
        try:
            client = redis.Redis.from_url(url, **timeouts)
        except ValueError as exc:
            raise InvalidArgument("url", url, str(exc)) from exc
        return cls(client, session=session, **kwargs)

    @property
    def session(self) -> str:
        return self._session

    def close(self) -> None:
        """Close the connection. The session's leases stay: they lapse with the session."""
        self._client.close()

    def __enter__(self) -> SessionClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, function: str, keys: list[str], args: tuple[Any, ...]) -> Any:
        name = _LIBRARY.functions[function]
        try:
            try:
                return self._client.fcall(name, len(keys), *keys, *args)
            except ReadOnlyError:
                # A master that became a replica (a failover, under Sentinel): the call ran
                # nowhere; on a new connection the master is asked for again.
                self._client.connection_pool.disconnect()
                return self._client.fcall(name, len(keys), *keys, *args)
            except ResponseError as exc:
                if "function not found" not in str(exc).lower():
                    raise
                self._client.function_load(_LIBRARY.source, replace=True)
                return self._client.fcall(name, len(keys), *keys, *args)
        except (RedisError, OSError) as exc:
            raise BackendUnavailable(f"Redis failed during {function}: {exc}") from exc

    def keepalive(self) -> None:
        """Keep the session alive ``lease_ttl`` more (one call): every lease of it lives on."""
        record = self._space.session_record("")
        self._call("keepalive", [record], keepalive_argv(self._session, self._lease_ttl))

    def acquire(
        self,
        number: str,
        *,
        token: str | None = None,
        limit: int | None = None,
        timeout: float | None = 0.0,
    ) -> Lease:
        """Take a slot on ``number`` for the session (its config's cap, or ``limit``).

        :param token: the lease's token, e.g. the call's Call-ID (a new one if None)
        :param timeout: how long to wait for a slot (0: ask once; None: as long as it takes)
        :raises AcquireTimeout: no slot (``RateLimited`` when a rate window is full)
        :raises NumberUnavailable: the number admits no calls now
        :raises LeaseConflict: ``token`` is another owner's
        :raises BackendUnavailable: Redis failed (the request may still hold a slot: release
            the token, or it lapses with the session)
        """
        number = normalize_number(number, self._region)
        token = secrets.token_hex(12) if token is None else check_token(token)
        wait_for = check_timeout(timeout)
        if limit is not None:
            check_limit(limit)
        deadline = math.inf if wait_for is None else time.monotonic() + wait_for
        wait = wait_for != 0
        self._paid_for(number)  # before any place in line may be taken
        if not wait:
            return self._ask(number, token, limit, wait_for, deadline, wait=False)
        try:
            return self._ask(number, token, limit, wait_for, deadline, wait=True)
        except LeaseConflict:
            raise  # the token is another's: its place is not ours to give up
        except BaseException:
            # Refused, timed out, interrupted between two asks, or a failure: a place in line
            # it may hold goes (else the next slot that frees waits for a caller who left).
            with contextlib.suppress(BackendUnavailable):
                args = abandon_argv(token, self._session, number, self._space.channels)
                # Where the number lives now: a policy taken meanwhile may have moved it.
                self._call("abandon", self._space.number_keys(number), args)
            raise

    def _request(self, number: str, token: str, limit: int | None, wait: bool) -> tuple[Any, ...]:
        """acquire.lua's ARGV for the call, with the policy in use."""
        config = self._config
        cap = config.cap_for(number, self._default_limit) if limit is None else limit
        rates = config.rate_plan_for(number)
        if rates is not NO_RATES and config.timezone is not None:
            rates = replace(rates, tz_offset=utc_offset(config.timezone))
        request = AcquireRequest(
            number, token, self._session, cap, self._lease_ttl, self._max_hold, rates, True,
            self._stamp,
        )  # fmt: skip
        holder = self._space.session_holder(self._session, "")
        return acquire_argv(request, holder, wait, self._space.channels)

    def _paid_for(self, number: str) -> None:
        """Refuse a number whose paid period lapsed by the calendar, unless a policy published
        since renewed it (one read of the published policy per refused call).

        :raises NumberUnavailable: it lapsed and no renewal is published
        """
        term = self._config.term_for(number)
        if term is None:
            return
        if self._expiry.has_lapsed(term):
            self._take_newer()
        self._refuse_if_lapsed(number)

    def _refuse_if_lapsed(self, number: str) -> None:
        """Refuse the number if its period lapsed by the policy in use (warned of once a
        day)."""
        term = self._config.term_for(number)
        state = None if term is None else self._expiry.lapsed(number, term)
        if term is None or state is None:
            return
        runtime = None
        if state is NumberState.EXPIRED:  # an operator may have released it already
            keys = self._space.number_keys(number)
            runtime = get_policy_result(self._call("get_policy", keys, ()))
        raise lapse_refusal(number, term, state, runtime)

    def _take_published(self) -> None:
        """A newer carrier policy is published (an acquire was refused as stale): use it, as
        a throttle does (see :class:`~callthrottle.Throttle`'s ``policy``)."""
        if not self._take_newer():
            raise no_newer_policy(self._version)

    def _take_newer(self) -> bool:
        """Use the carrier policy published on Redis if it is newer than the one in use;
        whether it was."""
        keys = [self._space.policy_key, self._space.policy_history_key]
        current, _ = policy_read_result(self._call("policy_read", keys, (0, self._stamp)))
        if current is None or current.stamp <= self._stamp:
            return False
        document = PolicyDocument.parse(current.document)
        if self._mode == "match" and self._given and document.digest != self._local.digest:
            raise PolicyMismatch(
                f"the carrier policy published on Redis (version {current.version}, "
                f"{document.short}) is not this client's config= ({self._local.short}); "
                "pass policy='follow' to take whatever is published",
                current.version,
                document.short,
            )
        if self._version and not same_layout(self._config, document.config, pools=False):
            raise PolicyMismatch(
                f"the carrier policy published on Redis (version {current.version}) moves "
                "numbers to another tenant, trunk or first pool: make a new client",
                current.version,
                document.short,
            )
        self._config, self._default_limit = document.config, document.default_limit
        self._space.use(document.config)
        self._version, self._stamp = current.version, current.stamp
        return True

    def _ask(
        self,
        number: str,
        token: str,
        limit: int | None,
        wait_for: float | None,
        deadline: float,
        *,
        wait: bool,
    ) -> Lease:
        """Ask until granted or refused for good, or until ``deadline``."""
        args = self._request(number, token, limit, wait)  # the same every ask
        while True:
            keys = self._space.number_keys(number)
            result = acquire_result(self._call("acquire", keys, args))
            outcome = result.outcome
            if outcome is Outcome.STALE:  # each time a newer one was published, or an error
                self._take_published()
                self._refuse_if_lapsed(number)  # the newer policy may end its paid period
                args = self._request(number, token, limit, wait)
                continue
            if outcome is Outcome.GRANTED:
                lease = Lease(number, token, self._session)
                if wait:
                    self._lapsed_while_waiting(lease)
                return lease
            if outcome is Outcome.CONFLICT:
                raise LeaseConflict(number, token, "already holds or waits for another owner's")
            if outcome is Outcome.UNAVAILABLE:
                raise NumberUnavailable(
                    number, result.state or "unavailable", result.reason, result.retry_in
                )
            left = deadline - time.monotonic()
            if left <= 0:
                if outcome is Outcome.RATE_LIMITED and result.window is not None:
                    window = f"{result.window.amount}/{result.window.seconds:g}s"
                    raise RateLimited(number, wait_for, window, result.retry_in or 0.0)
                refused_by = result.group if outcome is Outcome.GROUP_FULL else "cap"
                if result.fenced:  # the server may have lost calls in progress (see Throttle)
                    refused = AcquireTimeout(number, wait_for, "fence")
                    refused.retry_after = result.retry_in
                    raise refused
                raise AcquireTimeout(number, wait_for, refused_by or "cap")
            hint = result.retry_in if result.retry_in is not None else _POLL_MAX
            # Asked again well within its place's lapse (a lease TTL), or the place is lost.
            time.sleep(min(max(hint, 0.01), _POLL_MAX, self._lease_ttl / 3, left))

    def _lapsed_while_waiting(self, lease: Lease) -> None:
        """A slot granted after the number lapsed (the caller waited across it) is refused as
        a caller arriving then would be (:meth:`acquire` gives the slot back, as any slot of a
        wait that failed)."""
        term = self._config.term_for(lease.number)
        refused = refusal_if_lapsed(lease.number, term, self._calendar())
        if refused is not None:
            raise refused

    def end_call(self, lease: Lease) -> ReleaseOutcome:
        """Give the slot back (from any process of the session) and say what was found."""
        if not isinstance(lease, Lease):
            raise InvalidArgument("lease", lease, "a Lease")
        number = normalize_number(lease.number, self._region)
        token = check_token(lease.token)
        args = release_argv(token, self._session, number, self._space.channels, None, None)
        reply = self._call("release", self._space.number_keys(number), args)
        return _OUTCOMES[int(reply[0])]

    def release(self, lease: Lease) -> bool:
        """As :meth:`end_call`: True if a live lease was released."""
        return self.end_call(lease) is ReleaseOutcome.RELEASED
