"""Each Lua function's header comment says what its KEYS and ARGV are, position by position;
the backend's codec for it (``backends/_codec.py``) says what Python sends there. These read
every header and hold the two to each other, and check that each encoder puts each value where
its codec says: a header, a codec or an encoder that moves alone fails here.

A header names a position as ``KEYS[n] <label>...`` or ``ARGV[n] <label>...``, the positions
from ``n`` on as ``ARGV[n..] <label>...``, a list of keys as ``KEYS: H Q W ..., then <label>``,
and no keys or arguments as ``KEYS: none`` / ``ARGV: none``. The label is the codec's name for
the position; the text may go on after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources

import pytest
from redis.crc import key_slot

from callthrottle._pools import MemberSpec
from callthrottle._rates import NO_RATES, GroupPlan, RatePlan, Window
from callthrottle.backends import GroupPolicyChange, PolicyChange, RuntimePolicy
from callthrottle.backends._codec import (
    CODECS,
    Codec,
    abandon_argv,
    acquire_argv,
    batch_argv,
    end_session_argv,
    fence_lift_argv,
    get_policy_result,
    keepalive_argv,
    member_spec,
    pick_argv,
    pick_result,
    pool_leave_argv,
    pool_update_argv,
    release_argv,
    release_owner_argv,
    release_owner_lines_argv,
    renew_argv,
    reset_number_argv,
    restore_argv,
    set_group_policy_argv,
    set_policy_argv,
    usage_argv,
    window_usage_argv,
)
from callthrottle.backends._keys import KeySpace
from callthrottle.backends._requests import AcquireRequest, PickRequest
from callthrottle.backends._results import Outcome, PickResult

LUA = resources.files("callthrottle.backends").joinpath("lua")
FUNCTIONS = sorted(
    entry.name[:-4]
    for entry in LUA.iterdir()
    if entry.name.endswith(".lua") and not entry.name.startswith("_")
)
POSITION = re.compile(r"\b(KEYS|ARGV)\[(\d+)(\.\.)?\]\s*")
KEY_LIST = re.compile(r"\bKEYS: (none\b|[A-Z]+(?: [A-Z]+)*)(?:\s*(?:\(.*?\)\s*)?, then (.*))?")
NONE = re.compile(r"\b(KEYS|ARGV): none\b")


@dataclass
class Declared:
    """What one header says of KEYS or ARGV: labelled text by position, and the rest."""

    positions: dict[int, str] = field(default_factory=dict)
    rest: tuple[int, str] | None = None
    none: bool = False


def header(function: str) -> str:
    """The file's leading comment, as one line of text."""
    lines = []
    for line in LUA.joinpath(f"{function}.lua").read_text(encoding="utf-8").splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:].strip())
    return " ".join(lines)


def declared(text: str) -> dict[str, Declared]:
    found = {"KEYS": Declared(), "ARGV": Declared()}
    marks = list(POSITION.finditer(text))
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(text)
        what, position, onward = mark.group(1), int(mark.group(2)), mark.group(3)
        said = text[mark.end() : end]
        side = found[what]
        if onward:
            assert side.rest is None, f"two {what}[n..] in one header"
            side.rest = (position, said)
        else:
            assert position not in side.positions, f"{what}[{position}] named twice"
            side.positions[position] = said
    listed = KEY_LIST.search(text)
    if listed is not None and listed.group(1) != "none":
        keys = found["KEYS"]
        assert not keys.positions, "KEYS both listed and numbered"
        keys.positions = dict(enumerate(listed.group(1).split(), start=1))
        if listed.group(2):
            keys.rest = (len(keys.positions) + 1, listed.group(2))
    for none in NONE.finditer(text):
        found[none.group(1)].none = True
    return found


def starts_with_label(said: str, label: str) -> bool:
    return said.startswith(label) and not said[len(label) : len(label) + 1].isalnum()


def check(what: str, side: Declared, labels: tuple[str, ...], rest: str) -> list[str]:
    problems = []
    if not labels and not rest and not side.none:
        problems.append(f"{what}: the codec sends none; the header should say '{what}: none'")
    if side.none and (labels or rest):
        problems.append(f"{what}: the header says none; the codec sends {labels} {rest!r}")
    numbered = sorted(side.positions)
    if numbered != list(range(1, len(labels) + 1)):
        problems.append(f"{what}: the header names positions {numbered}; the codec {labels}")
    for position, label in enumerate(labels, start=1):
        said = side.positions.get(position)
        if said is not None and not starts_with_label(said, label):
            problems.append(f"{what}[{position}]: the header says {said[:40]!r}; codec {label!r}")
    if rest:
        if side.rest is None:
            problems.append(f"{what}: the codec sends more from {len(labels) + 1} on ({rest!r})")
        else:
            position, said = side.rest
            if position != len(labels) + 1 or not starts_with_label(said, rest):
                problems.append(f"{what}[{position}..]: header {said[:40]!r}; codec {rest!r}")
    elif side.rest is not None:
        problems.append(f"{what}[{side.rest[0]}..]: in the header, not in the codec")
    return problems


def test_every_function_of_the_library_has_a_codec() -> None:
    assert sorted(CODECS) == FUNCTIONS


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_header_names_the_keys_and_arguments_its_codec_sends(function: str) -> None:
    codec = CODECS[function]
    found = declared(header(function))
    problems = check("KEYS", found["KEYS"], codec.keys, codec.keys_rest)
    problems += check("ARGV", found["ARGV"], codec.argv, codec.argv_rest)
    assert not problems, f"{function}.lua and its codec disagree:\n" + "\n".join(problems)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_header_says_what_it_returns(function: str) -> None:
    assert re.search(r"\bReturns\b", header(function)), f"{function}.lua: no 'Returns'"


def test_a_header_that_drifted_is_caught() -> None:
    """The check itself, on a header with two arguments swapped and one left out."""
    text = "KEYS: H Q W M P R C, then the group keys ARGV[1] owner, ARGV[2] token Returns 1."
    found = declared(text)
    codec = CODECS["abandon"]
    assert not check("KEYS", found["KEYS"], codec.keys, codec.keys_rest)
    problems = check("ARGV", found["ARGV"], codec.argv, codec.argv_rest)
    assert any("ARGV[1]" in problem for problem in problems)
    assert any("positions [1, 2]" in problem for problem in problems)


# -- each encoder puts each value where its codec says ------------------------------------------

GROUP = GroupPlan("tenant:acme", 5, 1, (Window(9, 60.0),))
RATES = RatePlan(
    (Window(100, 3600.0),), (10, 20), True, groups=(GROUP,), tz_offset=3600.0, priority=1
)


def by_label(codec: Codec, argv: tuple[object, ...]) -> tuple[dict[str, object], list[object]]:
    """The encoded ARGV by the codec's labels, and what follows them."""
    return dict(zip(codec.argv, argv, strict=False)), list(argv[len(codec.argv) :])


def test_acquire_on_the_hot_path_sends_its_required_arguments_only() -> None:
    codec = CODECS["acquire"]
    request = AcquireRequest("+1", "t1", "o1", 3, 2.0, None, policy=7)
    argv = acquire_argv(request, "o1", True, "ch:")
    assert len(argv) == codec.required
    assert by_label(codec, argv)[0] == {
        "token": "t1", "owner": "o1", "limit": 3, "ttl_ms": 2000, "max_hold_ms": 0,
        "enqueue": 1, "number": "+1", "channel prefix": "ch:",
        "the stamp of the published policy": 7,
    }  # fmt: skip


def test_acquire_with_rates_and_a_group() -> None:
    codec = CODECS["acquire"]
    argv = acquire_argv(AcquireRequest("+1", "t1", "o1", 3, 2.0, 30.0, RATES), "o1", False, "ch:")
    named, rest = by_label(codec, argv)
    assert named == {
        "token": "t1", "owner": "o1", "limit": 3, "ttl_ms": 2000, "max_hold_ms": 30000,
        "enqueue": 0, "number": "+1", "channel prefix": "ch:",
        "the stamp of the published policy": 0, "rate windows": "100:3600000:0",
        "time zone offset": 3600000, "warm-up": "10,20", "midnight": 1, "callee windows": "",
    }  # fmt: skip
    # per group: cap, reserve, windows, name; then whether the call may take the reserves
    assert rest == [5, 1, "9:60000:0", "tenant:acme", 1]


@pytest.mark.parametrize(
    ("function", "argv", "expected", "rest"),
    [
        ("release", release_argv("t", "o", "+1", "ch:", None, None),
         {"token": "t", "releasing owner": "o", "number": "+1", "channel prefix": "ch:"}, []),
        ("release", release_argv("t", "o", "+1", "ch:", "k:l", "p"),
         {"token": "t", "releasing owner": "o", "number": "+1", "channel prefix": "ch:",
          "pool load key": "k:l", "pool name": "p"}, []),
        ("abandon", abandon_argv("t", "o", "+1", "ch:"),
         {"token": "t", "owner": "o", "number": "+1", "channel prefix": "ch:"}, []),
        ("renew", renew_argv("o", "+1", "ch:", 1.5, ["t1", "t2"]),
         {"owner": "o", "number": "+1", "channel prefix": "ch:", "ttl_ms": 1500}, ["t1", "t2"]),
        ("restore", restore_argv(AcquireRequest("+1", "t", "o", 4, 2.0, 1.0), "o", 0.25),
         {"token": "t", "owner": "o", "ttl_ms": 2000, "max_hold_ms left": 1000, "limit": 4,
          "number": "+1", "age_ms": 250}, []),
        ("keepalive", keepalive_argv("s", 3.0), {"session": "s", "ttl_ms": 3000}, []),
        ("keepalive", end_session_argv("s"), {"session": "s", "ttl_ms": 1, "end": 1}, []),
        ("release_owner", release_owner_argv("o", "+1", "ch:"),
         {"owner": "o", "number": "+1", "channel prefix": "ch:"}, []),
        ("release_owner_lines", release_owner_lines_argv("o", "ch:", "p"),
         {"owner": "o", "channel prefix": "ch:", "pool name": "p"}, []),
        ("set_policy", set_policy_argv("+1", "ch:", PolicyChange(cap=3, until=2.0, state=None)),
         {"number": "+1", "channel prefix": "ch:"}, ["cap", "3", "state", "", "until", "+2000"]),
        ("set_policy", set_policy_argv("+1", "ch:", PolicyChange(lowered=(2, 1.5), warming=True,
                                                                  reaction=True)),
         {"number": "+1", "channel prefix": "ch:"},
         ["lcap", "2", "luntil", "+1500", "since", "now", "reaction", "1"]),
        ("set_policy", set_policy_argv("+1", "ch:", PolicyChange(lowered=None, warming=None,
                                                                  rates=None)),
         {"number": "+1", "channel prefix": "ch:"},
         ["lcap", "", "luntil", "", "rates", "", "since", ""]),
        ("set_group_policy", set_group_policy_argv("ch:", GroupPolicyChange(rates=(Window(2, 1.0),))),
         {"channel prefix": "ch:"}, ["rates", "2:1000:0"]),
        ("usage", usage_argv(7), {"limit": 7}, []),
        ("window_usage", window_usage_argv(RATES),
         {"rate windows": "100:3600000:0", "time zone offset": 3600000, "warm-up": "10,20",
          "midnight": 1}, []),
        ("reset_number", reset_number_argv("+1", "ch:"), {"number": "+1", "channel prefix": "ch:"},
         []),
        ("fence_lift", fence_lift_argv("x:fence"), {"fence marker": "x:fence"}, []),
        ("pool_update", pool_update_argv("x:", {"+1": "spec1"}, ["+2"], 4),
         {"key prefix": "x:", "adding": 1, "the stamp of the published policy": 4},
         ["+1", "spec1", "+2"]),
        ("pool_leave", pool_leave_argv("o", "t", "ch:", "p"),
         {"owner": "o", "token": "t", "channel prefix": "ch:", "pool name": "p"}, []),
        ("batch", batch_argv([("a", ("t", "o"), None), ("r", ("u",), None)]), {},
         ["a", 2, "t", "o", "r", 1, "u"]),
    ],
)  # fmt: skip
def test_each_encoder_puts_each_value_where_its_codec_says(
    function: str, argv: tuple[object, ...], expected: dict[str, object], rest: list[object]
) -> None:
    codec = CODECS[function]
    assert by_label(codec, argv) == (expected, rest)
    assert len(expected) >= (len(codec.argv) if codec.required is None else codec.required)


def test_get_policy_reads_the_fields_of_the_policy_key() -> None:
    now = 1_000_000
    reply = [
        now, b"cap", b"5", b"state", b"cooling", b"reason", b"477", b"until", b"1002000",
        b"lcap", b"2", b"luntil", b"1000500", b"rates", b"2:1000:0", b"since", b"997000",
    ]  # fmt: skip
    assert get_policy_result(reply) == RuntimePolicy(
        cap=5, state="cooling", reason="477", until=2.0, lowered_cap=2, lowered_for=0.5,
        rates=(Window(2, 1.0),), warming_for=3.0,
    )  # fmt: skip
    assert get_policy_result([now]) == RuntimePolicy()


def test_pick() -> None:
    codec = CODECS["pick"]
    call = RatePlan(callee="+2", callee_windows=(Window(1, 60.0),), tz_offset=-3600.0, priority=2)
    request = PickRequest(
        "p", "t", "o", 2.0, None, "sticky", 16, call, ("0571", "CN"), 60.0, policy=3,
        calendar=1_767_225_600.25,
    )  # fmt: skip
    argv = pick_argv(request, "o", "x:", "ch:", True)
    assert by_label(codec, argv) == (
        {
            "strategy": "sticky", "token": "t", "owner": "o", "ttl_ms": 2000, "max_hold_ms": 0,
            "key prefix": "x:", "channel prefix": "ch:", "time zone offset": -3600000,
            "callee": "+2", "callee windows": "1:60000:0", "priority": 2, "tries": 16,
            "callee area": "0571", "callee region": "CN", "sticky_ms": 60000, "wait": 1,
            "line_ms": 2000, "pool name": "p", "the stamp of the published policy": 3,
            "calendar": 1_767_225_600_250,
        },
        [],
    )  # fmt: skip


def test_a_member_spec_is_read_by_pick_field_by_field() -> None:
    spec = MemberSpec("t:acme", 4, RATES, "0571", "CN")
    assert member_spec(spec, "t:acme").split("\t") == [
        "t:acme", "4", "100:3600000:0", "10,20", "1", "0571", "CN",
        "tenant:acme", "5", "1", "9:60000:0",
    ]  # fmt: skip
    assert NO_RATES.windows == ()


def test_a_paid_period_goes_after_the_region_and_before_the_groups() -> None:
    """Its two instants in ms since the epoch; pick.lua tells the layouts apart by the count
    of fields (7 + 4 per group without them, 9 + 4 per group with them)."""
    spec = MemberSpec("t:acme", 4, RATES, "0571", "CN", 1_767_225_600.0, 1_766_620_800.0)
    fields = member_spec(spec, "t:acme").split("\t")
    assert fields == [
        "t:acme", "4", "100:3600000:0", "10,20", "1", "0571", "CN",
        "1767225600000", "1766620800000", "tenant:acme", "5", "1", "9:60000:0",
    ]  # fmt: skip
    assert (len(fields) - 7) % 4 == 2
    # (pick.lua reads whole non-negative ms: a warning window from before the epoch is open)
    early = member_spec(MemberSpec("*", 2, lapses_at=86_400.0, warn_at=-86_400.0), "*")
    assert early.split("\t")[7:] == ["86400000", "0"]
    plain = member_spec(MemberSpec("*", 2), "*").split("\t")
    assert plain == ["*", "2", "", "", "0", "", ""]
    assert (len(plain) - 7) % 4 == 0


def test_the_key_layout_builds_the_keys_the_codecs_name() -> None:
    """Each key the layout builds ends with its label's letter (H -> ':h', PM -> ':m', ...)."""
    space = KeySpace("x:", cluster=False)
    number_keys = space.number_keys("+8657188880001")
    assert [key[-2:] for key in number_keys] == [":h", ":q", ":w", ":m", ":p", ":r", ":r", "mp"]
    assert number_keys[-1] == space.stamp_key("+8657188880001") == "x:{policy}:stamp"
    assert CODECS["usage"].keys[:6] == ("H", "Q", "W", "M", "P", "R")
    callee = space.callee_keys("+8657188880001", "+8613800000000")
    assert callee[6] == "x:{+8657188880001}:c:+8613800000000"
    pool_keys = space.pool_keys("p1")
    assert [key[-1] for key in pool_keys] == [
        label[1].lower() for label in CODECS["pick"].keys[:-1]
    ]
    assert CODECS["pick"].keys[-1] == "S"  # the pool's slot's stamp
    group_keys = space.group_keys("tenant:acme", "t:acme")
    assert [key[-1] for key in group_keys] == ["h", "r", "w", "p"]
    assert [group_keys[0], group_keys[2], group_keys[3]] == [
        f"x:{{t:acme}}:g:tenant:acme:{label[1].lower()}" for label in CODECS["group_usage"].keys
    ]


def test_a_clusters_policy_stamp_is_on_the_slot_of_the_keys_it_fences() -> None:
    """Each hash tag's stamp key hashes to the tag's own slot (a function reads only its slot),
    and every slot has one stamp."""
    space = KeySpace("x:", cluster=True)
    for tag in ("+8657188880001", "t:acme", "k:trunk-400", "p:sales", "*", "policy"):
        assert key_slot(space.stamp_key(tag).encode()) == key_slot(f"x:{{{tag}}}:n".encode())
    stamps = space.stamp_keys()
    assert len(stamps) == 16384
    assert sorted(key_slot(key.encode()) for key in stamps) == list(range(16384))


def test_a_pick_refused_says_whether_it_was_fenced_or_every_number_lapsed() -> None:
    assert pick_result([2, 1500], False) == PickResult(Outcome.REFUSED, None, 1.5)
    assert pick_result([2, -1, b"f"], False) == PickResult(Outcome.REFUSED, fenced=True)
    assert pick_result([2, -1, b"l"], True) == PickResult(Outcome.REFUSED, lapsed=True)
