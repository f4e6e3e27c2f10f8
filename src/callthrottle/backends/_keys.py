"""Where the Redis backend keeps things: key names, hash tags and channels.

Every key reads ``<prefix>{<tag>}<rest>``: the braces hold the hash tag, so that the keys of
one decision (a number's, its groups', its callee log; a pool's and its numbers') are on one
Cluster slot. A number's keys are ``...:n:<number>:<letter>`` (the letters of ``_common.lua``:
h q w m p r), a group's ``...:g:<group>:<letter>``, a pool's ``...:pool:<pool>:<letter>``
(``pick.lua``), a callee log ``...:c:<callee>``. Events go to ``<prefix>owner:<owner>``, or on a
Cluster to the shard channel ``<prefix>{<tag>}:o:<owner>`` of the tag they are about.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, cast

from redis.crc import REDIS_CLUSTER_HASH_SLOTS as _SLOTS
from redis.crc import key_slot

from .._errors import InvalidArgument
from ._base import OWN_TAGS

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ._base import Layout

__all__ = ("KeySpace", "glob_escape")

_CACHE_SIZE = 4096


@functools.cache
def slot_tags() -> tuple[str, ...]:
    """For each of a Cluster's 16,384 slots, a short hash tag whose keys land on it."""
    tags: list[str | None] = [None] * _SLOTS
    missing, index = _SLOTS, 0
    while missing:
        tag = f"s{index}"
        slot = key_slot(tag.encode())
        if tags[slot] is None:
            tags[slot] = tag
            missing -= 1
        index += 1
    return tuple(cast("list[str]", tags))


def glob_escape(text: str) -> str:
    """``text`` matched as it is by a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class KeySpace:
    """The keys and channels of one key prefix, on one server (or Sentinel) or on a Cluster.

    :param prefix: prefix of every key and channel
    :param cluster: on a Cluster, a number and its pools must share a hash tag (see
        :meth:`tag_of`, :meth:`pool_tag`), and events go to shard channels
    """

    __slots__ = (
        "_homes",
        "_keys",
        "_pool_tags",
        "_pools",
        "_shards",
        "channels",
        "cluster",
        "layout",
        "prefix",
    )

    def __init__(self, prefix: str, *, cluster: bool) -> None:
        if not isinstance(cast("object", prefix), str) or "{" in prefix or "}" in prefix:
            # The keys' hash tags are the first braces of each key: a brace in the prefix
            # would take their place (and the functions find a key's prefix by its first '{').
            raise InvalidArgument("key_prefix", prefix, "a string without '{' or '}'")
        self.prefix = prefix
        self.cluster = cluster
        #: the prefix of the channels of a single server (one per throttle)
        self.channels = f"{prefix}owner:"
        self.layout: Layout = OWN_TAGS
        self._keys: dict[str, list[str]] = {}  # number -> its keys
        self._shards: dict[str, str] = {}  # number -> its shard channels' prefix (Cluster)
        # Cluster placement, worked out from the layout once: the configured pools' numbers,
        # each number's first pool, each pool's tag.
        self._pools: Mapping[str, Sequence[str]] | None = None
        self._homes: dict[str, str] = {}
        self._pool_tags: dict[str, str] = {}

    def use(self, layout: Layout) -> None:
        self.layout = layout
        self._keys.clear()
        self._shards.clear()
        self._pools = None
        self._homes.clear()
        self._pool_tags.clear()

    # -- numbers and groups --------------------------------------------------------------------

    def tag_of(self, number: str) -> str:
        """The hash tag of ``number``'s keys: the layout's (``Config.tag_for``); on a Cluster,
        a number that would be its own tag takes the first configured pool that lists it
        (``p:<pool>``), since a pick uses the keys of the pool and of its numbers together."""
        tag = self.layout.tag_for(number)
        if not self.cluster or tag != number:
            return tag
        home = self._home_pool(number)
        return number if home is None else f"p:{home}"

    def _home_pool(self, number: str) -> str | None:
        self._configured_pools()
        return self._homes.get(number)

    def _configured_pools(self) -> Mapping[str, Sequence[str]]:
        pools = self._pools
        if pools is None:
            pools = self._pools = self.layout.pool_numbers()
            for name, numbers in pools.items():
                for member in numbers:
                    self._homes.setdefault(member, name)
        return pools

    def number_keys(self, number: str) -> list[str]:
        """The KEYS of the functions on one number: H Q W M P R, C (the callee log's place: R,
        not touched, when a call has none), four per group, then S, the policy stamp of the
        number's slot (see ``policy_stale`` in ``_common.lua``)."""
        keys = self._keys.get(number)
        if keys is None:
            tag = self.tag_of(number)
            base = f"{self.prefix}{{{tag}}}:n:{number}:"
            keys = [base + "h", base + "q", base + "w", base + "m", base + "p", base + "r"]
            keys.append(keys[5])
            for group in self.layout.groups_for(number):
                keys += self.group_keys(group.group, tag)
            keys.append(self.stamp_key(tag))
            if len(self._keys) >= _CACHE_SIZE:
                self._keys.clear()
            self._keys[number] = keys
        return keys

    def callee_keys(self, number: str, callee: str) -> list[str]:
        """:meth:`number_keys` with the log of the calls to ``callee`` as C."""
        keys = self.number_keys(number)
        return [*keys[:6], f"{self.prefix}{{{self.tag_of(number)}}}:c:{callee}", *keys[7:]]

    def group_keys(self, group: str, tag: str) -> list[str]:
        """GH GR GW GP of ``group``, whose numbers' tag is ``tag``."""
        base = f"{self.prefix}{{{tag}}}:g:{group}:"
        return [base + "h", base + "r", base + "w", base + "p"]

    # -- pools ---------------------------------------------------------------------------------

    def pool_tag(self, pool: str) -> str:
        """The hash tag of ``pool``'s own keys. On a Cluster: the tag its configured numbers
        share, else the one every number gets (a default tenant, or callee windows: the tag an
        unconfigured number gets, asked with a name no number can have), else its own."""
        own = f"p:{pool}"
        if not self.cluster:
            return own
        tag = self._pool_tags.get(pool)
        if tag is None:
            tag = self.layout.tag_for(own)
            numbers = self._configured_pools().get(pool)
            if numbers:
                tags = {self.tag_of(number) for number in numbers}
                if len(tags) == 1:
                    tag = tags.pop()
            if len(self._pool_tags) >= _CACHE_SIZE:
                self._pool_tags.clear()
            self._pool_tags[pool] = tag
        return tag

    def pool_keys(self, pool: str) -> list[str]:
        """PM PL PO PC PS (see ``pick.lua``)."""
        # The pool's name is in its keys: on a Cluster, pools may share a hash tag.
        base = f"{self.prefix}{{{self.pool_tag(pool)}}}:pool:{pool}:"
        return [base + "m", base + "l", base + "o", base + "c", base + "s"]

    # -- the published policy ------------------------------------------------------------------

    def stamp_key(self, tag: str) -> str:
        """The policy stamp of the slot of hash tag ``tag``'s keys (see ``policy_stale`` in
        ``_common.lua``): one for a single server, one per slot on a Cluster (a function only
        reads keys of its own slot)."""
        if not self.cluster:
            return f"{self.prefix}{{policy}}:stamp"
        return f"{self.prefix}{{{slot_tags()[key_slot(tag.encode())]}}}:stamp"

    def stamp_keys(self) -> list[str]:
        """Every policy stamp (publishing raises them all)."""
        if not self.cluster:
            return [self.stamp_key("")]
        return [f"{self.prefix}{{{tag}}}:stamp" for tag in slot_tags()]

    @property
    def policy_key(self) -> str:
        """The published policy (a string: version, digest, when, by whom, why, the document;
        see ``policy_publish.lua``)."""
        return f"{self.prefix}{{policy}}"

    @property
    def policy_history_key(self) -> str:
        """The versions published before the current one, newest first (a list)."""
        return f"{self.prefix}{{policy}}:history"

    # -- channels ------------------------------------------------------------------------------

    def channels_for(self, number: str) -> str:
        """The prefix of the channels that events about ``number`` go to: one channel per
        throttle, or in a Cluster one per throttle and hash tag (on the tag's slot)."""
        if not self.cluster:
            return self.channels
        shard = self._shards.get(number)
        if shard is None:
            if len(self._shards) >= _CACHE_SIZE:
                self._shards.clear()
            shard = self._shards[number] = self.tag_channels(self.tag_of(number))
        return shard

    def tag_channels(self, tag: str) -> str:
        """The prefix of the channels for events about the keys of hash tag ``tag``."""
        return f"{self.prefix}{{{tag}}}:o:" if self.cluster else self.channels

    @staticmethod
    def owner_of_shard_channel(channel: bytes) -> str:
        return channel.decode().partition("}:o:")[2]

    # -- records and markers -------------------------------------------------------------------

    def session_record(self, tag: str, *, whole: bool = True) -> str:
        """The key of the session records that leases of hash tag ``tag`` name: one for the
        whole server, or in a Cluster one per tag (a function touches one slot). Leases name it
        without the key prefix (``whole=False``)."""
        key = f"{{{tag}}}:sessions" if self.cluster else "sessions"
        return self.prefix + key if whole else key

    def session_holder(self, owner: str, tag: str) -> str:
        """A session lease's holder as the functions take it: the session and the record its
        leases of hash tag ``tag`` name."""
        return f"{owner}\t{self.session_record(tag, whole=False)}"

    @property
    def fence_marker(self) -> str:
        """The key prefix's marker key (see ``fenced`` in ``_common.lua``)."""
        return self.prefix + "fence"

    # -- scanning: patterns, and what a key found says -----------------------------------------

    def pattern(self, rest: str) -> str:
        """A SCAN pattern for the keys ``<prefix>{*}<rest>``."""
        return glob_escape(self.prefix) + "{*}" + rest

    def session_tag_of(self, key: bytes) -> str:
        """The hash tag of a session record's key (Cluster)."""
        text = key.decode()
        return text[len(self.prefix) + 1 : text.rindex("}")]

    def line_of(self, key: str, kind: str, end: str) -> tuple[str, str] | None:
        """(hash tag, name) of a pool's or group's line key (``<prefix>{<tag>}<kind><name><end>``),
        or None when the key is not one."""
        tag, brace, rest = key[len(self.prefix) + 1 :].partition("}")
        if not brace or not rest.startswith(kind) or not rest.endswith(end):
            return None
        return tag, rest[len(kind) : -len(end)]
