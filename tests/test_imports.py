"""The library's import graph has no circle: the imports of src/scisr's modules, read with ast, point one way.

Counted: every import of a module, at its top level and inside functions alike (a late import inside a function
still ties the two modules together; none is needed to break a circle).
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src"


def module_name(path: Path, src: Path = SRC) -> str:
    """scisr.a.b for src/scisr/a/b.py, scisr.a for src/scisr/a/__init__.py."""
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(src: Path = SRC, every: bool = False) -> dict[str, set[str]]:
    """{module: the scisr modules it imports at import time (TYPE_CHECKING blocks included; function bodies too
    when `every`)}.

    `from a import b` points at the module a.b when there is one, else at a; relative imports are resolved.
    A module's package is not counted as imported by it (Python runs it first, but it is no edge of the code).
    """
    files = {module_name(p, src): p for p in sorted(src.rglob("*.py"))}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree) if every else module_level(tree):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def module_level(tree: ast.AST):
    """Every node of `tree` outside function bodies."""
    for node in ast.iter_child_nodes(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield node
            yield from module_level(node)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once every edge out is explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_library_imports_have_no_circle():
    graph = import_graph(every=True)
    assert len(graph) > 50 and "scisr.train.job" in graph["scisr.train.run"]  # the graph was read
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_training_job_launcher_and_run_stand_apart():
    graph = import_graph()
    assert "scisr.train.run" not in graph["scisr.train.launcher"]
    assert "scisr.train.launcher" not in graph["scisr.train.job"] and "scisr.train.run" not in graph["scisr.train.job"]


def test_a_circle_is_found(tmp_path):
    package = tmp_path / "scisr"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from scisr.sub.a import f\n")
    (package / "sub" / "a.py").write_text("from .b import g\ndef f():\n    from scisr import late\n")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from scisr.sub import a\n"
    )
    (package / "late.py").write_text("import scisr.sub.a\n")  # imported inside a function: no circle
    graph = import_graph(tmp_path)
    assert graph["scisr.sub.a"] == {"scisr.sub.b"} and graph["scisr.sub.b"] == {"scisr.sub.a"}
    assert graph["scisr.late"] == {"scisr.sub.a"} and graph["scisr.sub"] == {"scisr.sub.a"}
    assert find_cycle(graph) == ["scisr.sub.a", "scisr.sub.b", "scisr.sub.a"]
