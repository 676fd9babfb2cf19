"""The package layout keeps its promise: imports flow one way and nothing imports in a circle.

docs/architecture.md draws the layers; this test is what keeps the drawing true. Every
import counts — at module level, inside a function (a lazy import is still a dependency)
and under `if TYPE_CHECKING:` (a type-only circle is still a circle a reader has to untangle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Highest layer first. A module may import from its own layer and from any layer below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("entry points", ("rotator.cli", "rotator.aws_lambda", "rotator.assembly")),
    ("operations", ("rotator.ops",)),
    ("engine", ("rotator.engine",)),
    ("config", ("rotator.config",)),
    ("clients, stores, backends, verification",
     ("rotator.motherduck", "rotator.state", "rotator.verify", "backends")),
    ("basics", ("rotator.errors", "rotator.secret", "rotator.durations", "rotator.netpolicy",
                "rotator.log", "rotator.events", "rotator.tables", "rotator.schedule",
                "rotator.util", "rotator")),
]
# The simulator stands beside the tool, not under it: it may use the basics, and only the
# command line (its `rotator simulator` subcommand) may import it.
SIMULATOR = "rotator.simulator"

TOP_LEVEL_MODULE_LIMIT = 12


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in ("rotator", "backends"):
        for path in (REPO / root).rglob("*.py"):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported rotator/backends module, line) for every import statement in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            # `from pkg import mod` depends on pkg.mod; `from mod import name` on mod itself
            targets = [
                f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in MODULES else stem
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target in MODULES and target != name:
                yield target, node.lineno


GRAPH: dict[str, set[str]] = {name: {t for t, _ in _imports(name, p)} for name, p in MODULES.items()}


def _layer(module: str) -> int | None:
    """Index into LAYERS (0 = highest) of the longest matching prefix."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def test_every_module_has_a_layer() -> None:
    """A new subpackage or top-level module is placed in the picture on purpose."""
    unplaced = [m for m in MODULES if not m.startswith(SIMULATOR) and _layer(m) is None]
    assert unplaced == [], f"add these to LAYERS (and docs/architecture.md): {unplaced}"


def test_imports_flow_down_the_layers() -> None:
    upward: list[str] = []
    for name, path in MODULES.items():
        if name.startswith(SIMULATOR):
            continue
        mine = _layer(name)
        assert mine is not None
        for target, line in _imports(name, path):
            if target.startswith(SIMULATOR):
                continue  # checked below
            theirs = _layer(target)
            assert theirs is not None
            if theirs < mine:
                upward.append(
                    f"{path.relative_to(REPO)}:{line}: {LAYERS[mine][0]} imports "
                    f"{target} ({LAYERS[theirs][0]})"
                )
    assert upward == [], "imports against the layers:\n" + "\n".join(upward)


def test_the_simulator_stands_apart() -> None:
    basics = len(LAYERS) - 1
    wrong: list[str] = []
    for name, path in MODULES.items():
        inside = name.startswith(SIMULATOR)
        for target, line in _imports(name, path):
            if target.startswith(SIMULATOR) == inside:
                continue
            where = f"{path.relative_to(REPO)}:{line}"
            if inside and _layer(target) != basics:
                wrong.append(f"{where}: the simulator imports {target}")
            if not inside and name != "rotator.cli" and not name.startswith("rotator.cli."):
                wrong.append(f"{where}: {name} imports the simulator")
    assert wrong == [], "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
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


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a planted a -> b -> c -> a circle is reported."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", ["rotator", "backends"])
def test_top_level_stays_small(package: str) -> None:
    """Families live in subpackages; the top level holds the basics and the entry points."""
    modules = [p.name for p in (REPO / package).glob("*.py")]
    assert len(modules) <= TOP_LEVEL_MODULE_LIMIT, sorted(modules)
