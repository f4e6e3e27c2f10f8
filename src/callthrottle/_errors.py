"""Every error callthrottle raises.

The hierarchy::

    ThrottleError                       root of everything raised here; never raised bare
    ├── InvalidArgument (ValueError)    bad input, refused before anything is written
    │   └── UnknownScheme               Throttle.from_url() got a scheme it cannot serve
    ├── LeaseConflict (ValueError)      the token already holds or waits for a slot on the number
    ├── AcquireTimeout (TimeoutError)   no slot within the timeout (timeout=0: not at once)
    │   └── RateLimited                 ... because a rate window of the number was full
    ├── NumberUnavailable               the number's state admits no calls (cooling, flagged, ...)
    ├── BackendUnavailable              the backend failed or timed out; the driver's error is __cause__
    └── UnsupportedEventLoop (RuntimeError)
                                        the backend cannot run on the current event loop (Redis on trio)

Code that only wants to know "did the throttle refuse or fail?" catches :class:`ThrottleError`.
"""

from __future__ import annotations

__all__ = (
    "AcquireTimeout",
    "BackendUnavailable",
    "InvalidArgument",
    "LeaseConflict",
    "NumberUnavailable",
    "PoolExhausted",
    "RateLimited",
    "ThrottleError",
    "UnknownScheme",
    "UnsupportedEventLoop",
)


class ThrottleError(Exception):
    """Base class of every error raised by callthrottle."""


class InvalidArgument(ThrottleError, ValueError):
    """An argument broke a rule; nothing was written.

    :ivar argument: the name of the offending argument
    :ivar value: the value that was refused
    :ivar rule: what the argument must be
    """

    def __init__(self, argument: str, value: object, rule: str) -> None:
        self.argument = argument
        self.value = value
        self.rule = rule
        super().__init__(f"{argument} must be {rule}, got {value!r}")


class UnknownScheme(InvalidArgument):
    """:meth:`Throttle.from_url` got a URL whose scheme no backend serves."""

    def __init__(self, url: str, supported: tuple[str, ...]) -> None:
        scheme = url.partition("://")[0] if "://" in url else url
        super().__init__(
            "url", url, "a URL with one of the schemes " + ", ".join(f"{s}://" for s in supported)
        )
        self.scheme = scheme
        self.supported = supported


class LeaseConflict(ThrottleError, ValueError):
    """The token already holds (or waits for) a slot on this number.

    Tokens identify leases: two live leases on one number must never share a token, or one of
    them would not be counted against the cap. Pass a unique token per call (the call ID), or
    let :meth:`Throttle.acquire` generate one.
    """

    def __init__(self, number: str, token: str, detail: str) -> None:
        self.number = number
        self.token = token
        super().__init__(f"token {token!r} {detail} on number {number!r}")


class AcquireTimeout(ThrottleError, TimeoutError):
    """No slot on the number became free within the timeout.

    With ``timeout=0`` this means the number was full (or had callers queued ahead) at the
    moment of asking. Nothing is left behind: the caller is no longer queued.
    """

    #: What refused the call: ``"cap"`` (the number was full), a group's cap
    #: (``"trunk:<name>"``, ``"tenant:<name>"``), a rate window, or ``"fence"``: the backend
    #: may have lost calls in progress (a Redis restart, failover or flush) and admits no new
    #: call until their holders have counted them again (``retry_after`` says when).
    refused_by: str
    #: Seconds until the refusing limit admits a call again, when that is known (rate windows).
    retry_after: float | None = None

    def __init__(self, number: str, timeout: float | None, refused_by: str = "cap") -> None:
        self.number = number
        self.timeout = timeout
        self.refused_by = refused_by
        if timeout == 0:
            message = f"no free slot on number {number!r} (try-once acquire, timeout=0)"
        else:
            message = f"no free slot on number {number!r} within {timeout} s"
        if refused_by == "fence":
            message += (
                ": the server may have lost the calls in progress (restart, failover or flush) "
                "and admits no new call until their holders have counted them again"
            )
        elif refused_by != "cap":
            message += f": {refused_by} is full"
        super().__init__(message)


class PoolExhausted(AcquireTimeout):
    """No number of the pool (nor of its fallback pools) could take the call within the
    timeout: each was full, cooling down, over a rate window or otherwise unable to admit.

    ``refused_by`` is ``"pool"``; ``pools`` lists the pools tried, in order; ``retry_after``
    is the earliest time, in seconds, at which a number that was tried could admit again, when
    that is known; ``lapsed`` says that the paid period of every number of those pools had
    ended (by the throttle's calendar), so none was tried.
    """

    def __init__(
        self,
        pool: str,
        timeout: float | None,
        pools: tuple[str, ...],
        retry_after: float | None = None,
        *,
        lapsed: bool = False,
    ) -> None:
        self.pool = pool
        self.pools = pools
        self.number = f"pool:{pool}"
        self.timeout = timeout
        self.refused_by = "pool"
        self.retry_after = retry_after
        self.lapsed = lapsed
        tried = " then ".join(repr(p) for p in pools)
        if timeout == 0:
            message = f"no number of pool {tried} could take the call (try-once, timeout=0)"
        else:
            message = f"no number of pool {tried} could take the call within {timeout} s"
        if retry_after is not None:
            message += f"; the earliest retry is in {retry_after:.3f} s"
        if lapsed:
            message += ": the paid period of every number lapsed (expired or released)"
        TimeoutError.__init__(self, message)


class RateLimited(AcquireTimeout):
    """A rate window of the number was full (e.g. its calls per second or per day).

    Nothing was counted: a refused call uses up no slot and no room in any window.

    :ivar refused_by: the full window, e.g. ``"rate window 5 per 1 s"``
    :ivar retry_after: seconds until that window admits a call again
    """

    def __init__(self, number: str, timeout: float | None, window: str, retry_after: float) -> None:
        self.number = number
        self.timeout = timeout
        self.refused_by = f"rate window {window}"
        self.retry_after = retry_after
        waited = "" if not timeout else f" within {timeout} s"
        TimeoutError.__init__(
            self,
            f"number {number!r} is over its rate window {window}{waited}; "
            f"retry in {retry_after:.3f} s",
        )


class NumberUnavailable(ThrottleError):
    """The number's state admits no calls: it is cooling down, flagged, disabled, expired or
    released. Calls already up on it run out normally.

    :ivar number: the number (E.164)
    :ivar state: its state, e.g. ``"cooling"``
    :ivar reason: why, as given when the state was set (None if none was given)
    :ivar retry_after: seconds until it admits calls again (a cool-down), or None if that takes
        an operator
    """

    def __init__(
        self, number: str, state: str, reason: str | None, retry_after: float | None
    ) -> None:
        self.number = number
        self.state = state
        self.reason = reason
        self.retry_after = retry_after
        message = f"number {number!r} is {state}"
        if reason:
            message += f" ({reason})"
        if retry_after is not None:
            message += f"; it admits calls again in {retry_after:.0f} s"
        super().__init__(message)


class BackendUnavailable(ThrottleError):
    """The backend could not be reached or did not answer in time.

    The driver's own exception is chained as ``__cause__``. After this error the outcome of the
    operation is unknown to the caller; callthrottle gives back any slot it may have been granted.
    """


class UnsupportedEventLoop(ThrottleError, RuntimeError):
    """The backend cannot run on the event loop in use (e.g. Redis under trio)."""


class PolicyMismatch(ThrottleError):
    """The carrier policy published to the backend is not the one this throttle was given.

    Raised when a throttle opened with ``config=`` (``policy="match"``, the default) finds a
    different policy published (at open, or when a new one is published while it runs), and
    when a published change would move numbers' keys (another tenant, trunk or first pool, or
    callee windows turned on or off) under a running throttle: reopen it to take that change.

    :ivar published: the version published (0: none)
    :ivar digest: that version's digest (its first 12 characters)
    """

    def __init__(self, message: str, published: int, digest: str) -> None:
        self.published = published
        self.digest = digest
        super().__init__(message)


class PolicyConflict(ThrottleError):
    """Another version of the policy was published after the one a publisher read: nothing was
    written (read it again, and publish on top of it).

    :ivar expected: the version the publisher read
    :ivar current: the version in force
    """

    def __init__(self, expected: int, current: int) -> None:
        self.expected = expected
        self.current = current
        super().__init__(
            f"policy version {current} is in force, not {expected}: another publish came first "
            "(nothing was written; compare with the new version and publish again)"
        )
