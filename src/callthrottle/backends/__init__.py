"""Backends: where slot state lives. ``MemoryBackend`` (embedded) and ``RedisBackend``."""

from ._base import AcquireResult as AcquireResult
from ._base import Backend as Backend
from ._base import EventListener as EventListener
from ._base import Layout as Layout
from ._base import Outcome as Outcome
from ._base import ReleaseState as ReleaseState
from ._base import RenewState as RenewState
from ._base import RestoreOutcome as RestoreOutcome
from ._requests import AcquireRequest as AcquireRequest
from ._requests import PickRequest as PickRequest
from .memory import MemoryBackend as MemoryBackend
from .redis import RedisBackend as RedisBackend

__all__ = (
    "AcquireRequest",
    "AcquireResult",
    "Backend",
    "EventListener",
    "Layout",
    "MemoryBackend",
    "Outcome",
    "PickRequest",
    "RedisBackend",
    "ReleaseState",
    "RenewState",
    "RestoreOutcome",
)
