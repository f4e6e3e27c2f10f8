"""Backends: where slot state lives. ``MemoryBackend`` (embedded) and ``RedisBackend``."""

from ._base import AcquireResult as AcquireResult
from ._base import Backend as Backend
from ._base import EventListener as EventListener
from ._base import Layout as Layout
from ._base import Outcome as Outcome
from ._base import ReleaseState as ReleaseState
from ._base import RenewState as RenewState
from ._base import RestoreOutcome as RestoreOutcome
from ._policy import GroupPolicyChange as GroupPolicyChange
from ._policy import Keep as Keep
from ._policy import PolicyChange as PolicyChange
from ._policy import RuntimePolicy as RuntimePolicy
from ._requests import AcquireRequest as AcquireRequest
from ._requests import PickRequest as PickRequest
from .memory import MemoryBackend as MemoryBackend
from .redis import RedisBackend as RedisBackend

__all__ = (
    "AcquireRequest",
    "AcquireResult",
    "Backend",
    "EventListener",
    "GroupPolicyChange",
    "Keep",
    "Layout",
    "MemoryBackend",
    "Outcome",
    "PickRequest",
    "PolicyChange",
    "RedisBackend",
    "ReleaseState",
    "RenewState",
    "RestoreOutcome",
    "RuntimePolicy",
)
