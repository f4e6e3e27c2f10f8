"""Every decision is written twice, in Lua (Redis) and in Python (memory): each side names its
twin, so that a change to one leads to the other. The differential and retry tests check that
the twins behave the same; this checks that none is missing or misnamed."""

from __future__ import annotations

import ast
import inspect
import re
import sys
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


MEMORY = resources.files("callthrottle.backends").joinpath("memory")
MODULES = sorted(entry.name for entry in MEMORY.iterdir() if entry.name.endswith(".py"))
# "``name`` in ``file.lua``", or a list: "``a``, ``b`` and ``c`` in ``file.lua``"
NAMED_IN_LUA = re.compile(r"((?:``\w+``(?:, | and | or ))*``\w+``) in ``(\w+)\.lua``")


def lua_functions(file: str) -> set[str]:
    text = LUA.joinpath(f"{file}.lua").read_text(encoding="utf-8")
    return set(re.findall(r"^(?:local )?function (\w+)\(", text, re.MULTILINE))


def docstrings(source: str) -> list[tuple[str, str]]:
    tree = ast.parse(source)
    return [("module", ast.get_docstring(tree) or "")] + [
        (node.name, ast.get_docstring(node) or "")
        for node in ast.walk(tree)
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
    ]


@pytest.mark.parametrize("module", MODULES)
def test_each_helper_names_lua_functions_that_exist(module: str) -> None:
    source = MEMORY.joinpath(module).read_text(encoding="utf-8")
    for where, doc in docstrings(source):
        for names, file in NAMED_IN_LUA.findall(" ".join(doc.split())):
            assert LUA.joinpath(f"{file}.lua").is_file(), f"{module} ({where}) names {file}.lua"
            missing = set(re.findall(r"``(\w+)``", names)) - lua_functions(file)
            assert not missing, f"{module} ({where}) names {sorted(missing)} in {file}.lua"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_lua_function_is_named_by_the_module_of_its_twin(function: str) -> None:
    """A newcomer who reads a Lua file finds its twin's module by the file's name."""
    first = LUA.joinpath(f"{function}.lua").read_text(encoding="utf-8").splitlines()[0]
    named = TWIN_LINE.match(first)
    assert named
    for twin in re.findall(r"MemoryBackend\.(\w+)", named.group(1)):
        module = sys.modules[getattr(MemoryBackend, twin).__module__]
        assert f"``{function}.lua``" in " ".join((module.__doc__ or "").split()), (
            f"{module.__name__} (where MemoryBackend.{twin} is) does not name {function}.lua"
        )
