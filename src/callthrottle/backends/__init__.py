"""Backends: where slot state lives. ``MemoryBackend`` (embedded) and ``RedisBackend``.

A backend fulfils :class:`Backend`: the union of the roles :class:`SlotStore`,
:class:`EventSource`, :class:`PoolStore`, :class:`PolicyStore`, :class:`Inspection` and
:class:`Lifecycle`, asked with requests (:class:`AcquireRequest`, :class:`PickRequest`, policy
changes) and answering with results (:class:`AcquireResult`, :class:`PickResult` ...).
"""

from ._base import Backend as Backend
from ._base import EventListener as EventListener
from ._base import EventSource as EventSource
from ._base import Inspection as Inspection
from ._base import Layout as Layout
from ._base import Lifecycle as Lifecycle
from ._base import PolicyStore as PolicyStore
from ._base import PoolStore as PoolStore
from ._base import SlotStore as SlotStore
from ._policy import GroupPolicyChange as GroupPolicyChange
from ._policy import Keep as Keep
from ._policy import PolicyChange as PolicyChange
from ._policy import RuntimePolicy as RuntimePolicy
from ._requests import AcquireRequest as AcquireRequest
from ._requests import PickRequest as PickRequest
from ._results import AcquireResult as AcquireResult
from ._results import Outcome as Outcome
from ._results import PickResult as PickResult
from ._results import ReleaseState as ReleaseState
from ._results import RenewState as RenewState
from ._results import RestoreOutcome as RestoreOutcome
from .memory import MemoryBackend as MemoryBackend
from .redis import RedisBackend as RedisBackend

__all__ = (
    "AcquireRequest",
    "AcquireResult",
    "Backend",
    "EventListener",
    "EventSource",
    "GroupPolicyChange",
    "Inspection",
    "Keep",
    "Layout",
    "Lifecycle",
    "MemoryBackend",
    "Outcome",
    "PickRequest",
    "PickResult",
    "PolicyChange",
    "PolicyStore",
    "PoolStore",
    "RedisBackend",
    "ReleaseState",
    "RenewState",
    "RestoreOutcome",
    "RuntimePolicy",
    "SlotStore",
)
