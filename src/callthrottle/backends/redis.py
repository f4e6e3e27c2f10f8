"""The Redis backend: slots shared by every process and host that reaches one Redis server."""

from __future__ import annotations

import asyncio
import logging
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from .._errors import BackendUnavailable, InvalidArgument, UnsupportedEventLoop
from ._base import POLICY_HISTORY
from ._cluster import ClusterLanes, ShardedEvents
from ._codec import (
    abandon_argv,
    acquire_argv,
    acquire_result,
    batch_argv,
    get_policy_result,
    group_usage_result,
    holders_result,
    keepalive_argv,
    member_spec,
    pick_argv,
    pick_result,
    policy_publish_argv,
    policy_publish_result,
    policy_read_result,
    pool_leave_argv,
    pool_members_result,
    pool_update_argv,
    release_argv,
    release_result,
    renew_argv,
    reset_number_argv,
    reset_number_result,
    restore_argv,
    set_group_policy_argv,
    set_policy_argv,
    usage_argv,
    usage_result,
    window_usage_argv,
    window_usage_result,
)
from ._keys import KeySpace, slot_tags
from ._lane import Arg, Library, ScriptLane
from ._redis_url import default_options, parse_cluster_url, parse_sentinel_url
from ._results import AcquireResult, PickResult, RenewState, RestoreOutcome
from ._subscription import EVENTS, KEEPALIVE, keep_subscribed
from ._sweeps import Sweeps

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterable, Iterator, Mapping, Sequence

    from anyio.abc import TaskStatus

    from .._models import Holder, Usage, WindowUsage
    from .._pools import MemberSpec
    from .._rates import GroupPlan, RatePlan
    from ._base import EventListener, Layout
    from ._policy import GroupPolicyChange, PolicyChange, Published, RuntimePolicy
    from ._requests import AcquireRequest, PickRequest


__all__ = ("RedisBackend",)

logger = logging.getLogger("callthrottle.redis")

#: What the driver raises when Redis fails: a Cluster the client cannot reach at all (every
#: node down, a slot no node serves) raises one that is not a RedisError.
_FAILURES = (RedisError, RedisClusterException, OSError)

_SCRIPT_NAMES = (
    "acquire", "release", "abandon", "renew", "usage", "release_owner", "set_policy", "get_policy",
    "group_usage", "set_group_policy", "batch", "pick", "pool_update", "pool_members", "pool_leave",
    "restore", "window_usage", "release_owner_lines", "keepalive",
    "holders", "reset_number", "fence_lift",  # operator queries and admin actions
    "oldest_wait",
    "policy_publish", "policy_read", "policy_stamp",  # the published policy
)  # fmt: skip


_BATCHED = {"a": "acquire", "r": "release"}


def _load_library() -> Library:
    folder = resources.files(__package__).joinpath("lua")
    shared = folder.joinpath("_common.lua").read_text(encoding="utf-8")
    bodies = {
        name: folder.joinpath(f"{name}.lua").read_text(encoding="utf-8") for name in _SCRIPT_NAMES
    }
    return Library("callthrottle", shared, bodies)


_LIBRARY = _load_library()


@contextmanager
def _map_errors(action: str) -> Iterator[None]:
    """Translate the driver's errors into :class:`BackendUnavailable`, once, at the boundary."""
    try:
        yield
    except _FAILURES as exc:
        raise BackendUnavailable(f"Redis failed during {action}: {exc}") from exc


class RedisBackend:
    """Slots in Redis (``redis://``, ``rediss://``, ``unix://``): shared across processes and hosts.

    Every operation is one call (FCALL) of a Lua function of the backend's library, loaded
    into the server on first use and again whenever the server lost it, on the keys of one
    number, which share a hash tag. Needs Redis 7.0 or newer (or Valkey 7.2 or newer). All
    calls of a backend share one pipelined connection (see ``_lane``); pub/sub has one more.
    Lease expiry is judged by the server's clock (``TIME``). Waiters are woken through pub/sub
    on one channel per throttle.

    redis-py's asyncio client runs on asyncio only: under trio :meth:`open` raises
    :class:`~callthrottle.UnsupportedEventLoop`.

    :param client: a ``redis.asyncio.Redis`` client (the backend does not close it), or use
        :meth:`from_url`
    :param key_prefix: prefix of every key and channel the backend uses
    """

    __slots__ = (
        "_also_close", "_batches", "_client", "_events", "_lane", "_listeners", "_owns_client",
        "_prefix", "_space", "_sweeps",
    )  # fmt: skip

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        key_prefix: str = "callthrottle:",
        _owns_client: bool = False,
    ) -> None:
        self._space = KeySpace(key_prefix, cluster=isinstance(client, RedisCluster))
        self._client = client
        self._owns_client = _owns_client
        self._prefix = key_prefix  # as given (the keys' layout is in self._space)
        self._lane: ScriptLane | ClusterLanes
        self._events: ShardedEvents | None = None
        if isinstance(client, RedisCluster):
            self._lane = ClusterLanes(client)
            self._events = ShardedEvents(self._lane, self._deliver, self._resync)
        else:
            self._lane = ScriptLane.for_client(client)
        self._lane.on_reconnect = self._resync
        cluster = client if isinstance(client, RedisCluster) else None
        self._sweeps = Sweeps(self._lane, cluster, self._space, self._run)
        self._also_close: list[aioredis.Redis] = []  # a sentinel URL's sentinel clients
        self._listeners: dict[str, EventListener] = {}
        self._batches: dict[str, list[tuple[str, tuple[Arg, ...], asyncio.Future[Any]]]] = {}

    @classmethod
    def from_url(
        cls, url: str, *, key_prefix: str = "callthrottle:", **options: Any
    ) -> RedisBackend:
        """Connect lazily to the server at ``url``; ``options`` go to ``redis.asyncio.from_url``.

        The hot path does not use redis-py's connection pool: every call goes over one
        pipelined connection with the URL's settings, key scans included (``release_owner``,
        ``known_numbers``); the event subscription takes one more. Socket timeouts default to 5 s, so a dead or
        stalled server surfaces as :class:`~callthrottle.BackendUnavailable` instead of a hang;
        a call whose connection dropped is retried twice on a new one (every function is safe
        to run again for the same token; a retried release that had already succeeded reports
        False).
        """
        settings = {**default_options(), **options}
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=settings.pop("max_connections", 128),
            timeout=settings.pop("pool_timeout", settings["socket_timeout"]),
            **settings,
        )
        return cls(aioredis.Redis(connection_pool=pool), key_prefix=key_prefix, _owns_client=True)

    @classmethod
    def from_sentinel_url(
        cls, url: str, *, key_prefix: str = "callthrottle:", **options: Any
    ) -> RedisBackend:
        """Connect, through Redis Sentinel, to the master of a monitored service:
        ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``.

        The master's address is asked of the sentinels whenever a connection is made, so after
        a failover the backend reconnects to the new master by itself (a call that reaches the
        old one, now a replica, is sent again). ``options`` go to the master's client (socket
        timeouts default to 5 s as with :meth:`from_url`); the sentinels get the same timeouts.
        """
        hosts, service, given = parse_sentinel_url(url)
        settings = {**default_options(), **options}
        for name, value in given.items():
            settings.setdefault(name, value)
        timeouts = {k: settings[k] for k in ("socket_timeout", "socket_connect_timeout")}
        # redis-py types Sentinel's constructor from 8.2 on and leaves it untyped before: the
        # ignore is for the older releases that the declared range still admits.
        sentinel = Sentinel(hosts, sentinel_kwargs=timeouts, **settings)  # type: ignore[no-untyped-call, unused-ignore]
        backend = cls(sentinel.master_for(service), key_prefix=key_prefix, _owns_client=True)
        backend._also_close = list(sentinel.sentinels)
        return backend

    @classmethod
    def from_cluster_url(
        cls, url: str, *, key_prefix: str = "callthrottle:", **options: Any
    ) -> RedisBackend:
        """Connect lazily to a Redis Cluster:
        ``redis+cluster://[[user]:password@]host:port[,host:port...][?option=value...]``
        (``rediss+cluster://`` for TLS). The nodes listed are where the slot map is first
        read; any reachable one is enough.

        Each call goes to the master that serves its number's slot, over one pipelined
        connection per master; waiters are woken through sharded pub/sub. ``options`` go to
        ``redis.asyncio.RedisCluster`` (socket timeouts default to 5 s as with
        :meth:`from_url`).
        """
        hosts, settings = parse_cluster_url(url, options)
        nodes = [ClusterNode(host, port) for host, port in hosts]
        client = RedisCluster(startup_nodes=nodes, **settings)
        return cls(client, key_prefix=key_prefix, _owns_client=True)

    def __repr__(self) -> str:
        if isinstance(self._client, RedisCluster):
            seeds = ",".join(
                node.name for node in self._client.nodes_manager.startup_nodes.values()
            )
            return f"<RedisBackend cluster {seeds} prefix={self._prefix!r}>"
        kwargs = self._client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return f"<RedisBackend {where} db={kwargs.get('db', 0)} prefix={self._prefix!r}>"

    @property
    def client(self) -> aioredis.Redis | RedisCluster:
        """The redis-py client in use."""
        return self._client

    @property
    def pools_place_numbers(self) -> bool:
        return self._space.cluster

    def use_layout(self, layout: Layout) -> None:
        self._space.use(layout)

    async def _join(self, channels: str, owner: str) -> None:
        """In a Cluster, subscribe ``owner``'s throttle to its channel on ``channels``' slot
        before it first asks for anything there (its events are published on that slot)."""
        events = self._events
        if events is not None and channels + owner not in events and owner in self._listeners:
            with _map_errors("subscribe"):
                await events.join(channels + owner)

    def _deliver(self, channel: bytes, payload: bytes) -> None:
        owner = self._space.owner_of_shard_channel(channel)
        listener = self._listeners.get(owner)
        if listener is not None:
            kind, number, token = payload.decode().split("\t")
            listener(EVENTS.get(kind, "nudged"), number, token)

    def keys_for(self, number: str) -> list[str]:
        """The keys that hold ``number``'s state (one hash tag, so one Cluster slot; see
        ``KeySpace.number_keys``)."""
        return self._space.number_keys(number)

    async def open(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise UnsupportedEventLoop(
                "the Redis backend needs asyncio: redis-py's async client does not run on trio "
                "(use memory:// under trio, or run the dialer on asyncio)"
            ) from None
        with _map_errors("connect"):
            if isinstance(self._lane, ClusterLanes):
                await self._lane.open()
                await asyncio.to_thread(slot_tags)  # the slots' policy stamps (once a process)
            await self._client.ping()

    async def listen(
        self, owner: str, listener: EventListener, *, task_status: TaskStatus[None]
    ) -> None:
        channel = self._space.channels + owner
        self._listeners[owner] = listener
        if self._events is not None:
            # A Cluster: shard channels are subscribed as the throttle first uses a hash tag.
            task_status.started()
            try:
                await self._events.keep_alive(KEEPALIVE)
            finally:
                self._listeners.pop(owner, None)

        try:
            assert isinstance(self._lane, ScriptLane)
            await keep_subscribed(self._lane, channel, owner, listener, task_status)
        finally:
            self._listeners.pop(owner, None)

    async def acquire(self, request: AcquireRequest, *, enqueue: bool) -> AcquireResult:
        # The arguments as acquire_args builds them, inline: the hot path makes no call it can
        # do without.
        space = self._space
        number, owner = request.number, request.owner
        channels = space.channels if self._events is None else space.channels_for(number)
        holder = self._session_holder(owner, space.tag_of(number)) if request.session else owner
        args = acquire_argv(request, holder, enqueue, channels)
        try:
            if self._events is not None:
                await self._join(channels, owner)
            rates = request.rates
            if rates.callee is None:
                reply = await self._ask("a", number, args)
            else:
                keys = space.callee_keys(number, rates.callee)
                reply = await self._run("acquire", keys, args)
        except _FAILURES as exc:  # as _map_errors, inline on the hot path
            raise BackendUnavailable(f"Redis failed during acquire: {exc}") from exc
        return acquire_result(reply)

    async def release(self, number: str, token: str, releaser: str, pool: str | None = None) -> int:
        space = self._space
        load_key = None if pool is None else space.pool_keys(pool)[1]
        args = release_argv(token, releaser, number, space.channels_for(number), load_key, pool)
        try:
            removed, handed = release_result(await self._ask("r", number, args))
        except _FAILURES as exc:  # as _map_errors, inline on the hot path
            raise BackendUnavailable(f"Redis failed during release: {exc}") from exc
        if handed:
            # Slots handed to the releaser's own waiters come back in the reply, not as events.
            listener = self._listeners.get(releaser)
            if listener is not None:
                for granted in handed:
                    listener("granted", number, granted.decode())
        return removed

    def _ask(self, kind: str, number: str, args: tuple[Arg, ...]) -> Awaitable[Any]:
        """An acquire (``kind`` 'a') or release ('r') on the number's keys. With nothing in
        flight it is sent at once; otherwise it joins the others asked for the same number
        before the event loop's next turn, and they run as one batch call (in order, each as if
        alone): one request for the server to read and run instead of many."""
        if not self._lane.busy:
            return self._run(_BATCHED[kind], self._space.number_keys(number), args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        batch = self._batches.get(number)
        if batch is None:
            batch = self._batches[number] = []
            loop.call_soon(self._flush, number)
        batch.append((kind, args, future))
        return future

    def _flush(self, number: str) -> None:
        # A caller cancelled before its request was sent asked for nothing: it is left out.
        batch = [op for op in self._batches.pop(number) if not op[2].done()]
        if not batch:
            return
        keys = self._space.number_keys(number)
        if len(batch) == 1:
            kind, args, _ = batch[0]
            sent = self._lane.run_now(_LIBRARY, _BATCHED[kind], keys, args)
        else:
            sent = self._lane.run_now(_LIBRARY, "batch", keys, batch_argv(batch))

        def settle(sent: asyncio.Future[Any]) -> None:
            error = sent.exception()
            replies = None if error is not None else sent.result()
            if len(batch) == 1 and replies is not None:
                replies = [replies]
            for index, (_, _, future) in enumerate(batch):
                if future.done():
                    continue  # its caller was cancelled meanwhile
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(replies[index])  # type: ignore[index]

        sent.add_done_callback(settle)

    def _resync(self) -> None:
        for listener in self._listeners.values():
            listener("resync", "", "")

    async def abandon(self, number: str, token: str, owner: str) -> None:
        args = abandon_argv(token, owner, number, self._space.channels_for(number))
        with _map_errors("abandon"):
            await self._run("abandon", self._space.number_keys(number), args)

    async def window_usage(self, number: str, rates: RatePlan) -> list[WindowUsage]:
        args = window_usage_argv(rates)
        with _map_errors("window_usage"):
            reply = await self._read("window_usage", self._space.number_keys(number), args)
        return window_usage_result(reply)

    async def restore(self, request: AcquireRequest, *, age: float = 0.0) -> RestoreOutcome:
        number, owner = request.number, request.owner
        keys = self._space.number_keys(number)
        session = request.session
        holder = self._session_holder(owner, self._space.tag_of(number)) if session else owner
        args = restore_argv(request, holder, age)
        with _map_errors("restore"):
            await self._join(self._space.channels_for(number), owner)
            return RestoreOutcome(await self._run("restore", keys, args))

    async def renew(
        self, owner: str, items: Sequence[tuple[str, str]], ttl: float = 0.0
    ) -> list[RenewState]:
        by_number: dict[str, list[int]] = {}
        for index, (number, _) in enumerate(items):
            by_number.setdefault(number, []).append(index)
        calls = [
            self._run(
                "renew",
                self._space.number_keys(number),
                renew_argv(
                    owner,
                    number,
                    self._space.channels_for(number),
                    ttl,
                    [items[i][1] for i in indexes],
                ),
            )
            for number, indexes in by_number.items()
        ]
        states = [RenewState.GONE] * len(items)
        with _map_errors("renew"):
            replies = await asyncio.gather(*calls)  # written together: one round trip
        for indexes, reply in zip(by_number.values(), replies, strict=True):
            for index, state in zip(indexes, reply, strict=True):
                states[index] = RenewState(state)
        return states

    async def usage(self, number: str, limit: int) -> Usage:
        with _map_errors("usage"):
            reply = await self._read("usage", self._space.number_keys(number), usage_argv(limit))
        return usage_result(reply)

    async def group_usage(self, group: GroupPlan, tag: str) -> Usage:
        holders, _, waiters, policy = self._space.group_keys(group.group, tag)
        with _map_errors("group_usage"):
            reply = await self._read("group_usage", [holders, waiters, policy], ())
        return group_usage_result(reply, group)

    async def set_group_policy(self, group: GroupPlan, tag: str, change: GroupPolicyChange) -> None:
        holders, _, waiters, policy = self._space.group_keys(group.group, tag)
        channels = self._space.tag_channels(tag)
        args = set_group_policy_argv(channels, change)
        with _map_errors("set_group_policy"):
            await self._run("set_group_policy", [holders, waiters, policy], args)

    async def set_policy(self, number: str, change: PolicyChange) -> None:
        args = set_policy_argv(number, self._space.channels_for(number), change)
        with _map_errors("set_policy"):
            await self._run("set_policy", self._space.number_keys(number), args)

    async def get_policy(self, number: str) -> RuntimePolicy:
        with _map_errors("get_policy"):
            reply = await self._read("get_policy", self._space.number_keys(number), ())
        return get_policy_result(reply)

    # -- pools ---------------------------------------------------------------------------------

    def check_pool_members(self, pool: str, numbers: Iterable[str]) -> None:
        tag = self._space.pool_tag(pool)
        strays = sorted(number for number in numbers if self._space.tag_of(number) != tag)
        if self._events is not None and strays:
            raise InvalidArgument(
                "numbers",
                strays,
                f"numbers that share the pool's hash tag {tag!r}: on Redis Cluster a pick uses "
                "the keys of the pool and of its numbers together (give the pool's numbers one "
                "tenant, or list each number in one pool of the configuration)",
            )

    async def pool_update(
        self, pool: str, add: Mapping[str, MemberSpec], remove: Sequence[str], policy: int = 0
    ) -> int:
        self.check_pool_members(pool, add)
        specs = {
            number: member_spec(spec, self._space.tag_of(number)) for number, spec in add.items()
        }
        args = pool_update_argv(self._space.prefix, specs, remove, policy)
        keys = [*self._space.pool_keys(pool)[:3], self._space.stamp_key(self._space.pool_tag(pool))]
        with _map_errors("pool_update"):
            return int(await self._run("pool_update", keys, args))

    def acquire_args(self, request: AcquireRequest, enqueue: bool) -> tuple[Arg, ...]:
        """The arguments of acquire.lua for this request (see its header)."""
        space = self._space
        number, owner = request.number, request.owner
        channels = space.channels if self._events is None else space.channels_for(number)
        holder = self._session_holder(owner, space.tag_of(number)) if request.session else owner
        return acquire_argv(request, holder, enqueue, channels)

    async def pool_members(self, pool: str) -> list[str]:
        with _map_errors("pool_members"):
            reply = await self._read("pool_members", self._space.pool_keys(pool)[:3], ())
        return pool_members_result(reply)

    async def pick(self, request: PickRequest, *, wait: bool = False) -> PickResult:
        pool, owner = request.pool, request.owner
        tag = self._space.pool_tag(pool)
        channels = self._space.tag_channels(tag)
        holder = self._session_holder(owner, tag) if request.session else owner
        args = pick_argv(request, holder, self._space.prefix, channels, wait)
        with _map_errors("pick"):
            await self._join(channels, owner)
            keys = [*self._space.pool_keys(pool), self._space.stamp_key(tag)]
            reply = await self._run("pick", keys, args)
        return pick_result(reply, wait)

    async def pool_leave(self, pool: str, token: str, owner: str) -> None:
        channels = self._space.tag_channels(self._space.pool_tag(pool))
        args = pool_leave_argv(owner, token, channels, pool)
        with _map_errors("pool_leave"):
            await self._run("pool_leave", self._space.pool_keys(pool)[:1], args)

    async def published_policy(self, newer_than: int = 0) -> Published | None:
        return (await self._policy_read(0, newer_than))[0]

    async def policy_history(self, count: int) -> list[Published]:
        return (await self._policy_read(count, 0))[1]

    async def _policy_read(
        self, count: int, newer_than: int
    ) -> tuple[Published | None, list[Published]]:
        keys = [self._space.policy_key, self._space.policy_history_key]
        with _map_errors("policy_read"):
            reply = await self._read("policy_read", keys, (count, newer_than))
            return policy_read_result(reply)

    async def publish_policy(
        self,
        document: str,
        digest: str,
        *,
        expected: int,
        by: str,
        comment: str,
        floor: int = 0,
    ) -> Published | int:
        space = self._space
        keys = [space.policy_key, space.policy_history_key, space.stamp_key("policy")]
        args = policy_publish_argv(expected, digest, document, by, comment, POLICY_HISTORY, floor)
        with _map_errors("policy_publish"):
            reply = await self._run("policy_publish", keys, args)
        return policy_publish_result(reply, digest, document, by, comment)

    async def raise_stamps(self, version: int) -> int:
        lane = self._lane
        with _map_errors("policy_stamp"):
            if not isinstance(lane, ClusterLanes):
                return int(await self._run("policy_stamp", [self._space.stamp_key("")], (version,)))
            # A Cluster: one call per master, with the stamps of the slots it serves; a master
            # whose slots moved meanwhile has its stamps raised one slot at a time (each call
            # sent where its slot is now).
            await lane.open()
            by_node: dict[Any, list[str]] = {}
            for key in self._space.stamp_keys():
                by_node.setdefault(lane.node_for(key), []).append(key)
            highest = version
            for node, keys in by_node.items():
                try:
                    args: tuple[Arg, ...] = (version, *keys[1:])
                    found = await lane.lane_at(node).run(_LIBRARY, "policy_stamp", keys[:1], args)
                except ResponseError:
                    found = max([await self._run("policy_stamp", [k], (version,)) for k in keys])
                highest = max(highest, int(found))
            return highest

    def _session_holder(self, owner: str, tag: str) -> str:
        """A session lease's holder as the functions take it (in a Cluster, its tag is
        remembered as one whose session records to keep alive)."""
        self._sweeps.remember_session_tag(tag)
        return self._space.session_holder(owner, tag)

    async def keepalive(self, session: str, ttl: float) -> bool:
        """Keep ``session`` alive ``ttl`` seconds more: one call on a single server (or
        Sentinel), whatever the leases held. In a Cluster the records are per hash tag: one
        call per tag that holds one, found by scanning every master each time (another process
        of the session may have taken leases on a tag this one never used), so the cost grows
        with the key space there."""
        args = keepalive_argv(session, ttl)
        fenced = False
        with _map_errors("keepalive"):
            for record in await self._sweeps.session_records():
                reply = await self._run("keepalive", [record], args)
                fenced = fenced or bool(reply[1])
        return fenced

    async def release_owner(self, owner: str) -> int:
        with _map_errors("release_owner"):
            return await self._sweeps.release_owner(owner)

    # -- operator queries and admin actions ----------------------------------------------------

    async def known_numbers(self) -> list[str]:
        with _map_errors("known_numbers"):
            return await self._sweeps.known_numbers()

    async def number_tags(self) -> dict[str, list[str]]:
        with _map_errors("number_tags"):
            found = await self._sweeps.number_tags()
        return {number: sorted(tags) for number, tags in sorted(found.items())}

    async def known_pools(self) -> dict[str, list[str]]:
        """SCAN for the pools' order keys, then each pool's members where its keys were found
        (a pool published under another configuration may have another hash tag)."""
        with _map_errors("known_pools"):
            pools: dict[str, list[str]] = {}
            for keys, pool in await self._sweeps.pool_keys():
                members = pool_members_result(await self._read("pool_members", keys, ()))
                if members:
                    # Under several tags (processes with other configurations published it on
                    # a Cluster), a number is still one number, with one cap.
                    listed = pools.setdefault(pool, [])
                    listed.extend(m for m in members if m not in listed)
        return dict(sorted(pools.items()))

    async def holders(self, number: str) -> list[Holder]:
        with _map_errors("holders"):
            reply = await self._read("holders", self._space.number_keys(number), ())
        return holders_result(reply, number)

    async def oldest_wait(self, number: str) -> float | None:
        with _map_errors("oldest_wait"):
            waited = int(await self._read("oldest_wait", self._space.number_keys(number), ()))
        return None if waited < 0 else waited / 1000

    async def reset_number(self, number: str) -> tuple[int, int]:
        with _map_errors("reset_number"):
            args = reset_number_argv(number, self._space.channels_for(number))
            reply = await self._run("reset_number", self._space.number_keys(number), args)
        return reset_number_result(reply)

    async def lift_fence(self) -> None:
        """On every master (``fence_lift.lua``)."""
        with _map_errors("lift_fence"):
            await self._sweeps.lift_fence(_LIBRARY)

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Awaitable[Any]:
        return self._lane.run(_LIBRARY, name, keys, args)

    def _read(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Awaitable[Any]:
        """A view: ``FCALL_RO`` of a function registered read only (see ``ScriptLane.read``:
        the server refuses any write, and the library is never loaded for it)."""
        return self._lane.read(_LIBRARY, name, keys, args)

    async def aclose(self) -> None:
        if self._events is not None:
            self._events.close()
        await self._lane.aclose()
        for other in self._also_close:
            with _map_errors("close"):
                await other.aclose()
        if self._owns_client:
            with _map_errors("close"):
                if isinstance(self._client, RedisCluster):
                    await self._client.aclose()
                else:
                    await self._client.aclose(close_connection_pool=True)
