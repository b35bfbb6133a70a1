"""The import graph of ``bookingguard``: no cycle, and no import climbs a layer.

Every module under ``src/bookingguard`` is read with ``ast`` (nothing is imported):
imports at module level, inside functions and under ``if TYPE_CHECKING:`` all count.
An import names the module it loads: ``from bookingguard.db import models`` is an
edge to ``bookingguard.db.models``; ``from bookingguard.db import make_engine`` one to
``bookingguard.db``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import bookingguard

PACKAGE = "bookingguard"
SOURCE = Path(bookingguard.__file__).resolve().parent

#: Lowest first. A module may import its own layer's modules and any lower layer's.
#: The foundation (``errors``, the clock, URL masking, the token entry format, the metrics
#: catalog) has no dependency inside the package. ``tokens`` stores and checks tokens in
#: the database, a service beside ``review``. ``testing`` ships fakes of the services' ports: it may
#: import anything below ``bootstrap``. The top package's ``__init__`` only re-exports
#: public names of the services (lazily), so it sits with ``bootstrap``: above every
#: name it re-exports, below ``api`` and ``cli``, and nothing inside the package imports it.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "clock", "urls", "token_format", "metrics_catalog", "redis_scripts"}),
    frozenset({"settings"}),
    frozenset({"db"}),
    frozenset({"calcom", "resilience", "notify", "review", "tokens"}),
    frozenset({"booking", "monitoring"}),
    frozenset({"testing"}),
    frozenset({"bootstrap", "demo", "__init__"}),
    frozenset({"api", "cli", "__main__"}),
)

#: Parts of one layer that must not import each other.
PEERS_APART = (frozenset({"booking", "monitoring"}),)

#: Violations found in modules this change does not own, to be emptied when they are
#: fixed: (importing module, imported module).
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()


def _modules() -> dict[str, Path]:
    found = {}
    for path in SOURCE.rglob("*.py"):
        relative = path.relative_to(SOURCE).with_suffix("")
        parts = [PACKAGE, *relative.parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The package modules that ``module`` imports anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _resolve(alias.name, known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith(PACKAGE):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in known:
                    yield submodule
                else:
                    yield from _resolve(target, known)


def _resolve(name: str, known: dict[str, Path]) -> Iterator[str]:
    while name:
        if name in known:
            yield name
            return
        name = name.rpartition(".")[0]


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {
        module: {target for target in _imported(module, path, known) if target != module}
        for module, path in known.items()
    }


def _part(module: str) -> str:
    """The top-level part a module belongs to (``db``, ``settings``, the package's ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(module: str) -> int:
    part = _part(module)
    for index, layer in enumerate(LAYERS):
        if part in layer:
            return index
    raise AssertionError(f"{module} is in no layer: add {part!r} to LAYERS")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _violations(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    found = set()
    for module, targets in graph.items():
        for target in targets:
            climbs = _layer(target) > _layer(module)
            apart = any({_part(module), _part(target)} == set(peers) for peers in PEERS_APART)
            if climbs or apart:
                found.add((module, target))
    return found


def test_every_module_is_read() -> None:
    """The graph covers the package's modules, and every one sits in a layer."""
    graph = _graph()
    assert {"bookingguard.settings", "bookingguard.db.engine", "bookingguard.api.server"} <= set(
        graph
    )
    assert "bookingguard.db.models" in graph["bookingguard.tokens"]
    for module in graph:
        _layer(module)


def test_no_import_cycle() -> None:
    """No two modules import each other, directly or through others."""
    assert _cycles(_graph()) == []


def test_no_import_climbs_a_layer() -> None:
    """Imports point down the layers; booking and monitoring do not import each other."""
    found = _violations(_graph())
    assert sorted(found - KNOWN_VIOLATIONS) == []


def test_known_violations_are_still_there() -> None:
    """The allowlist holds only violations that still exist (a fixed one leaves it)."""
    assert sorted(KNOWN_VIOLATIONS - _violations(_graph())) == []


def test_a_climbing_import_is_caught() -> None:
    """The check itself fails on a settings module that imports the database layer."""
    graph = {"bookingguard.settings": {"bookingguard.db.models"}, "bookingguard.db.models": set()}
    assert _violations(graph) == {("bookingguard.settings", "bookingguard.db.models")}
    assert _cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]
