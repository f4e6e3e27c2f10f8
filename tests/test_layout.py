"""The package's layout: no import cycle among the modules of ``src/callthrottle``.

The import graph is read from the source with :mod:`ast` (nothing is imported), one edge per
``import`` or ``from ... import`` of another module of the package:

- Imports under ``if TYPE_CHECKING:`` are left out. They never run, so they cannot leave a module
  half initialised, and annotations naming each other's types (a protocol and the models it
  returns) are a normal thing between parts that depend on each other's *types* only.
- Imports anywhere else count, including those inside a function or under
  ``if __name__ == "__main__":``. Such an import runs later, not never: the module still needs
  the other one to do its work, and an import moved into a function only to dodge a cycle is
  still a cycle in the design (and fails the day someone moves it back to the top).
- Importing ``a.b.c`` also runs the ``__init__`` of each package on the way (``a.b``) that is
  not a package of the importing module itself (those are already being imported), so those
  packages are edges too. ``from a import b`` is an edge to the submodule ``a.b`` when there is
  one.

Run as a script (``python -m tests.test_layout``), it prints the largest modules and classes:
a report, not a test (no size is asserted).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "callthrottle"

Graph = dict[str, set[str]]


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` (found under ``root``) by dotted name."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node`` (at any depth), except those that run only for the
    type checker."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _imports(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _imports(child)


def _targets(statement: ast.Import | ast.ImportFrom, name: str, is_package: bool) -> list[str]:
    """The dotted names ``statement`` in module ``name`` imports (some may not be modules)."""
    if isinstance(statement, ast.Import):
        return [alias.name for alias in statement.names]
    base = statement.module or ""
    if statement.level:
        parts = name.split(".") if is_package else name.split(".")[:-1]
        parts = parts[: len(parts) - statement.level + 1]
        base = ".".join([*parts, base] if base else parts)
    return [base, *(f"{base}.{alias.name}" for alias in statement.names)]


def import_graph(root: Path, package: str) -> Graph:
    """Module -> the package's modules it imports (see the module docstring for the rules)."""
    known = modules(root, package)
    graph: Graph = {}
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        own = name.split(".") if is_package else name.split(".")[:-1]
        ancestors = {".".join(own[:i]) for i in range(1, len(own) + 1)}
        edges: set[str] = set()
        for statement in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in _targets(statement, name, is_package):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # each package on the way runs its __init__
                    step = ".".join(parts[:i])
                    if step in known and step not in ancestors:
                        edges.add(step)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_a_cycle(graph, group) for group in groups]


def _a_cycle(graph: Graph, group: set[str]) -> list[str]:
    """The shortest way from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def test_no_import_cycle_in_the_package() -> None:
    found = cycles(import_graph(SRC, PACKAGE))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_the_graph_sees_the_package() -> None:
    """The graph holds every module and the imports one can read in them (so that an empty or
    blind graph cannot pass the test above)."""
    graph = import_graph(SRC, PACKAGE)
    assert set(graph) == set(modules(SRC, PACKAGE))
    assert {"callthrottle.cli._app", "callthrottle.sync", "callthrottle.backends.redis"} <= set(
        graph
    )
    assert "callthrottle._throttle" in graph["callthrottle"]
    assert "callthrottle._line" in graph["callthrottle._throttle"]
    assert "callthrottle.cli._app" in graph["callthrottle.cli"]  # imported inside main()


def _write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_rules_on_a_small_package(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import A\n",
            # a -> b at the top; b -> a only for the type checker: no cycle
            "pkg/a.py": "from . import b\nA = 1\n",
            "pkg/b.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n"
                "else:\n    import json\n"
            ),
            # c -> d at the top; d -> c inside a function: a cycle
            "pkg/c.py": "from .sub.d import run\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/d.py": "def run() -> None:\n    from ..c import run\n",
            # e -> sub.f under __main__: an edge too (and to the package sub on the way)
            "pkg/e.py": "if __name__ == '__main__':\n    import pkg.sub.f\n",
            "pkg/sub/f.py": "import os\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": set(),
        "pkg.c": {"pkg.sub", "pkg.sub.d"},
        "pkg.sub": set(),
        "pkg.sub.d": {"pkg.c"},
        "pkg.e": {"pkg.sub", "pkg.sub.f"},
        "pkg.sub.f": set(),
    }
    assert cycles(graph) == [["pkg.c", "pkg.sub.d", "pkg.c"]]


def _sizes() -> None:
    """Print the longest modules and classes (lines)."""
    rows = []
    for name, path in modules(SRC, PACKAGE).items():
        text = path.read_text(encoding="utf-8")
        rows.append((len(text.splitlines()), "module", name))
        rows.extend(
            ((node.end_lineno or node.lineno) - node.lineno + 1, "class", f"{name}.{node.name}")
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.ClassDef)
        )
    for lines, kind, name in sorted(rows, reverse=True)[:20]:
        sys.stdout.write(f"{lines:6d}  {kind:6s}  {name}\n")


if __name__ == "__main__":
    _sizes()
