"""callthrottle: per-number concurrency caps for outbound call centers.

Ask for a slot on a caller-ID number before placing a call, hold it for the call's life, and
give it back when the call ends; every process and host sharing the backend sees the same cap.
"""

from __future__ import annotations

from ._config import Config as Config
from ._config import ConfigError as ConfigError
from ._config import NumberSettings as NumberSettings
from ._config import Profile as Profile
from ._errors import AcquireTimeout as AcquireTimeout
from ._errors import BackendUnavailable as BackendUnavailable
from ._errors import InvalidArgument as InvalidArgument
from ._errors import LeaseConflict as LeaseConflict
from ._errors import NumberUnavailable as NumberUnavailable
from ._errors import PolicyConflict as PolicyConflict
from ._errors import PolicyMismatch as PolicyMismatch
from ._errors import PoolExhausted as PoolExhausted
from ._errors import RateLimited as RateLimited
from ._errors import ThrottleError as ThrottleError
from ._errors import UnknownScheme as UnknownScheme
from ._errors import UnsupportedEventLoop as UnsupportedEventLoop
from ._events import Admitted as Admitted
from ._events import Cancelled as Cancelled
from ._events import Event as Event
from ._events import Expiring as Expiring
from ._events import LeaseLost as LeaseLost
from ._events import Queued as Queued
from ._events import Reclaimed as Reclaimed
from ._events import Refused as Refused
from ._events import Released as Released
from ._events import Restored as Restored
from ._health import NumberState as NumberState
from ._health import NumberStatus as NumberStatus
from ._health import Reaction as Reaction
from ._models import Holder as Holder
from ._models import Lease as Lease
from ._models import ReleaseOutcome as ReleaseOutcome
from ._models import Usage as Usage
from ._models import WindowUsage as WindowUsage
from ._pools import PoolSettings as PoolSettings
from ._publishing import PublishedPolicy as PublishedPolicy
from ._rates import Window as Window
from ._throttle import Throttle as Throttle

__all__ = (
    "AcquireTimeout",
    "Admitted",
    "BackendUnavailable",
    "Cancelled",
    "Config",
    "ConfigError",
    "Event",
    "Expiring",
    "Holder",
    "InvalidArgument",
    "Lease",
    "LeaseConflict",
    "LeaseLost",
    "NumberSettings",
    "NumberState",
    "NumberStatus",
    "NumberUnavailable",
    "PolicyConflict",
    "PolicyMismatch",
    "PoolExhausted",
    "PoolSettings",
    "Profile",
    "PublishedPolicy",
    "Queued",
    "RateLimited",
    "Reaction",
    "Reclaimed",
    "Refused",
    "ReleaseOutcome",
    "Released",
    "Restored",
    "Throttle",
    "ThrottleError",
    "UnknownScheme",
    "UnsupportedEventLoop",
    "Usage",
    "Window",
    "WindowUsage",
)

for _name in __all__:
    globals()[_name].__module__ = __name__


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version

        return version("callthrottle")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
