"""Prometheus metrics for a throttle, built on its hooks (``pip install 'callthrottle[prometheus]'``).

::

    from prometheus_client import start_http_server
    from callthrottle.prometheus import PrometheusHook

    start_http_server(9108)
    async with Throttle.from_url(url, hooks=[PrometheusHook()]) as throttle:
        ...

The metrics (``namespace`` ``callthrottle``):

- ``callthrottle_slots_in_use{number}``: slots this process holds now (gauge)
- ``callthrottle_admissions_total{number, pool}``: slots granted (``pool`` empty without one)
- ``callthrottle_refusals_total{number, reason, limit}``: acquires refused, by what refused
  (``reason`` is ``cap``, ``trunk``, ``tenant``, ``window``, ``callee``, ``state`` or
  ``pool``; ``limit`` says which one, e.g. ``trunk:t1`` or ``5 per 1 s``: see
  :class:`~callthrottle.Refused`)
- ``callthrottle_wait_seconds{outcome}``: time from the acquire to its outcome
  (``admitted``, ``refused``, ``cancelled``), a histogram from 1 ms to 60 s
- ``callthrottle_leases_lost_total{reason}``: leases lost (``expired``, ``max_hold``,
  ``backend``)
- ``callthrottle_reclaimed_total``: leases and places in line freed by ``release_owner``

Label cardinality: the ``number`` label has one value per caller-ID number (and
``pool:<name>`` for pool refusals). A deployment dials from a bounded set of numbers, so this
is usually fine; with many thousands of numbers, pass ``per_number=False`` to drop the label.
Callee numbers never appear in a label.

The hook counts what *its process* does. :class:`SharedStateCollector` shows what *every*
process holds, read from the backend (read only, through an
:class:`~callthrottle._inspector.Inspector`), so one scrape shows every dialer's calls::

    collector = SharedStateCollector.from_url(url, config=config)  # the dialers' configuration
    async with collector.running(interval=5.0):  # reads the backend every 5 s
        ...  # the application (prometheus_client's HTTP server serves the scrapes)

(``callthrottle metrics --url URL --config FILE --port 9108`` runs one as a process of its own.)

Its metrics (gauges; none clashes with the hook's, so a process may register both):

- ``callthrottle_number_in_use{number}``, ``callthrottle_number_cap{number}``,
  ``callthrottle_number_waiting{number}``: slots held by every process, the cap, callers waiting
- ``callthrottle_number_state{number, state}``: 1 for the state the number is in, 0 for each
  other (``active``, ``warming``, ``cooling``, ``flagged``, ``disabled``, ``expired``,
  ``released``: seven series per number)
- ``callthrottle_group_in_use{kind, group}``, ``..._group_cap``, ``..._group_waiting``: each
  configured trunk and tenant (``kind`` is ``trunk`` or ``tenant``)
- ``callthrottle_pool_members{pool}``, ``..._pool_in_use``, ``..._pool_cap`` (the sum of its
  numbers' caps), ``..._pool_waiting``: each pool the backend holds or the configuration lists
- ``callthrottle_shared_backend_up``: 1 if the latest read succeeded, 0 while reads fail
  (the last values are still served)
- ``callthrottle_shared_scrape_age_seconds``: how old the values served are

- ``callthrottle_number_days_left{number}``: the days of the number's paid period left, today
  included (1 on the last day paid for, 0 on the first lapsed day, negative after; see
  ``paid_until`` in :class:`~callthrottle.Config`): only numbers whose paid period is tracked

A number is listed while the configuration lists it or the backend holds state for it (calls
up, callers waiting, a run-time state); one that leaves both leaves the scrape. The state of a
number whose paid period is over is the calendar's (``expired``, then ``released``), whatever
its run-time state says but an operator's ``released``.

:class:`ThrottleCollector` exports ``callthrottle_number_days_left`` from a throttle's own
policy and calendar, without reading the backend (a dialer that runs no shared-state
collector)::

    ThrottleCollector(throttle)  # registered on prometheus_client.REGISTRY

It and a :class:`SharedStateCollector` export the same series: register one of the two on a
registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from prometheus_client import REGISTRY, Counter, Gauge, Histogram
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "callthrottle.prometheus needs prometheus-client: install the 'prometheus' extra "
        "(pip install 'callthrottle[prometheus]')"
    ) from exc

from ._events import Admitted, Cancelled, LeaseLost, Reclaimed, Refused, Released, Restored
from ._shared_metrics import SharedStateCollector, days_left

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from ._events import Event
    from ._throttle import Throttle

__all__ = ("WAIT_BUCKETS", "PrometheusHook", "SharedStateCollector", "ThrottleCollector")

#: Buckets of the wait-time histogram (seconds): an immediate grant (a millisecond or two on
#: Redis) up to the longest wait a dialer sensibly allows.
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class PrometheusHook:
    """A hook that keeps Prometheus metrics of the throttles it is installed on.

    Install it with ``Throttle(..., hooks=[hook])`` or :meth:`Throttle.add_hook`; one hook may
    serve several throttles of the process (the metrics then add up). The metrics are
    registered when the hook is made: make one per registry.

    :param registry: where to register the metrics; defaults to ``prometheus_client.REGISTRY``
    :param namespace: the prefix of every metric's name
    :param per_number: label the gauge, admissions and refusals by number (see the module doc on
        cardinality); False keeps one series each
    :param buckets: the wait-time histogram's buckets, in seconds
    """

    __slots__ = (
        "_admissions",
        "_children",
        "_held",
        "_in_use",
        "_lost",
        "_per_number",
        "_reclaimed",
        "_refusals",
        "_restored",
        "_waited",
        "_waits",
    )

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "callthrottle",
        per_number: bool = True,
        buckets: tuple[float, ...] = WAIT_BUCKETS,
    ) -> None:
        registry = REGISTRY if registry is None else registry
        by_number = ("number",) if per_number else ()
        self._per_number = per_number
        self._in_use = Gauge(
            "slots_in_use",
            "Slots this process holds now",
            by_number,
            namespace=namespace,
            registry=registry,
        )
        self._admissions = Counter(
            "admissions",
            "Slots granted",
            (*by_number, "pool"),
            namespace=namespace,
            registry=registry,
        )
        self._refusals = Counter(
            "refusals",
            "Acquires refused, by what refused them",
            (*by_number, "reason", "limit"),
            namespace=namespace,
            registry=registry,
        )
        self._waits = Histogram(
            "wait_seconds",
            "Seconds from an acquire to its outcome",
            ("outcome",),
            namespace=namespace,
            registry=registry,
            buckets=buckets,
        )
        self._lost = Counter(
            "leases_lost",
            "Leases that ended although nobody released them",
            ("reason",),
            namespace=namespace,
            registry=registry,
        )
        self._restored = Counter(
            "leases_restored",
            "Leases the backend lost (restart, failover) and their holder counted again",
            namespace=namespace,
            registry=registry,
        )
        self._reclaimed = Counter(
            "reclaimed",
            "Leases and places in line freed by release_owner",
            namespace=namespace,
            registry=registry,
        )
        # The leases counted in the gauge, so that each is taken off it exactly once.
        self._held: set[tuple[str, str]] = set()
        # Each labelled series once looked up (what .labels() finds again on every call).
        self._children: dict[tuple[object, ...], Any] = {}
        self._waited = {
            outcome: self._waits.labels(outcome) for outcome in ("admitted", "refused", "cancelled")
        }

    def __call__(self, event: Event) -> None:
        if isinstance(event, Admitted):
            self._held.add((event.number, event.token))
            self._series(self._in_use, event.number).inc()
            self._series(self._admissions, event.number, event.pool or "").inc()
            self._waited["admitted"].observe(event.waited)
        elif isinstance(event, (Released, LeaseLost)):
            key = (event.number, event.token)
            if key in self._held:
                self._held.discard(key)
                self._series(self._in_use, event.number).dec()
            if isinstance(event, LeaseLost):
                self._lost.labels(event.reason).inc()
        elif isinstance(event, Refused):
            self._series(self._refusals, event.number, event.reason, event.limit).inc()
            self._waited["refused"].observe(event.waited)
        elif isinstance(event, Cancelled):
            self._waited["cancelled"].observe(event.waited)
        elif isinstance(event, Reclaimed):
            self._reclaimed.inc(event.count)
        elif isinstance(event, Restored):
            self._restored.inc()

    def _series(self, metric: Gauge | Counter, number: str, *labels: str) -> Any:
        """The metric's series for ``number`` (if labelled by number) and ``labels``."""
        key = (metric, number, *labels)
        found = self._children.get(key)
        if found is None:
            values = (number, *labels) if self._per_number else labels
            found = self._children[key] = metric.labels(*values) if values else metric
        return found


class ThrottleCollector:
    """A Prometheus collector of what a throttle knows without asking the backend:
    ``callthrottle_number_days_left{number}`` for each number its policy in force (its
    configuration, or the published policy it follows) lists with a paid period, on its
    calendar (``Throttle(calendar=...)``). Computed at each scrape, in the scraping thread: no
    round trip. A number only a profile's ``paid_until`` covers, and that the policy does not
    list, is not known here: :class:`SharedStateCollector` lists the numbers dialled too.

    :param throttle: the throttle (for a :class:`~callthrottle.sync.SyncThrottle`, its
        ``throttle``)
    :param registry: where to register; defaults to ``prometheus_client.REGISTRY``
    :param namespace: the prefix of every metric's name
    """

    __slots__ = ("_namespace", "_throttle")

    def __init__(
        self,
        throttle: Throttle,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = "callthrottle",
    ) -> None:
        self._throttle = throttle
        self._namespace = namespace
        (REGISTRY if registry is None else registry).register(self)

    def describe(self) -> list[Metric]:
        """The metric family, without samples (a registry's check for clashing names)."""
        return [days_left(self._namespace, ())]

    def collect(self) -> Iterator[Metric]:
        """The days left of each number with a paid period (called by prometheus_client)."""
        throttle = self._throttle
        now = throttle.calendar()
        terms = throttle.config.numbers_with_terms()
        yield days_left(
            self._namespace, ((number, term.days_left(now)) for number, term in terms.items())
        )
