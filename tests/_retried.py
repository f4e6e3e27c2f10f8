"""The table of retry cases: for every Lua function of the Redis backend (and its memory twin),
a state to start from and a call to run once, or twice with the first reply lost.

The backend's rule is that every function is safe to run twice for the same token: the Redis
connection sends a call again when its connection was lost before the reply came, although the
server may have run it. ``tests/redis/test_retry.py`` cuts the reply for real and lets the
library send the call again; ``tests/memory/test_retry.py`` runs the memory twin twice. Both
compare the state left (every view, and the full state) with a single run's.

Where a retry legitimately differs from a single run, the case says so:

- ``retried``: what the second run answers, when it is not the first run's answer (a release
  that already released reports False; a reset or an owner's release that already removed
  everything reports nothing removed).
- ``nudges_again``: the second run tells the waiters again to ask again (a nudge only makes a
  waiter look again: it grants nothing).
- ``order_moves``: a pick that found no number able to take the call, run again, moves the
  pool's order along again (its round-robin cursor and the tie-break among numbers equally
  loaded), as a second pick by the waiting caller would; and a release through a pool, run
  again, marks its number as moved (its load changed) once more, which keeps it where the
  first run put it among its equals. No slot, lease or place in line differs.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callthrottle import Config
from callthrottle._pools import STICKY_TTL
from callthrottle._rates import RatePlan, Window
from callthrottle.backends import (
    AcquireRequest,
    Backend,
    GroupPolicyChange,
    PickRequest,
    PolicyChange,
    RedisBackend,
)
from callthrottle.backends.redis import _LIBRARY

if TYPE_CHECKING:
    from callthrottle.backends._lane import Arg

LUA = Path(__file__).parent.parent / "src" / "callthrottle" / "backends" / "lua"

A = "+8657188880001"  # the caller's cap (1 or 2), no windows, no group
G = "+8657188880002"  # trunk t1 (cap 2), tenant acme (rate windows), its own rate windows
G2 = "+8657188880003"  # trunk t1 and tenant acme too
POOL = ["+8657188880011", "+8657188880012", "+8657188880013"]
NUMBERS = [A, G, G2, *POOL]
OWNERS = ("o1", "o2", "o3")
TTL = 30.0
CONFIG = Config.from_dict(
    {
        "profiles": {"rated": {"cap": 2, "rates": "50/minute"}},
        "trunks": {"t1": {"cap": 2}},
        "tenants": {"acme": {"rates": "100/minute"}},
        "numbers": {
            G: {"trunk": "t1", "tenant": "acme", "profile": "rated"},
            G2: {"trunk": "t1", "tenant": "acme"},
        },
        "pools": {"p": {"numbers": POOL}},
    }
)
TRUNK = CONFIG.trunks["t1"]
TENANT = CONFIG.tenants["acme"]
GROUP_TAG = CONFIG.tag_for(G)

Step = Callable[[Backend], Awaitable[Any]]


def lua_functions() -> set[str]:
    """Every function of the library: one file each (``_common.lua`` is the shared part)."""
    return {path.stem for path in LUA.glob("*.lua") if not path.stem.startswith("_")}


def marker(function: str) -> bytes:
    """What a call of ``function`` carries on the wire: its name in the library, as a whole
    bulk string."""
    return _LIBRARY.functions[function].encode() + b"\r\n"


# -- steps ------------------------------------------------------------------------------------


async def take(
    backend: Backend,
    number: str,
    token: str,
    owner: str,
    *,
    limit: int = 2,
    wait: bool = False,
    hold: float | None = None,
    callee: str | None = None,
    session: bool = False,
) -> Any:
    plan = CONFIG.rate_plan_for(number)
    if callee is not None:
        plan = dataclasses.replace(plan, callee=callee, callee_windows=(Window(5, 60.0),))
    if session:
        return await backend.acquire(
            AcquireRequest(number, token, owner, limit, TTL, hold, plan, True), enqueue=wait
        )
    return await backend.acquire(
        AcquireRequest(number, token, owner, limit, TTL, hold, plan), enqueue=wait
    )


async def pick(
    backend: Backend,
    token: str,
    owner: str,
    strategy: str = "least-loaded",
    *,
    wait: bool = False,
    callee: str | None = None,
) -> Any:
    call = RatePlan(callee=callee)
    return await backend.pick(
        PickRequest(
            "p", token, owner, TTL, None, strategy, 16, call, near=("", ""), sticky_ttl=STICKY_TTL
        ),
        wait=wait,
    )


async def make_pool(backend: Backend, limit: int = 1) -> None:
    specs = {number: CONFIG.member_spec(number, limit) for number in POOL}
    await backend.pool_update("p", specs, ())


async def full_number(backend: Backend) -> None:
    """A at its cap of 1, held by o1, with o2 then o3 waiting in line."""
    await take(backend, A, "t1", "o1", limit=1)
    await take(backend, A, "t2", "o2", limit=1, wait=True)
    await take(backend, A, "t3", "o3", limit=1, wait=True)


async def full_trunk(backend: Backend) -> None:
    """Trunk t1 at its cap of 2 (o1 on G and G2), o2 waiting for a slot of it on G."""
    await take(backend, G, "g1", "o1")
    await take(backend, G2, "g2", "o1")
    await take(backend, G, "g3", "o2", wait=True)


async def full_pool(backend: Backend) -> None:
    """Every number of pool p at its cap of 1; o2 first in the pool's line."""
    await make_pool(backend)
    for i in range(len(POOL)):
        await pick(backend, f"p{i}", "o1")
    await pick(backend, "w1", "o2", wait=True)


async def filled_pool(backend: Backend) -> None:
    """Every number of pool p at its cap of 1; nobody waits."""
    await make_pool(backend)
    for i in range(len(POOL)):
        await pick(backend, f"p{i}", "o1")


async def trunk_holders(backend: Backend) -> None:
    """Trunk t1 at its cap of 2 (o1 and o2, both on G: the only number with keys), o3 waiting
    for a slot of it on G."""
    await take(backend, G, "g1", "o1")
    await take(backend, G, "g2", "o2")
    await take(backend, G, "g3", "o3", wait=True)


async def session_leases(backend: Backend) -> None:
    """Session s1 holds A and a slot of trunk t1 on G; o2 waits for A."""
    await take(backend, A, "s1a", "s1", limit=1, session=True)
    await take(backend, G, "s1g", "s1", session=True)
    await take(backend, A, "t2", "o2", limit=1, wait=True)


async def nothing(backend: Backend) -> None:
    pass


async def held_briefly(backend: Backend) -> None:
    """o1 holds A for at most 10 s (less than a lease's ttl)."""
    await take(backend, A, "t1", "o1", hold=10.0)


async def batch(backend: Backend) -> Any:
    """An acquire of o2 (queued: A is full) and a release of o1's lease, in one call: what
    the backend sends when both are asked for at once. The memory twin runs them in order."""
    if not isinstance(backend, RedisBackend):
        return [
            await take(backend, A, "t4", "o2", limit=1, wait=True),
            await backend.release(A, "t1", "o1"),
        ]
    channels = backend._space.channels_for(A)
    acquire = ("t4", "o2", 1, 30000, 0, 1, A, channels, 0)
    release = ("t1", "o1", A, channels)
    flat: list[Arg] = ["a", len(acquire), *acquire, "r", len(release), *release]
    acquired, released = await backend._lane.run_now(_LIBRARY, "batch", backend.keys_for(A), flat)
    return [[acquired[0], acquired[1] / 1000], released]  # retry_in in seconds, as the views


DOCUMENT = '{"policy": 1}'  # what the backend keeps as it is given (it parses nothing)


async def publish(backend: Backend) -> Any:
    return await backend.publish_policy(
        DOCUMENT, "d1", expected=0, by="ops@host", comment="caps for 2026"
    )


async def raise_stamps(backend: Backend) -> int:
    """Every slot's policy stamp raised to version 5 (a publisher's last step; the memory
    backend has the one stamp)."""
    return await backend.raise_stamps(5)


# -- the table --------------------------------------------------------------------------------

SAME = object()  # the retry answers what the single run answered


@dataclass(frozen=True)
class Case:
    function: str  # the Lua function (its file's name), whose memory twin runs too
    name: str
    setup: Step
    run: Step
    retried: Any = SAME  # or what the second run answers, or a function of the first answer
    nudges_again: bool = False
    order_moves: bool = False

    @property
    def id(self) -> str:
        return f"{self.function}-{self.name}"


def _case(function: str, name: str, setup: Step, run: Step, **notes: Any) -> Case:
    return Case(function, name, setup, run, **notes)


CASES = [
    _case("acquire", "granted", nothing, lambda b: take(b, A, "t1", "o1")),
    _case("acquire", "granted-with-windows-and-groups", nothing, lambda b: take(b, G, "g1", "o1")),
    _case("acquire", "queued", full_number, lambda b: take(b, A, "t4", "o1", limit=1, wait=True)),
    _case(
        "acquire", "waits-for-the-trunk", full_trunk, lambda b: take(b, G, "g4", "o3", wait=True)
    ),
    _case("acquire", "refused", full_number, lambda b: take(b, A, "t4", "o1", limit=1)),
    _case("acquire", "with-a-callee", nothing, lambda b: take(b, A, "t1", "o1", callee=G2)),
    _case("acquire", "for-a-session", nothing, lambda b: take(b, G, "g1", "s1", session=True)),
    _case("keepalive", "a-session-with-leases", session_leases, lambda b: b.keepalive("s1", TTL)),
    _case("fence_lift", "on-a-server-in-use", full_number, lambda b: b.lift_fence()),
    _case(
        "release",
        "a-session-lease",
        session_leases,
        lambda b: b.release(A, "s1a", "s1"),
        retried=0,
    ),
    _case(
        "release",
        "hands-the-slot-to-the-next",
        full_number,
        lambda b: b.release(A, "t1", "o2"),
        retried=False,
    ),
    _case(
        "release",
        "frees-a-trunk-slot",
        full_trunk,
        lambda b: b.release(G2, "g2", "o1"),
        retried=False,
    ),
    _case(
        "release",
        "through-the-pool",
        full_pool,
        lambda b: b.release(POOL[0], "p0", "o1", "p"),
        retried=False,
        nudges_again=True,
        order_moves=True,
    ),
    _case("abandon", "a-waiter", full_number, lambda b: b.abandon(A, "t2", "o2")),
    _case("abandon", "a-holder", full_number, lambda b: b.abandon(A, "t1", "o1")),
    _case("abandon", "a-trunk-holder", full_trunk, lambda b: b.abandon(G, "g1", "o1")),
    _case("abandon", "a-trunk-waiter", full_trunk, lambda b: b.abandon(G, "g3", "o2")),
    _case(
        "renew",
        "held-queued-and-gone",
        full_number,
        lambda b: b.renew("o1", [(A, "t1"), (A, "t2"), (A, "t9")]),
    ),
    _case("renew", "in-groups", full_trunk, lambda b: b.renew("o1", [(G, "g1"), (G2, "g2")])),
    _case("renew", "up-to-max-hold", held_briefly, lambda b: b.renew("o1", [(A, "t1")])),
    _case(
        "restore",
        "in-groups",
        nothing,
        lambda b: b.restore(
            AcquireRequest(G, "r1", "o1", 2, TTL, None, CONFIG.rate_plan_for(G)), age=5.0
        ),
    ),
    _case(
        "restore",
        "past-the-cap",
        full_number,
        lambda b: b.restore(
            AcquireRequest(A, "r1", "o3", 1, TTL, 60.0, CONFIG.rate_plan_for(A)), age=1.0
        ),
    ),
    _case(
        "restore",
        "another-owners-token",
        full_number,
        lambda b: b.restore(
            AcquireRequest(A, "t1", "o3", 1, TTL, None, CONFIG.rate_plan_for(A)), age=1.0
        ),
    ),
    _case("pick", "least-loaded", make_pool, lambda b: pick(b, "c1", "o1")),
    _case("pick", "round-robin", make_pool, lambda b: pick(b, "c1", "o1", "round-robin")),
    _case("pick", "sticky", make_pool, lambda b: pick(b, "c1", "o1", "sticky", callee=G)),
    _case(
        "pick",
        "first-in-line",
        full_pool,
        lambda b: pick(b, "w1", "o2", wait=True),
        order_moves=True,
    ),
    _case("pick", "queued-behind", full_pool, lambda b: pick(b, "w2", "o3", wait=True)),
    _case(
        "pick",
        "refused",
        filled_pool,
        lambda b: pick(b, "c9", "o3", "round-robin"),
        order_moves=True,
    ),
    _case("pick", "others-wait", full_pool, lambda b: pick(b, "c9", "o3")),
    _case(
        "pool_update",
        "add-and-remove",
        make_pool,
        lambda b: b.pool_update("p", {A: CONFIG.member_spec(A, 2)}, [POOL[1]]),
    ),
    _case("pool_leave", "the-first", full_pool, lambda b: b.pool_leave("p", "w1", "o2")),
    _case(
        "release_owner",
        "holders-and-waiters",
        full_number,
        lambda b: b.release_owner("o2"),
        retried=0,
    ),
    _case(
        "release_owner",
        "in-groups",
        trunk_holders,
        lambda b: b.release_owner("o1"),
        retried=0,
    ),
    _case(
        "release_owner_lines",
        "a-pool-line",
        full_pool,
        lambda b: b.release_owner("o2"),
        retried=0,
    ),
    _case(
        "release_owner_lines",
        "a-trunk-line",
        full_trunk,
        lambda b: b.release_owner("o2"),
        retried=0,
    ),
    _case(
        "reset_number",
        "holders-and-waiters",
        full_number,
        lambda b: b.reset_number(A),
        retried=(0, 0),
    ),
    _case(
        "set_policy",
        "cap-raised",
        full_number,
        lambda b: b.set_policy(A, PolicyChange(cap=2)),
        nudges_again=True,
    ),
    _case(
        "set_policy",
        "cooling",
        full_number,
        lambda b: b.set_policy(A, PolicyChange(state="cooling", reason="477", until=60.0)),
        nudges_again=True,
    ),
    _case(
        "set_policy",
        "warming-with-windows",
        full_trunk,
        lambda b: b.set_policy(
            G, PolicyChange(state="warming", warming=True, rates=(Window(9, 60.0),))
        ),
        nudges_again=True,  # o2 waits in the trunk's line: told at each run
    ),
    _case(
        "set_group_policy",
        "trunk-cap-raised",
        full_trunk,
        lambda b: b.set_group_policy(TRUNK, GROUP_TAG, GroupPolicyChange(cap=3)),
        nudges_again=True,
    ),
    _case(
        "batch",
        "acquire-and-release",
        full_number,
        batch,
        # Each operation answers as it does run again: the acquire finds its place in line,
        # the release finds the lease gone.
        retried=lambda first: [first[0], [0] if isinstance(first[1], list) else False],
    ),
    _case("usage", "read-only", full_number, lambda b: b.usage(A, 1)),
    _case("holders", "read-only", full_trunk, lambda b: b.holders(G)),
    _case(
        "window_usage",
        "read-only",
        full_trunk,
        lambda b: b.window_usage(G, CONFIG.rate_plan_for(G)),
    ),
    _case("group_usage", "read-only", full_trunk, lambda b: b.group_usage(TRUNK, GROUP_TAG)),
    _case("pool_members", "read-only", full_pool, lambda b: b.pool_members("p")),
    _case("get_policy", "read-only", full_number, lambda b: b.get_policy(A)),
    _case("policy_publish", "the-first", full_number, publish),
    _case("policy_read", "read-only", publish, lambda b: b.published_policy()),
    _case("policy_stamp", "raised", publish, raise_stamps),
    _case("oldest_wait", "read-only", full_number, lambda b: b.oldest_wait(A)),
]


# -- comparing --------------------------------------------------------------------------------

_TIME = re.compile(r"\d{13}")  # a time in ms since the epoch, inside a key's value
_EPOCH_MS = (1.6e12, 4e12)


def plain(value: Any) -> Any:
    """Replies, views and states as plain data (dataclasses as dicts, bytes decoded)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {k if isinstance(k, str) else repr(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def differences(one: Any, two: Any, ms: float, seconds: float, at: str = "") -> list[str]:
    """Where ``one`` and ``two`` differ: times (ms since the epoch, also inside strings) by
    more than ``ms``, other fractional numbers (seconds) by more than ``seconds``, anything
    else at all."""
    if isinstance(one, dict) and isinstance(two, dict):
        found = [f"{at}/{key}: only in one" for key in one.keys() ^ two.keys()]
        for key in one.keys() & two.keys():
            found += differences(one[key], two[key], ms, seconds, f"{at}/{key}")
        return found
    if isinstance(one, list) and isinstance(two, list):
        if len(one) != len(two):
            return [f"{at}: {one!r} != {two!r}"]
        found = []
        for index, (a, b) in enumerate(zip(one, two, strict=True)):
            found += differences(a, b, ms, seconds, f"{at}[{index}]")
        return found
    numbers = (int, float)
    if isinstance(one, numbers) and isinstance(two, numbers) and type(one) is not bool:
        if _EPOCH_MS[0] <= one <= _EPOCH_MS[1]:
            close = abs(one - two) <= ms
        elif isinstance(one, float) or isinstance(two, float):
            close = abs(one - two) <= seconds
        else:
            close = one == two
        return [] if close else [f"{at}: {one!r} != {two!r}"]
    if isinstance(one, str) and isinstance(two, str) and _TIME.search(one):
        times = [
            (int(a), int(b)) for a, b in zip(_TIME.findall(one), _TIME.findall(two), strict=False)
        ]
        same_text = _TIME.split(one) == _TIME.split(two)
        if same_text and all(abs(a - b) <= ms for a, b in times):
            return []
    return [] if one == two else [f"{at}: {one!r} != {two!r}"]


def timeless(text: str) -> str:
    """``text`` with its times masked: an order for members that carry times."""
    return _TIME.sub("T", text)


# -- views ------------------------------------------------------------------------------------


async def views(backend: Backend) -> dict[str, Any]:
    """Everything the backend tells of its state."""
    seen: dict[str, Any] = {}
    for number in NUMBERS:
        seen[f"usage {number}"] = await backend.usage(number, 2)
        seen[f"holders {number}"] = await backend.holders(number)
        seen[f"windows {number}"] = await backend.window_usage(number, CONFIG.rate_plan_for(number))
        seen[f"policy {number}"] = await backend.get_policy(number)
    for group in (TRUNK, TENANT):
        seen[f"group {group.group}"] = await backend.group_usage(group, GROUP_TAG)
    seen["pool p"] = await backend.pool_members("p")
    seen["policy"] = await backend.published_policy()
    seen["policy history"] = await backend.policy_history(5)
    return seen


def retry_reply(case: Case, first: Any) -> Any:
    """What the case's second run should answer, given the first run's answer."""
    if case.retried is SAME:
        return first
    if callable(case.retried):
        return case.retried(first)
    return case.retried
