"""What the Redis backend sends to each Lua function and what it makes of the reply.

One :class:`Codec` per function of the library: the names of its KEYS and ARGV by position, as
the header comment of its ``.lua`` file names them (``tests/redis/test_codec.py`` reads every
header and checks it against these), the function that encodes its ARGV and the one that
decodes its reply. The encoders return plain tuples and the decoders read the reply as it
comes: the acquire and release path builds nothing more than one tuple of arguments.

A header names a position as ``KEYS[n] <label>`` or ``ARGV[n] <label>`` (the label starts the
text that follows), the positions from ``n`` on as ``ARGV[n..] <label>``, and a list of keys
as ``KEYS: H Q W ..., then <label of the rest>``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from .._models import Holder, Usage, WindowUsage
from .._rates import NO_RATES, GroupPlan, RatePlan, Window
from ._policy import KEEP, Published, RuntimePolicy
from ._results import AcquireResult, Outcome, PickResult

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from .._pools import MemberSpec
    from ._lane import Arg
    from ._policy import GroupPolicyChange, PolicyChange
    from ._requests import AcquireRequest, PickRequest

__all__ = (
    "CODECS", "GROUP_KEYS", "NUMBER_KEYS", "POOL_KEYS", "Codec", "abandon_argv",
    "acquire_argv", "acquire_result", "batch_argv", "end_session_argv", "epoch_ms",
    "fence_lift_argv", "get_policy_result", "group_usage_result", "holders_result", "keepalive_argv",
    "member_spec", "ms", "parse_windows_spec", "pick_argv", "pick_result", "policy_publish_argv",
    "policy_publish_result", "policy_read_result",
    "pool_leave_argv", "pool_members_result", "pool_update_argv", "release_argv",
    "release_owner_argv", "release_owner_lines_argv", "release_result", "renew_argv",
    "reset_number_argv", "reset_number_result", "restore_argv", "set_group_policy_argv",
    "set_policy_argv", "usage_argv", "usage_result", "window_usage_argv", "window_usage_result",
    "windows_spec",
)  # fmt: skip


class Codec(NamedTuple):
    """How the backend calls one Lua function.

    :ivar keys: KEYS by position (the names the file's header gives them)
    :ivar argv: ARGV by position; positions past ``required`` may be left out
    :ivar keys_rest: what KEYS holds after ``keys`` ('' for nothing)
    :ivar argv_rest: what ARGV holds after ``argv`` ('' for nothing)
    :ivar encode: the ARGV for a request (None: the function takes none, or the backend builds
        them from its own state as the header says, e.g. ``batch``)
    :ivar decode: the reply as the backend returns it (None: used as it comes)
    """

    keys: tuple[str, ...]
    argv: tuple[str, ...]
    keys_rest: str = ""
    argv_rest: str = ""
    required: int | None = None
    encode: Callable[..., Sequence[Arg]] | None = None
    decode: Callable[..., Any] | None = None


#: The keys of one number's decision, then four per group, then the policy stamp of the slot
#: (see ``_common.lua``).
NUMBER_KEYS = ("H", "Q", "W", "M", "P", "R", "C")
GROUP_KEYS = "the group keys"
#: A pool's keys (see ``pick.lua``); most functions take the first three.
POOL_KEYS = ("PM", "PL", "PO", "PC", "PS")

_GRANTED = AcquireResult(Outcome.GRANTED)  # immutable: one instance serves every grant
_STALE = AcquireResult(Outcome.STALE)


def ms(seconds: float) -> int:
    """``seconds`` in whole milliseconds, rounded up, at least 1."""
    # Rounded to a millionth of a millisecond first: 2.007 * 1000 is 2007.0000000000002, which
    # would otherwise round up to 2008 (a value in whole milliseconds must read back as it is).
    return max(math.ceil(round(seconds * 1000, 6)), 1)


def epoch_ms(seconds: float) -> int:
    """An instant (seconds since the epoch) in whole milliseconds, rounded down: a paid
    period's instants and a calendar's now compare alike on both backends (see
    ``backends/memory/_choice.py``), and as the throttle compares them in seconds (a calendar
    a fraction of a millisecond before a lapse is before it)."""
    return math.floor(seconds * 1000)


@lru_cache(maxsize=1024)
def windows_spec(windows: Sequence[Window]) -> str:
    """Rate windows as the functions read them: ``amount:ms:calendar;...``."""
    return ";".join(f"{w.amount}:{ms(w.seconds)}:{int(w.calendar)}" for w in windows)


def parse_windows_spec(spec: str) -> tuple[Window, ...]:
    windows = []
    for part in filter(None, spec.split(";")):
        amount, window_ms, calendar = part.split(":")
        windows.append(Window(int(amount), int(window_ms) / 1000, calendar=calendar == "1"))
    return tuple(windows)


# -- acquire, release, batch: the hot path -----------------------------------------------------


def acquire_argv(
    request: AcquireRequest, owner: str, enqueue: bool, channels: str
) -> tuple[Arg, ...]:
    """acquire.lua's ARGV; ``owner`` is the request's, or "owner\\t<session record>" for a
    session lease."""
    max_hold = request.max_hold
    args: tuple[Arg, ...] = (
        request.token,
        owner,
        request.limit,
        ms(request.ttl),
        0 if max_hold is None else ms(max_hold),
        1 if enqueue else 0,
        request.number,
        channels,
        request.policy,
    )
    rates = request.rates
    if rates is not NO_RATES:
        args += (
            windows_spec(rates.windows),
            round(rates.tz_offset * 1000),
            ",".join(map(str, rates.warmup)),
            1 if rates.midnight else 0,
            windows_spec(rates.callee_windows) if rates.callee else "",
        )
        for group in rates.groups:
            cap = "" if group.cap is None else group.cap
            args += (cap, group.reserve, windows_spec(group.windows), group.group)
        if rates.groups:
            args += (1 if rates.priority >= 1 else 0,)  # it may take the reserves
    return args


def acquire_result(reply: list[Any]) -> AcquireResult:
    """acquire.lua's reply as an :class:`AcquireResult`."""
    if reply[0] == 1:
        return _GRANTED
    if reply[0] == Outcome.STALE:
        return _STALE
    retry_in = None if reply[1] < 0 else reply[1] / 1000
    if len(reply) == 2:
        return AcquireResult(Outcome(reply[0]), retry_in)
    if reply[2] == b"f":
        return AcquireResult(Outcome(reply[0]), retry_in, fenced=True)
    if reply[0] == Outcome.RATE_LIMITED:
        window = Window(reply[2], reply[3] / 1000, calendar=bool(reply[4]))
        whose = reply[5].decode()
        return AcquireResult(
            Outcome.RATE_LIMITED,
            retry_in,
            window=window,
            for_callee=whose == "c",
            group=whose if whose not in ("n", "c") else None,
        )
    if reply[0] == Outcome.GROUP_FULL:
        return AcquireResult(Outcome.GROUP_FULL, retry_in, group=reply[2].decode())
    state, reason = reply[2].decode(), reply[3].decode()
    return AcquireResult(Outcome.UNAVAILABLE, retry_in, state, reason or None)


def release_argv(
    token: str, releaser: str, number: str, channels: str, load_key: str | None, pool: str | None
) -> tuple[Arg, ...]:
    """release.lua's ARGV: the pool's load key and name only for a lease picked from a pool."""
    if pool is None or load_key is None:
        return (token, releaser, number, channels)
    return (token, releaser, number, channels, load_key, pool)


def release_result(reply: list[Any]) -> tuple[int, list[bytes]]:
    """release.lua's reply: what was released, and the releaser's waiters handed a slot."""
    return int(reply[0]), reply[1:]


def batch_argv(ops: Sequence[tuple[str, tuple[Arg, ...], object]]) -> list[Arg]:
    """batch.lua's ARGV: per operation its kind ('a' or 'r'), its argument count, its ARGV."""
    flat: list[Arg] = []
    for kind, args, _ in ops:
        flat += (kind, len(args), *args)
    return flat


# -- leases: abandon, renew, restore, keepalive, release_owner ----------------------------------


def abandon_argv(token: str, owner: str, number: str, channels: str) -> tuple[Arg, ...]:
    return (token, owner, number, channels)


def renew_argv(
    owner: str, number: str, channels: str, ttl: float, tokens: Sequence[str]
) -> tuple[Arg, ...]:
    """renew.lua's ARGV: ``ttl`` the renewer's lease TTL (0: unknown)."""
    return (owner, number, channels, ms(ttl) if ttl > 0 else 0, *tokens)


def restore_argv(request: AcquireRequest, owner: str, age: float) -> tuple[Arg, ...]:
    """restore.lua's ARGV; ``owner`` as acquire's (a session lease names its record)."""
    hold = 0 if request.max_hold is None else ms(request.max_hold)
    ttl = ms(request.ttl)
    return (request.token, owner, ttl, hold, request.limit, request.number, round(age * 1000))


def keepalive_argv(session: str, ttl: float) -> tuple[Arg, ...]:
    return (session, ms(ttl))


def end_session_argv(session: str) -> tuple[Arg, ...]:
    """keepalive.lua's ARGV that ends the life of ``session`` now (release_owner)."""
    return (session, 1, 1)


def release_owner_argv(owner: str, number: str, channels: str) -> tuple[Arg, ...]:
    return (owner, number, channels)


def release_owner_lines_argv(owner: str, channels: str, pool: str) -> tuple[Arg, ...]:
    """release_owner_lines.lua's ARGV: ``pool`` '' for a group's line."""
    return (owner, channels, pool)


# -- policy ------------------------------------------------------------------------------------


def _value(value: object) -> str:
    """A policy field's value as the functions take it: '' deletes the field."""
    return "" if value is None else str(value)


def _later(seconds: float | None) -> str:
    """A duration as '+ms', made absolute by the server's clock ('' deletes the field)."""
    return "" if seconds is None else f"+{ms(seconds)}"


def _rates(windows: tuple[Window, ...] | None) -> str:
    return "" if windows is None else windows_spec(windows)


def set_policy_argv(number: str, channels: str, change: PolicyChange) -> tuple[Arg, ...]:
    """set_policy.lua's ARGV: the changed fields, by their names in the policy key (a lowered
    cap is 'lcap' and its end 'luntil', the start of a warm-up 'since': 'now' by the server's
    clock), then the pseudo-field 'reaction' for a carrier's reaction."""
    fields: list[Arg] = [number, channels]
    if change.cap is not KEEP:
        fields += ("cap", _value(change.cap))
    if change.state is not KEEP:
        fields += ("state", _value(change.state))
    if change.reason is not KEEP:
        fields += ("reason", _value(change.reason))
    if change.until is not KEEP:
        fields += ("until", _later(change.until))
    if change.lowered is not KEEP:
        lowered = change.lowered
        fields += ("lcap", "", "luntil", "") if lowered is None else (
            "lcap", str(lowered[0]), "luntil", _later(lowered[1])
        )  # fmt: skip
    if change.rates is not KEEP:
        fields += ("rates", _rates(change.rates))
    if change.warming is not KEEP:
        fields += ("since", "" if change.warming is None else "now")
    if change.reaction:
        fields += ("reaction", "1")
    return tuple(fields)


def get_policy_result(reply: list[Any]) -> RuntimePolicy:
    """get_policy.lua's reply: the fields of the policy key, with the server's time."""
    now, items = reply[0], reply[1:]
    fields = {field.decode(): value for field, value in zip(items[::2], items[1::2], strict=True)}

    def text(name: str) -> str | None:
        value = fields.get(name)
        return None if value is None else value.decode()

    def whole(name: str) -> int | None:
        value = fields.get(name)
        return None if value is None else int(value)

    until, lapses, since = whole("until"), whole("luntil"), whole("since")
    rates = text("rates")
    return RuntimePolicy(
        cap=whole("cap"),
        state=text("state"),
        reason=text("reason"),
        until=None if until is None else (until - now) / 1000,
        lowered_cap=whole("lcap"),
        lowered_for=None if lapses is None else (lapses - now) / 1000,
        rates=None if rates is None else parse_windows_spec(rates),
        warming_for=None if since is None else (now - since) / 1000,
    )


def set_group_policy_argv(channels: str, change: GroupPolicyChange) -> tuple[Arg, ...]:
    """set_group_policy.lua's ARGV: the changed fields ('' deletes one)."""
    fields: list[Arg] = [channels]
    if change.cap is not KEEP:
        fields += ("cap", _value(change.cap))
    if change.rates is not KEEP:
        fields += ("rates", _rates(change.rates))
    return tuple(fields)


# -- views -------------------------------------------------------------------------------------


def usage_argv(limit: int) -> tuple[Arg, ...]:
    return (limit,)


def usage_result(reply: list[Any]) -> Usage:
    in_use, waiting, cap = reply
    return Usage(in_use=in_use, limit=cap, waiting=waiting)


def group_usage_result(reply: list[Any], group: GroupPlan) -> Usage:
    """group_usage.lua's reply; the cap is the configured one unless one was set at run time."""
    in_use, waiting, cap = reply
    return Usage(in_use=in_use, limit=group.cap or 0 if cap < 0 else cap, waiting=waiting)


def window_usage_argv(rates: RatePlan) -> tuple[Arg, ...]:
    return (
        windows_spec(rates.windows),
        round(rates.tz_offset * 1000),
        ",".join(map(str, rates.warmup)),
        1 if rates.midnight else 0,
    )


def window_usage_result(reply: list[Any]) -> list[WindowUsage]:
    return [
        WindowUsage(Window(amount, window_ms / 1000, calendar=bool(calendar)), used)
        for amount, window_ms, calendar, used in zip(*[iter(reply)] * 4, strict=True)
    ]


def holders_result(reply: list[Any], number: str) -> list[Holder]:
    now, items = reply[0], reply[1:]
    holders = []
    for index in range(0, len(items), 6):
        token, expiry, owner, ttl, deadline, since = items[index : index + 6]
        holders.append(
            Holder(
                number,
                token.decode(),
                owner.decode(),
                (expiry - now) / 1000,
                ttl / 1000,
                (deadline - now) / 1000 if deadline else None,
                max(now - since, 0) / 1000 if since else 0.0,
            )
        )
    return holders


def reset_number_argv(number: str, channels: str) -> tuple[Arg, ...]:
    return (number, channels)


def reset_number_result(reply: list[Any]) -> tuple[int, int]:
    held, waiting = reply
    return int(held), int(waiting)


def fence_lift_argv(marker: str) -> tuple[Arg, ...]:
    return (marker,)


# -- pools -------------------------------------------------------------------------------------


def member_spec(spec: MemberSpec, tag: str) -> str:
    """A pool member's spec as pick.lua reads it (tab-separated); ``tag``: its keys' tag. A
    paid period adds two fields after the region (when it lapses and when its warning window
    begins, in ms since the epoch); a spec without them (none tracked, or written by an older
    version) has 7 + 4 per group fields, one with them 9 + 4 per group."""
    plan = spec.plan
    fields: list[str] = [
        tag,
        str(spec.limit),
        windows_spec(plan.windows),
        ",".join(map(str, plan.warmup)),
        "1" if plan.midnight else "0",
        spec.area,
        spec.region,
    ]
    if epoch_ms(spec.lapses_at) > 0:
        fields += (str(epoch_ms(spec.lapses_at)), str(max(epoch_ms(spec.warn_at), 0)))
    for group in plan.groups:
        cap = "" if group.cap is None else str(group.cap)
        fields += (group.group, cap, str(group.reserve), windows_spec(group.windows))
    return "\t".join(fields)


def pool_update_argv(
    prefix: str, specs: Mapping[str, str], remove: Sequence[str], policy: int
) -> tuple[Arg, ...]:
    """pool_update.lua's ARGV: ``specs`` each number to add -> its spec (:func:`member_spec`)."""
    args: list[Arg] = [prefix, len(specs), policy]
    for number, spec in specs.items():
        args += (number, spec)
    return (*args, *remove)


def pool_members_result(reply: list[Any]) -> list[str]:
    return [number.decode() for number in reply]


def pick_argv(
    request: PickRequest, owner: str, prefix: str, channels: str, wait: bool
) -> tuple[Arg, ...]:
    """pick.lua's ARGV; ``owner`` as acquire's (a session lease names its record)."""
    call, near = request.call, request.near
    return (
        request.strategy,
        request.token,
        owner,
        ms(request.ttl),
        0 if request.max_hold is None else ms(request.max_hold),
        prefix,
        channels,
        round(call.tz_offset * 1000),
        call.callee or "",
        windows_spec(call.callee_windows) if call.callee else "",
        call.priority,
        request.tries,
        near[0],
        near[1],
        ms(request.sticky_ttl),
        1 if wait else 0,
        ms(request.ttl),
        request.pool,
        request.policy,
        epoch_ms(request.calendar),
    )


def pick_result(reply: list[Any], wait: bool) -> PickResult:
    if reply[0] == Outcome.STALE:
        return PickResult(Outcome.STALE)
    if reply[0] == 0:  # others wait ahead: in line behind them, or refused
        return PickResult(Outcome.QUEUED if wait else Outcome.REFUSED)
    if reply[0] == 2:
        retry_in = None if reply[1] < 0 else reply[1] / 1000
        if len(reply) == 2:
            return PickResult(Outcome.REFUSED, None, retry_in)
        return PickResult(
            Outcome.REFUSED, None, retry_in, fenced=reply[2] == b"f", lapsed=reply[2] == b"l"
        )
    return PickResult(Outcome(reply[0]), reply[1].decode())


def pool_leave_argv(owner: str, token: str, channels: str, pool: str) -> tuple[Arg, ...]:
    return (owner, token, channels, pool)


# -- the published policy ----------------------------------------------------------------------


def policy_publish_argv(
    expected: int, digest: str, document: str, by: str, comment: str, kept: int, floor: int
) -> tuple[Arg, ...]:
    return (expected, digest, document, by, comment, kept, floor)


def policy_publish_result(
    reply: list[Any], digest: str, document: str, by: str, comment: str
) -> Published | int:
    """The version published, or (nothing written) the version in force."""
    if reply[0] == 0:
        return int(reply[1])
    return Published(int(reply[1]), digest, document, reply[2] / 1000, by, comment, reply[2])


def policy_read_result(reply: list[Any]) -> tuple[Published | None, list[Published]]:
    """The policy in force (None: none published) and the versions it replaced read."""
    if not reply:
        return None, []
    return _published(reply[0]), [_published(entry) for entry in reply[1:]]


def _published(raw: bytes) -> Published:
    version, digest, at, by, comment, document = raw.decode().split("\t", 5)
    return Published(int(version), digest, document, int(at) / 1000, by, comment, int(at))


# -- the codecs, by function -------------------------------------------------------------------

_OWNER = "owner"
_CHANNELS = "channel prefix"
_VERSION = "the stamp of the published policy"
_VERSION_PUBLISHED = "the stamp of the version published"

CODECS: Mapping[str, Codec] = {
    "acquire": Codec(
        NUMBER_KEYS,
        (
            "token",
            _OWNER,
            "limit",
            "ttl_ms",
            "max_hold_ms",
            "enqueue",
            "number",
            _CHANNELS,
            _VERSION,
            "rate windows",
            "time zone offset",
            "warm-up",
            "midnight",
            "callee windows",
        ),
        GROUP_KEYS,
        "per group",
        required=9,
        encode=acquire_argv,
        decode=acquire_result,
    ),
    "release": Codec(
        NUMBER_KEYS,
        ("token", "releasing owner", "number", _CHANNELS, "pool load key", "pool name"),
        GROUP_KEYS,
        required=4,
        encode=release_argv,
        decode=release_result,
    ),
    "batch": Codec(NUMBER_KEYS, (), GROUP_KEYS, "per operation", encode=batch_argv),
    "abandon": Codec(
        NUMBER_KEYS, ("token", _OWNER, "number", _CHANNELS), GROUP_KEYS, encode=abandon_argv
    ),
    "renew": Codec(
        NUMBER_KEYS,
        (_OWNER, "number", _CHANNELS, "ttl_ms"),
        GROUP_KEYS,
        "tokens",
        encode=renew_argv,
    ),
    "restore": Codec(
        NUMBER_KEYS,
        ("token", _OWNER, "ttl_ms", "max_hold_ms left", "limit", "number", "age_ms"),
        GROUP_KEYS,
        encode=restore_argv,
    ),
    "keepalive": Codec(
        ("session record",),
        ("session", "ttl_ms", "end"),
        required=2,
        encode=keepalive_argv,
    ),
    "release_owner": Codec(
        NUMBER_KEYS, (_OWNER, "number", _CHANNELS), GROUP_KEYS, encode=release_owner_argv
    ),
    "release_owner_lines": Codec(
        ("line order", "line lapses"),
        (_OWNER, _CHANNELS, "pool name"),
        encode=release_owner_lines_argv,
    ),
    "set_policy": Codec(
        NUMBER_KEYS, ("number", _CHANNELS), GROUP_KEYS, "field value pairs", encode=set_policy_argv
    ),
    "get_policy": Codec(NUMBER_KEYS, (), GROUP_KEYS, decode=get_policy_result),
    "set_group_policy": Codec(
        ("GH", "GW", "GP"),
        (_CHANNELS,),
        argv_rest="field value pairs",
        encode=set_group_policy_argv,
    ),
    "group_usage": Codec(("GH", "GW", "GP"), (), decode=group_usage_result),
    "usage": Codec(NUMBER_KEYS, ("limit",), GROUP_KEYS, encode=usage_argv, decode=usage_result),
    "window_usage": Codec(
        NUMBER_KEYS,
        ("rate windows", "time zone offset", "warm-up", "midnight"),
        GROUP_KEYS,
        encode=window_usage_argv,
        decode=window_usage_result,
    ),
    "holders": Codec(NUMBER_KEYS, (), GROUP_KEYS, decode=holders_result),
    "oldest_wait": Codec(NUMBER_KEYS, (), GROUP_KEYS),
    "reset_number": Codec(
        NUMBER_KEYS,
        ("number", _CHANNELS),
        GROUP_KEYS,
        encode=reset_number_argv,
        decode=reset_number_result,
    ),
    "fence_lift": Codec((), ("fence marker",), encode=fence_lift_argv),
    "pick": Codec(
        (*POOL_KEYS, "S"),
        (
            "strategy",
            "token",
            _OWNER,
            "ttl_ms",
            "max_hold_ms",
            "key prefix",
            _CHANNELS,
            "time zone offset",
            "callee",
            "callee windows",
            "priority",
            "tries",
            "callee area",
            "callee region",
            "sticky_ms",
            "wait",
            "line_ms",
            "pool name",
            _VERSION,
            "calendar",
        ),
        encode=pick_argv,
        decode=pick_result,
    ),
    "pool_update": Codec(
        (*POOL_KEYS[:3], "S"),
        ("key prefix", "adding", _VERSION),
        argv_rest="number spec pairs",
        encode=pool_update_argv,
    ),
    "pool_members": Codec(POOL_KEYS[:3], (), decode=pool_members_result),
    "policy_publish": Codec(
        ("D", "DH", "S"),
        ("expected", "digest", "document", "by", "comment", "kept", "floor"),
        encode=policy_publish_argv,
        decode=policy_publish_result,
    ),
    "policy_read": Codec(
        ("D", "DH"), ("how many replaced versions", "newer than"), decode=policy_read_result
    ),
    "policy_stamp": Codec(
        ("S",),
        (_VERSION_PUBLISHED,),
        argv_rest="the stamps of other slots of the same node",
        decode=int,
    ),
    "pool_leave": Codec(
        POOL_KEYS[:1], (_OWNER, "token", _CHANNELS, "pool name"), encode=pool_leave_argv
    ),
}
