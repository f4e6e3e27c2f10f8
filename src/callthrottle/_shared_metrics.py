"""The shared-state collector behind :class:`callthrottle.prometheus.SharedStateCollector`.

Kept apart from the hook: it reads the backend (through an
:class:`~callthrottle._inspector.Inspector`) where the hook only counts its own process's
events. Imported by :mod:`callthrottle.prometheus`, after its check that prometheus-client is
installed.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from ._health import NumberState
from ._inspector import Inspector
from ._survey import Filters, Snapshot, collect
from ._validate import check_flag, check_seconds

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Iterator

    from anyio.abc import TaskStatus
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from ._config import Config
    from ._terms import Calendar

__all__ = ("SharedStateCollector", "days_left")

logger = logging.getLogger("callthrottle.prometheus")

#: What a read gathers: every number, trunk, tenant and pool; no rate windows (not exported).
_WHAT = Filters(rates=False)

#: Every state a number may be in, in the order the enum lists them (one series each).
_STATES = tuple(state.value for state in NumberState)


@dataclass(frozen=True)
class _Source:
    """What :func:`~callthrottle._survey.collect` reads besides the backend."""

    config: Config
    shown_url: str = ""


@dataclass(frozen=True)
class _Reading:
    """The last snapshot read, when its read began (``time.monotonic``), and whether the
    latest read succeeded. Replaced whole, never changed: ``collect`` (in the HTTP server's
    thread) takes one reference and sees one consistent reading."""

    snapshot: Snapshot | None = None
    read_at: float = 0.0
    up: bool = False


class SharedStateCollector:
    """A Prometheus collector of what every process holds, read from the backend.

    The backend is read in the event loop, by :meth:`refresh` (:meth:`run` and :meth:`running`
    call it every ``interval``); a scrape (``collect``, called by prometheus_client in its HTTP
    server's thread) serves the last snapshot, with its age, and never waits for the backend.
    While reads fail, the last values stay, ``..._backend_up`` is 0 and their age grows. A
    number the backend no longer holds state for (and the configuration does not list) leaves
    the scrape with the read that no longer finds it.

    Read only: it goes through an :class:`~callthrottle._inspector.Inspector` (views only;
    ``FCALL_RO`` and SCANs on Redis), never a throttle. :meth:`from_url` makes one.

    :param inspector: the inspector to read through; its configuration says which trunks,
        tenants and pools are listed beside the numbers the backend holds. Give it a backend
        object of its own, not a throttle's (``throttle.backend``): an inspector sets where
        its backend object reads each number's keys, and a throttle's would then write there
    :param registry: where to register; defaults to ``prometheus_client.REGISTRY``
    :param namespace: the prefix of every metric's name
    :param timeout: seconds a read may take before it counts as failed
    :param own_inspector: the inspector is not open yet: the collector opens it at its first
        read (again at the next read while opening fails, the backend unreachable) and closes
        it in :meth:`aclose` (:meth:`run` and :meth:`running` close it when they end);
        otherwise it is open, and its opener closes it
    """

    __slots__ = (
        "_failing",
        "_inspector",
        "_namespace",
        "_open",
        "_owns",
        "_reading",
        "_source",
        "_timeout",
    )

    def __init__(
        self,
        inspector: Inspector,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = "callthrottle",
        timeout: float = 10.0,
        own_inspector: bool = False,
    ) -> None:
        self._inspector = inspector
        self._owns = check_flag(own_inspector, "own_inspector")
        self._open = not self._owns  # a caller's inspector is open
        self._source = _Source(inspector.config)
        self._namespace = namespace
        self._timeout = check_seconds(timeout, "timeout")
        self._reading = _Reading()
        self._failing = False  # reads fail since the last warning (the event loop's own)
        (REGISTRY if registry is None else registry).register(self)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        config: Config | None = None,
        default_limit: int = 20,
        default_region: str | None = None,
        registry: CollectorRegistry | None = None,
        namespace: str = "callthrottle",
        timeout: float = 10.0,
        calendar: Calendar | None = None,
        **options: Any,
    ) -> SharedStateCollector:
        """A collector of the backend the URL names, through an inspector of its own (opened by
        the first read, closed by :meth:`aclose`, or when :meth:`run` or :meth:`running` ends).
        ``config``, ``default_limit``, ``default_region`` and ``options`` (``key_prefix``, ...)
        are the dialers' (see :meth:`Throttle.from_url`): the configuration lists the trunks,
        tenants and pools, and gives the caps shown. ``memory://`` is a backend of the
        collector's own, empty: the dialers of one process are what :class:`PrometheusHook`
        shows. ``calendar`` says which day it is for paid periods (``time.time`` if None)."""
        inspector = Inspector.from_url(
            url,
            config=config,
            default_limit=default_limit,
            default_region=default_region,
            calendar=calendar,
            **options,
        )
        return cls(
            inspector, registry=registry, namespace=namespace, timeout=timeout, own_inspector=True
        )

    async def aclose(self) -> None:
        """Close the inspector if the collector opened it (``own_inspector``); the last values
        are still served."""
        if self._owns and self._open:
            self._open = False
            await self._inspector.__aexit__(None, None, None)

    @property
    def up(self) -> bool:
        """Whether the latest read succeeded."""
        return self._reading.up

    async def refresh(self) -> bool:
        """Read the shared state once; True if it was read. A failure (the backend unreachable,
        a read slower than ``timeout``) keeps the last snapshot and is logged once, when reads
        start failing."""
        began = time.monotonic()
        try:
            with anyio.fail_after(self._timeout):
                if not self._open:
                    await self._inspector.__aenter__()
                    self._open = True
                snapshot = await collect(self._inspector, self._source, _WHAT)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the scrape says backend_up 0
            if not self._failing:
                self._failing = True
                logger.warning(
                    "could not read the shared state: %s", str(exc) or type(exc).__name__
                )
            last = self._reading
            self._reading = _Reading(last.snapshot, last.read_at, up=False)
            return False
        if self._failing:
            self._failing = False
            logger.info("the shared state is read again")
        self._reading = _Reading(snapshot, began, up=True)
        return True

    async def run(
        self, interval: float = 5.0, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Refresh every ``interval`` seconds until cancelled. With ``task_group.start`` it
        reports started after the first read (whether it succeeded or not)."""
        interval = check_seconds(interval, "interval")
        try:
            await self.refresh()
            task_status.started()
            while True:
                await anyio.sleep(interval)
                await self.refresh()
        finally:
            with anyio.CancelScope(shield=True):
                await self.aclose()

    @asynccontextmanager
    async def running(self, interval: float = 5.0) -> AsyncIterator[SharedStateCollector]:
        """Refresh every ``interval`` seconds while the block runs (the first read is done when
        it starts)."""
        interval = check_seconds(interval, "interval")  # bad input raised here, not in a group
        failed: Exception | None = None
        async with anyio.create_task_group() as group:
            await group.start(self.run, interval)
            try:
                yield self
            except Exception as exc:  # noqa: BLE001 - the block's own: raised below, not in a group
                failed = exc
            finally:
                group.cancel_scope.cancel()
        if failed is not None:
            raise failed

    def describe(self) -> list[Metric]:
        """The metric families, without samples: lets a registry find a clash of names (a
        process may register this and a :class:`PrometheusHook` on one registry) without a
        read."""
        return list(self._families(None))

    def collect(self) -> Iterator[Metric]:
        """The last snapshot, as Prometheus metrics (called by prometheus_client)."""
        yield from self._families(self._reading)

    def _families(self, reading: _Reading | None) -> Iterator[Metric]:
        """The metric families, with the reading's samples (None: without samples)."""
        gauge = self._gauge
        up = gauge("shared_backend_up", "1 if the latest read of the shared state succeeded")
        age = gauge("shared_scrape_age_seconds", "Seconds since the values shown were read")
        if reading is not None:
            up.add_metric([], 1.0 if reading.up else 0.0)
            if reading.snapshot is not None:
                age.add_metric([], max(0.0, time.monotonic() - reading.read_at))
        yield up
        yield age
        snapshot = Snapshot("") if reading is None or reading.snapshot is None else reading.snapshot
        numbers = {
            "in_use": "Slots held on the number, by every process",
            "cap": "The number's cap",
            "waiting": "Callers waiting for a slot of the number, in every process",
        }
        for name, doc in numbers.items():
            family = gauge(f"number_{name}", doc, "number")
            for row in snapshot.numbers:
                family.add_metric([row.number], getattr(row, name))
            yield family
        state = gauge("number_state", "1 for the state the number is in, 0 for the others",
                      "number", "state")  # fmt: skip
        for row in snapshot.numbers:
            for value in _STATES:
                state.add_metric([row.number, value], 1.0 if row.state == value else 0.0)
        yield state
        yield days_left(
            self._namespace,
            ((row.number, row.days_left) for row in snapshot.numbers if row.days_left is not None),
        )
        groups = {
            "in_use": "Slots held on the trunk's or tenant's numbers, by every process",
            "cap": "The trunk's or tenant's cap",
            "waiting": "Callers waiting for a slot of the trunk or tenant",
        }
        for name, doc in groups.items():
            family = gauge(f"group_{name}", doc, "kind", "group")
            for group in snapshot.groups:
                kind, _, label = group.group.partition(":")
                family.add_metric([kind, label], getattr(group, name))
            yield family
        pools = {
            "members": "Numbers in the pool",
            "in_use": "Slots held on the pool's numbers, by every process",
            "cap": "The sum of the pool's numbers' caps",
            "waiting": "Callers waiting for a slot of one of the pool's numbers",
        }
        for name, doc in pools.items():
            family = gauge(f"pool_{name}", doc, "pool")
            for pool in snapshot.pools:
                family.add_metric([pool.pool], getattr(pool, name))
            yield family

    def _gauge(self, name: str, documentation: str, *labels: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{self._namespace}_{name}", documentation, labels=labels)


def days_left(namespace: str, numbers: Iterable[tuple[str, int]]) -> GaugeMetricFamily:
    """``<namespace>_number_days_left{number}``: for each number whose paid period is tracked,
    the days of it left, today included (1 on the last day paid for, 0 on the first lapsed
    day, negative after); ``numbers`` gives (number, days left)."""
    family = GaugeMetricFamily(
        f"{namespace}_number_days_left",
        "Days of the number's paid period left, today included (0 or less: lapsed)",
        labels=("number",),
    )
    for number, left in numbers:
        family.add_metric([number], float(left))
    return family
