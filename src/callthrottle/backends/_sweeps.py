"""What the Redis backend does across the whole key space rather than on one number: SCAN the
key prefix on every master (one on a single server), and the calls that follow a scan:
releasing an owner everywhere, listing the numbers, finding the session records of a Cluster,
lifting the fence on every master. None of it is on the hot path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._cluster import ClusterLanes
from ._codec import end_session_argv, fence_lift_argv, release_owner_argv, release_owner_lines_argv
from ._lane import pack

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from redis.asyncio.cluster import RedisCluster

    from ._keys import KeySpace
    from ._lane import Arg, Library, ScriptLane

    Run = Callable[[str, Sequence[str], Sequence[Arg]], Awaitable[Any]]

__all__ = ("Sweeps",)


class Sweeps:
    """The whole-key-space work of one Redis backend; ``run`` calls one of its functions.

    ``session_tags``: in a Cluster, the hash tags known to hold session records (a session's
    records are per tag there).
    """

    __slots__ = ("_cluster", "_lane", "_run", "_space", "session_tags")

    def __init__(
        self,
        lane: ScriptLane | ClusterLanes,
        cluster: RedisCluster | None,
        space: KeySpace,
        run: Run,
    ) -> None:
        self._lane = lane
        self._cluster = cluster
        self._space = space
        self._run = run
        self.session_tags: set[str] = set()

    def remember_session_tag(self, tag: str) -> None:
        """A session lease was asked for on hash tag ``tag``: in a Cluster, its records there
        are kept alive from now on."""
        if self._cluster is not None:
            self.session_tags.add(tag)

    async def _masters(self) -> list[ScriptLane]:
        if isinstance(self._lane, ClusterLanes):
            assert self._cluster is not None
            await self._lane.open()
            return [self._lane.lane_at(node) for node in self._cluster.get_primaries()]
        return [self._lane]

    async def scan(self, match: str) -> AsyncIterator[bytes]:
        """The keys that match ``match``, SCANned on the lanes (a Cluster's masters one after
        another). Not through redis-py: its Cluster client asks every master at once, in the
        tasks of an ``asyncio.gather``, and a cancellation that comes back out of those tasks
        has lost the mark of the cancel scope that made it (``move_on_after`` around
        ``keepalive`` let a bare ``CancelledError`` out); and a call it cancels mid-command
        can leave a broken connection to the next caller."""
        for lane in await self._masters():
            cursor = b"0"
            while True:
                cursor, keys = await lane.call(pack("SCAN", cursor, "MATCH", match, "COUNT", 1000))
                for raw in keys:
                    yield raw
                if cursor == b"0":
                    break

    async def find_session_records(self) -> None:
        """In a Cluster, learn the tags that hold session records."""
        async for raw in self.scan(self._space.pattern(":sessions")):
            self.session_tags.add(self._space.session_tag_of(raw))

    async def session_records(self) -> list[str]:
        """Every session record key: one on a single server, one per tag in a Cluster (found
        by scanning every master: another process of the session may have taken leases on a
        tag this one never used)."""
        if self._cluster is None:
            return [self._space.session_record("")]
        await self.find_session_records()
        return [self._space.session_record(tag) for tag in sorted(self.session_tags)]

    async def release_owner(self, owner: str) -> int:
        """See :meth:`Backend.release_owner`."""
        space = self._space
        removed = 0
        async for raw in self.scan(space.pattern(":n:*:m")):
            number = raw.decode().rpartition(":n:")[2][:-2]
            args = release_owner_argv(owner, number, space.channels_for(number))
            removed += await self._run("release_owner", space.number_keys(number), args)
        # Callers waiting for a pool or a group have a place in its line only: the line's
        # order key, its lapses key (same name, other last letter), and a pool's name.
        for kind, order, lapses in ((":pool:", "w", "x"), (":g:", "q", "w")):
            async for raw in self.scan(space.pattern(f"{kind}*:{order}")):
                key = raw.decode()
                line = space.line_of(key, kind, f":{order}")
                if line is not None:
                    tag, name = line
                    pool = name if kind == ":pool:" else ""
                    keys = [key, key[:-1] + lapses]
                    line_args = release_owner_lines_argv(owner, space.tag_channels(tag), pool)
                    removed += await self._run("release_owner_lines", keys, line_args)
        # An owner that is a session: its life ends once its leases went (ended, not lapsed),
        # on every record that may name it.
        for record in await self.session_records():
            await self._run("keepalive", [record], end_session_argv(owner))
        return removed

    async def known_numbers(self) -> list[str]:
        """See :meth:`Backend.known_numbers`."""
        return sorted(await self.number_tags())

    async def number_tags(self) -> dict[str, set[str]]:
        """Every number the key space holds state for, and the hash tags its keys are under:
        those that hold its leases or line when some do (a policy left under another tag, by a
        process with another configuration, rules no call of theirs), else every one."""
        # Every key of a number reads "<prefix>{<tag>}:n:<number>:<one letter>": its leases,
        # line and policy (h q w m p) count; its rate log (r) alone does not, as in memory.
        found: dict[str, dict[str, bool]] = {}
        start = len(self._space.prefix) + 1
        async for raw in self.scan(self._space.pattern(":n:*:[hqwmp]")):
            key = raw.decode()
            tag, _, rest = key[start:].partition("}:n:")
            number, _, letter = rest.rpartition(":")
            if number:
                tags = found.setdefault(number, {})
                tags[tag] = tags.get(tag, False) or letter != "p"
        return {
            number: {tag for tag, calls in tags.items() if calls} or set(tags)
            for number, tags in found.items()
        }

    async def pool_keys(self) -> list[tuple[list[str], str]]:
        """The keys PM PL PO of every pool that has an order key (numbers), and its name."""
        found = []
        async for raw in self.scan(self._space.pattern(":pool:*:o")):
            key = raw.decode()
            line = self._space.line_of(key, ":pool:", ":o")
            if line is not None:
                found.append(([key[:-1] + "m", key[:-1] + "l", key], line[1]))
        return sorted(found, key=lambda item: (item[1], item[0]))

    async def lift_fence(self, library: Library) -> None:
        """On every master (``fence_lift.lua``)."""
        args = fence_lift_argv(self._space.fence_marker)
        if self._cluster is None:
            await self._run("fence_lift", (), args)
            return
        for lane in await self._masters():
            await lane.run(library, "fence_lift", (), args)
