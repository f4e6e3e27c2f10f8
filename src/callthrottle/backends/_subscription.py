"""The Redis backend's event subscription on a single server (or Sentinel): one channel per
throttle, kept alive, subscribed again when its connection is lost (a Cluster's shard channels
are kept in ``_cluster``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import anyio
from redis.exceptions import RedisError

from .._errors import BackendUnavailable

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from ._base import EventListener
    from ._lane import ScriptLane

__all__ = ("EVENTS", "KEEPALIVE", "keep_subscribed")

logger = logging.getLogger("callthrottle.redis")

KEEPALIVE = 15.0  # seconds of silence after which the event subscription is checked
#: An event's kind as the functions publish it -> as a listener is told it.
EVENTS = {"g": "granted", "r": "released", "n": "nudged"}


async def keep_subscribed(
    lane: ScriptLane,
    channel: str,
    owner: str,
    listener: EventListener,
    task_status: TaskStatus[None],
) -> None:
    """Deliver the events of ``channel`` to ``listener`` until cancelled; started once first
    subscribed. A lost subscription is made again (with backoff), and the listener is told to
    resync: the events sent meanwhile are lost.

    :raises BackendUnavailable: the first subscription failed
    """

    def deliver(_: bytes, payload: bytes) -> None:
        kind, number, token = payload.decode().split("\t")
        listener(EVENTS.get(kind, "nudged"), number, token)

    failures = 0
    started = False
    while True:
        try:
            subscription = await lane.subscribe((channel,), deliver)
        except (RedisError, OSError) as exc:
            if not started:
                raise BackendUnavailable(f"Redis failed during subscribe: {exc}") from exc
            failures += 1
            delay = min(0.05 * 2**failures, 2.0)
            logger.warning(
                "event subscription lost (%s); retrying in %.2f s",
                exc,
                delay,
                extra={"owner": owner},
            )
            await anyio.sleep(delay)
            continue
        try:
            if started:
                # Events sent while no subscription was listening are lost: every waiter asks
                # again.
                listener("resync", "", "")
            else:
                task_status.started()
                started = True
            failures = 0
            while not subscription.closed.done():
                # A quiet connection is checked now and then: a dead one is replaced.
                with anyio.move_on_after(KEEPALIVE):
                    await asyncio.shield(subscription.closed)
                if not subscription.closed.done():
                    with contextlib.suppress(RedisError):
                        await subscription.ping()
        finally:
            subscription.close()
        logger.warning("event subscription lost; subscribing again", extra={"owner": owner})
