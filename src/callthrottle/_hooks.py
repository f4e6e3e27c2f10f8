"""The hooks of a throttle: add, remove, and tell each of them an event."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._errors import InvalidArgument
from ._events import Admitted

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._events import Event
    from ._models import Lease

    #: A hook: called with each event, in the throttle's task; what it returns is ignored.
    Hook = Callable[[Event], object]

__all__ = ("Hooks",)

logger = logging.getLogger("callthrottle")


class Hooks:
    """The hooks installed on one throttle, in the order they were added.

    ``installed`` is a plain tuple so that the hot path asks ``if hooks.installed:`` and pays
    nothing more when there is no hook; a failing hook is logged once per kind of event.
    """

    __slots__ = ("_failures", "_owner_id", "installed")

    def __init__(self, owner_id: str) -> None:
        self._owner_id = owner_id  # named in the log of a failing hook
        self.installed: tuple[Hook, ...] = ()
        self._failures: set[tuple[int, type[Event]]] = set()

    def add(self, hook: Hook) -> None:
        """Install ``hook`` (once: adding it again does nothing)."""
        if not callable(hook):
            raise InvalidArgument("hook", hook, "a callable taking one event")
        if hook not in self.installed:
            self.installed = (*self.installed, hook)

    def remove(self, hook: Hook) -> None:
        """Uninstall ``hook``; does nothing if it is not installed."""
        self.installed = tuple(each for each in self.installed if each != hook)
        self._failures = {key for key in self._failures if key[0] != id(hook)}

    def emit(self, event: Event) -> None:
        """Tell every hook ``event``; an exception in a hook is logged, never raised."""
        for hook in self.installed:
            try:
                hook(event)
            except Exception:
                failure = (id(hook), type(event))
                if failure in self._failures:
                    continue
                self._failures.add(failure)
                logger.exception(
                    "hook %r failed on %s (further failures of it on %s events are not logged)",
                    hook,
                    type(event).__name__,
                    type(event).__name__,
                    extra={"owner": self._owner_id},
                )

    def admitted(self, lease: Lease, waited: float) -> None:
        """Tell every hook that ``lease`` was granted after ``waited`` seconds."""
        self.emit(
            Admitted(lease.number, lease.token, self._owner_id, waited, lease.pool, lease.degraded)
        )
