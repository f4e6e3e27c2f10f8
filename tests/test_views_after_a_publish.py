"""What ``top`` and ``callthrottle metrics`` show after a policy is published while they run:
they keep one inspector open across reads, and must show the caps every throttle enforces
from then on, not those of the version in force when they started."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from callthrottle._inspector import Inspector
from callthrottle.prometheus import SharedStateCollector
from tests.test_prometheus_shared import scrape, value

if TYPE_CHECKING:
    from .conftest import BackendFactory, ThrottleFactory

N1 = "+8657188880001"


def config(cap: int) -> dict[str, Any]:
    return {"default_profile": "fixed", "profiles": {"fixed": {"cap": cap}}}


async def test_an_open_inspector_reads_the_caps_of_a_policy_published_since(
    new_throttle: ThrottleFactory, new_backend: BackendFactory, backend_kind: str
) -> None:
    async with new_throttle(config=config(3), policy="follow") as dialer:
        await dialer.publish_policy()
        async with Inspector(new_backend(), close_backend=backend_kind != "memory") as inspector:
            assert (await inspector.usage(N1)).limit == 3
            await dialer.publish_policy(config(1))
            assert (await dialer.usage(N1)).limit == 1  # what every throttle enforces now
            # An inspector reads the policy when it opens and when told to (a snapshot of
            # status, top or the metrics exporter does, each time): one read, not one per view.
            assert await inspector.refresh_policy() is True
            assert await inspector.refresh_policy() is False  # nothing newer since
            assert (await inspector.usage(N1)).limit == 1


async def test_the_shared_collector_exports_the_caps_of_a_policy_published_since(
    new_throttle: ThrottleFactory, new_backend: BackendFactory, backend_kind: str
) -> None:
    registry = CollectorRegistry()
    async with new_throttle(config=config(3), policy="follow") as dialer:
        await dialer.publish_policy()
        await dialer.acquire(N1, timeout=0)
        async with Inspector(new_backend(), close_backend=backend_kind != "memory") as inspector:
            collector = SharedStateCollector(inspector, registry=registry)
            assert await collector.refresh() is True
            assert value(scrape(registry), "number_cap", number=N1) == 3
            await dialer.publish_policy(config(1))
            assert await collector.refresh() is True
            assert value(scrape(registry), "number_cap", number=N1) == 1


async def test_the_cap_source_is_the_policy_once_it_is_below_a_lowered_cap(
    new_throttle: ThrottleFactory, new_backend: BackendFactory, backend_kind: str
) -> None:
    """A carrier's 503 lowered N1's cap from 4 to 2 for a minute; then a policy with cap 1 is
    published. The cap in force is 1, the policy's: the view must not say it is the lowered
    one."""
    async with new_throttle(config=config(4), policy="follow") as dialer:
        await dialer.publish_policy()
        await dialer.report(N1, 503)
        await dialer.publish_policy(config(1))
        async with Inspector(new_backend(), close_backend=backend_kind != "memory") as inspector:
            status = await inspector.status(N1)
            assert status.lowered_cap == 2
            assert (await inspector.usage(N1)).limit == 1
            assert inspector.cap_source(N1, status) == "policy v2"
