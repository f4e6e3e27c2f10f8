"""Every decision is written twice, in Lua (Redis) and in Python (memory): each side names its
twin, so that a change to one leads to the other. The differential and retry tests check that
the twins behave the same; this checks that none is missing or misnamed."""

from __future__ import annotations

import inspect
import re
from importlib import resources

import pytest

from callthrottle.backends import MemoryBackend
from callthrottle.backends.redis import _SCRIPT_NAMES

LUA = resources.files("callthrottle.backends").joinpath("lua")
FUNCTIONS = sorted(
    entry.name[:-4]
    for entry in LUA.iterdir()
    if entry.name.endswith(".lua") and not entry.name.startswith("_")
)
TWIN_LINE = re.compile(r"^-- Python twin: (.+)")
PUBLIC = sorted(
    name
    for name, member in inspect.getmembers(MemoryBackend, inspect.isfunction)
    if not name.startswith("_")
)


def test_every_function_of_the_library_has_a_file() -> None:
    assert sorted(_SCRIPT_NAMES) == FUNCTIONS


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_lua_function_names_its_python_twin_which_names_it_back(function: str) -> None:
    first = LUA.joinpath(f"{function}.lua").read_text(encoding="utf-8").splitlines()[0]
    named = TWIN_LINE.match(first)
    assert named, f"{function}.lua does not start with '-- Python twin: MemoryBackend.<method>'"
    twins = re.findall(r"MemoryBackend\.(\w+)", named.group(1))
    assert twins, f"{function}.lua names no MemoryBackend method"
    for twin in twins:
        method = getattr(MemoryBackend, twin, None)
        assert method is not None, f"{function}.lua names MemoryBackend.{twin}, which is missing"
        assert f"``{function}.lua``" in (method.__doc__ or ""), (
            f"MemoryBackend.{twin} does not name its Lua twin {function}.lua"
        )


@pytest.mark.parametrize("method", PUBLIC)
def test_each_memory_method_names_its_lua_twin_or_says_it_has_none(method: str) -> None:
    doc = getattr(MemoryBackend, method).__doc__ or ""
    assert doc.startswith(("Lua twin: ", "Lua twins: ", "No Lua twin: ")), (
        f"MemoryBackend.{method} does not say what its Lua twin is"
    )
    for named in re.findall(r"``(\w+)\.lua``", doc):
        assert named in FUNCTIONS, f"MemoryBackend.{method} names {named}.lua, which is missing"
