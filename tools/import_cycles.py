"""List the import cycles of a source tree, counting every ``import`` statement wherever it is.

    python tools/import_cycles.py [ROOT] [--package examples] [--package src/region_attention]

A cycle hidden by a function-level import (``def f(): from b import g`` in ``a`` while ``b`` imports ``a``) still
makes two modules depend on each other, so every ``import`` and ``from ... import`` statement counts here: at
module level, inside functions and classes, and under ``if TYPE_CHECKING:``. Importing ``a.b.c`` also runs the
``__init__`` of the packages ``a`` and ``a.b``, so those count as dependencies too, except the packages that
contain the importing module (Python has already run them when it runs that module). Only modules inside the
scanned packages count. The exit status is 1 when there is a cycle, 0 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = ["find_cycles", "import_graph", "main", "module_files", "strongly_connected"]


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file of every ``.py`` file under ``root / package`` (``src/pkg`` names ``pkg``)."""
    base = root / package
    top = base.parent
    modules: dict[str, Path] = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(top).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterable[str]:
    """Every dotted name an ``import`` statement of ``tree`` may load (``from a import b``: ``a`` and ``a.b``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the scanned modules its import statements run (see the module docstring)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
        targets: set[str] = set()
        for name in _imported_names(tree, module, path.name == "__init__.py"):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in modules and prefix not in own:
                    targets.add(prefix)
        graph[module] = targets
    return graph


def strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` (iterative), each sorted, in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return sorted(components)


def _shortest_cycle(graph: Mapping[str, set[str]], component: Sequence[str]) -> list[str]:
    """One shortest cycle through the first module of ``component`` (breadth first, inside the component)."""
    members, start = set(component), component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [start, start]


def find_cycles(root: Path, packages: Sequence[str]) -> list[list[str]]:
    """The import cycles among the modules of ``packages`` under ``root``: one shortest cycle (``[a, b, a]``)
    per strongly connected component of more than one module or with a module that imports itself."""
    modules: dict[str, Path] = {}
    for package in packages:
        modules.update(module_files(root, package))
    graph = import_graph(modules)
    return [
        _shortest_cycle(graph, component)
        for component in strongly_connected(graph)
        if len(component) > 1 or component[0] in graph[component[0]]
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "root",
        nargs="?",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="repository root (default: this repository)",
    )
    parser.add_argument(
        "--package",
        action="append",
        dest="packages",
        help="a package folder under ROOT to scan; repeat for more (default: examples)",
    )
    args = parser.parse_args(argv)
    cycles = find_cycles(args.root, args.packages or ["examples"])
    for cycle in cycles:
        print(" -> ".join(cycle))
    print(f"{len(cycles)} import cycle(s)")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
