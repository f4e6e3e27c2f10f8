"""Redis Cluster routing for the Redis backend: a script lane per master, and shard channels.

Every call of the backend touches the keys of one hash tag, so one slot, so one master: the
call goes to the lane (pipelined connection, see ``_lane``) of the master that serves the slot
of its first key. The slot map is redis-py's (``RedisCluster``'s nodes manager); it is read
again when a node answers ``MOVED`` or cannot be reached (a failover may have moved the slot),
and an ``ASK`` (a slot being migrated) is followed for that one call. Each master loads the
function library the first time it lacks it, as a single server does.

Events for a throttle's waiters travel on shard channels (``SSUBSCRIBE``), one per hash tag and
throttle, on the slot of the keys they are about: a Lua function may only publish there.
:class:`ShardedEvents` keeps one subscribed connection per master and adds a tag's channel to
it before the throttle first waits (or holds) on a number of that tag.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from ._lane import ScriptLane

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from redis.asyncio.cluster import ClusterNode, RedisCluster

    from ._lane import Arg, Library, Subscription

__all__ = ("ClusterLanes", "ShardedEvents")

logger = logging.getLogger("callthrottle.redis")

_REDIRECTS = 5  # MOVED answers, TRYAGAIN, or unreachable nodes, followed before a call fails
_TRY_AGAIN = 0.05  # seconds before the first retry of a call answered TRYAGAIN, then doubled


def _redirection(error: ResponseError) -> tuple[str, str] | None:
    """``('MOVED' or 'ASK', 'host:port')`` for a redirection, else None."""
    kind, _, rest = str(error).partition(" ")
    if kind not in ("MOVED", "ASK"):
        return None
    return kind, rest.rpartition(" ")[2]


class ClusterLanes:
    """Script lanes for a Redis Cluster: one per master, each call routed by its keys' slot.

    :param client: the redis-py ``RedisCluster`` client that holds the slot map and whose
        connection settings every lane uses
    """

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._lanes: dict[str, ScriptLane] = {}
        self._refreshing: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._closed = False
        #: Called when a lane's connection replaces a lost one (see ``ScriptLane``).
        self.on_reconnect: Callable[[], None] | None = None

    async def open(self) -> None:
        """Read the slot map (from the URL's nodes)."""
        await self._client.initialize()

    def node_for(self, key: str) -> ClusterNode:
        """The master that serves ``key``'s slot, by the slot map as last read."""
        try:
            return self._client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
        except RedisClusterException as exc:
            raise RedisConnectionError(f"no Redis Cluster node serves {key!r}: {exc}") from exc

    def lane_at(self, node: ClusterNode) -> ScriptLane:
        """The lane to ``node``, opened on first use."""
        lane = self._lanes.get(node.name)
        if lane is None:
            if self._closed:
                raise RedisConnectionError("the throttle was closed")
            lane = ScriptLane(node.connection_class(**node.connection_kwargs))
            lane.on_reconnect = self._reconnected
            self._lanes[node.name] = lane
        return lane

    def _lane_named(self, address: str) -> ScriptLane:
        host, _, port = address.rpartition(":")
        node = self._client.nodes_manager.get_node(host, int(port))
        if node is None:
            raise RedisConnectionError(f"Redis Cluster redirected to an unknown node {address}")
        return self.lane_at(node)

    def _reconnected(self) -> None:
        if self.on_reconnect is not None:
            self.on_reconnect()

    async def refresh(self) -> None:
        """Read the slot map again (one read at a time, shared by every caller)."""
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._client.nodes_manager.initialize())
            self._refreshing.add_done_callback(lambda _: setattr(self, "_refreshing", None))
        await asyncio.shield(self._refreshing)

    @property
    def busy(self) -> bool:
        """Whether calls are in flight on any master."""
        return any(lane.busy for lane in self._lanes.values())

    async def run(
        self, library: Library, function: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """FCALL ``function`` on the master that serves ``keys``."""
        for attempt in range(_REDIRECTS + 1):
            last = attempt == _REDIRECTS
            try:
                return await self.lane_at(self.node_for(keys[0])).run(library, function, keys, args)
            except ResponseError as exc:
                if str(exc).startswith("TRYAGAIN") and not last:
                    # A slot in migration holds some of the call's keys here, some there: the
                    # migration moves the rest in a moment.
                    await asyncio.sleep(_TRY_AGAIN * 2**attempt)
                    continue
                redirection = _redirection(exc)
                if redirection is None or last:
                    raise
                kind, address = redirection
                if kind == "ASK":
                    lane = self._lane_named(address)
                    return await lane.run_asking(library, function, keys, args)
                await self.refresh()
            except RedisConnectionError:
                if last or self._closed:
                    raise
                await self.refresh()  # a failover may have given the slot to another node
        raise AssertionError("unreachable")  # pragma: no cover

    async def read(
        self, library: Library, function: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """As ``ScriptLane.read`` on the master that serves ``keys`` (routed as :meth:`run`)."""
        asking: ScriptLane | None = None
        for attempt in range(_REDIRECTS + 1):
            last = attempt == _REDIRECTS
            try:
                if asking is not None:
                    return await asking.read(library, function, keys, args, asking=True)
                lane = self.lane_at(self.node_for(keys[0]))
                return await lane.read(library, function, keys, args)
            except ResponseError as exc:
                asking = None
                if str(exc).startswith("TRYAGAIN") and not last:
                    await asyncio.sleep(_TRY_AGAIN * 2**attempt)
                    continue
                redirection = _redirection(exc)
                if redirection is None or last:
                    raise
                kind, address = redirection
                if kind == "ASK":
                    asking = self._lane_named(address)
                else:
                    await self.refresh()
            except RedisConnectionError:
                if last or self._closed:
                    raise
                await self.refresh()
        raise AssertionError("unreachable")  # pragma: no cover

    def run_now(
        self, library: Library, function: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> asyncio.Future[Any]:
        """As ``ScriptLane.run_now`` on the master that serves ``keys``; a redirection or an
        unreachable node is retried as :meth:`run` would, in a task of its own."""
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            raw = self.lane_at(self.node_for(keys[0])).run_now(library, function, keys, args)
        except RedisError as exc:
            result.set_exception(exc)
            return result

        def settle(raw: asyncio.Future[Any]) -> None:
            error = raw.exception()
            if error is None:
                result.set_result(raw.result())
            elif isinstance(error, RedisConnectionError) or (
                isinstance(error, ResponseError)
                and (_redirection(error) is not None or str(error).startswith("TRYAGAIN"))
            ):
                task = asyncio.ensure_future(self.run(library, function, keys, args))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                task.add_done_callback(lambda task: _copy(task, result))
            else:
                result.set_exception(error)

        raw.add_done_callback(settle)
        return result

    async def aclose(self) -> None:
        self._closed = True
        for lane in list(self._lanes.values()):
            await lane.aclose()


def _copy(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())  # type: ignore[arg-type]
    else:
        target.set_result(source.result())


class ShardedEvents:
    """The shard channels a backend listens on in a Cluster: one subscribed connection per
    master, each subscribed to the channels whose slot that master serves.

    :param lanes: where the slot map and the connection settings come from
    :param on_message: gets each message's channel and payload
    :param on_lost: called when a subscribed connection is lost (its channels' messages may
        have been missed; they are subscribed again when next asked for)
    """

    def __init__(
        self,
        lanes: ClusterLanes,
        on_message: Callable[[bytes, bytes], None],
        on_lost: Callable[[], None],
    ) -> None:
        self._lanes = lanes
        self._on_message = on_message
        self._on_lost = on_lost
        self._connections: dict[str, Subscription] = {}  # by node name
        self._channels: dict[str, str] = {}  # subscribed channel -> node name
        self._joining: dict[str, asyncio.Future[None]] = {}
        self._closed = False

    def __contains__(self, channel: str) -> bool:
        return channel in self._channels

    async def join(self, channel: str) -> None:
        """Subscribe to ``channel`` on the master that serves its slot (once; concurrent
        callers share the one subscription)."""
        joining = self._joining.get(channel)
        if joining is None:
            joining = self._joining[channel] = asyncio.ensure_future(self._join(channel))
            joining.add_done_callback(lambda _: self._joining.pop(channel, None))
        await asyncio.shield(joining)

    async def _join(self, channel: str) -> None:
        for attempt in range(_REDIRECTS + 1):
            node = self._lanes.node_for(channel)
            connection = self._connections.get(node.name)
            try:
                if connection is None or connection.closed.done():
                    connection = await self._lanes.lane_at(node).subscribe((), self._on_message)
                    self._connections[node.name] = connection
                    connection.closed.add_done_callback(
                        functools.partial(self._lost, node.name, connection)
                    )
                await connection.add(channel)
            except ResponseError as exc:
                if _redirection(exc) is None or attempt == _REDIRECTS:
                    raise
                await self._lanes.refresh()
                continue
            self._channels[channel] = node.name
            return

    def _lost(self, name: str, connection: Subscription, _: object = None) -> None:
        if self._connections.get(name) is connection:
            del self._connections[name]
        for channel in [c for c, where in self._channels.items() if where == name]:
            del self._channels[channel]
        if not self._closed:
            logger.warning("event subscription to Redis Cluster node %s lost", name)
            self._on_lost()

    async def keep_alive(self, every: float) -> None:
        """Check every subscribed connection each ``every`` seconds of the backend's life: a
        dead one is dropped (and reported lost)."""
        while True:
            await asyncio.sleep(every)
            for connection in list(self._connections.values()):
                with contextlib.suppress(RedisError):
                    await connection.ping()

    def close(self) -> None:
        self._closed = True
        for connection in list(self._connections.values()):
            connection.close()
