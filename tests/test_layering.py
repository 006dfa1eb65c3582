"""The package's import graph: kernels sit below the primitive, and no two subpackages import each other.

Read statically from the source (every ``import``/``from … import``, including the lazy ones inside
functions), so a cycle hidden behind a function-level import fails here too. The layers, bottom up:
the internals (``ntkit._validation``, ``_config``, …), ``kernels``, ``ops`` (the primitive), then the
consumers (solvers, features, …), the estimators, and the command line on top.
"""

from __future__ import annotations

import ast
import pathlib

import ntkit

ROOT = pathlib.Path(ntkit.__file__).resolve().parent


def _unit(module: str) -> str:
    """``ntkit.solvers._eigenpro`` -> ``solvers``; ``ntkit._config`` -> ``_config``; ``ntkit`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_graph() -> dict[str, set[str]]:
    """``{unit: units it imports}`` over every module of the ntkit package (self-edges dropped)."""
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        module = ".".join(rel.parts)
        is_pkg = path.name == "__init__.py"
        if is_pkg:
            module = module[: -len(".__init__")]
        package = module if is_pkg else module.rsplit(".", 1)[0]
        src = _unit(module)
        targets = edges.setdefault(src, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{a.name}" for a in node.names] if target == "ntkit" else [target]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name == "ntkit" or name.startswith("ntkit."):
                    unit = _unit(name)
                    if unit != src:
                        targets.add(unit)
    return edges


def _reachable(edges, start):
    seen, stack = set(), [start]
    while stack:
        for nxt in edges.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def test_graph_is_read():
    edges = import_graph()
    assert "ops" in edges["solvers"] and "kernels" in edges["ops"]  # the reader sees real imports


def test_kernels_sit_below_the_primitive():
    edges = import_graph()
    above = {"ops", "solvers", "features", "estimators", "theory", "online", "explain", "ntk", "graphs",
             "distributed", "cli", "__init__"}
    assert not (_reachable(edges, "kernels") & above), sorted(_reachable(edges, "kernels") & above)


def test_no_import_cycles_between_subpackages():
    edges = import_graph()
    # the package root's __init__ re-exports subpackages; a subpackage importing ``ntkit`` itself is the cycle
    cycles = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in _reachable(edges, b)})
    assert not cycles, f"import cycles between units of ntkit: {cycles}"
