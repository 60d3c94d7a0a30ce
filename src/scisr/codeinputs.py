"""The library files a script runs, found by reading its imports (stdlib only, nothing executed).

`rules/common.smk` declares these files as a rule's inputs, so editing a module reruns exactly the
jobs whose script reaches it. The walk starts at a script and follows, transitively:

- `import scisr.x.y` / `from scisr.x import y` (y counted when it is a submodule) / relative
  imports, at module level and inside functions (a deferred import still runs in the job);
- the `__init__.py` of every package on the way (importing `scisr.io.files` runs `scisr/__init__.py`
  and `scisr/io/__init__.py` first);
- modules loaded by name: a string constant that is exactly the dotted name of a module of the
  package (`importlib.import_module("scisr.io.dicom")`, `_lazy("scisr.io.fits", ...)`,
  `[python, "-m", "scisr.train.distributed"]`), except the names given to `logging.getLogger`.

Imports under `if TYPE_CHECKING:` never run and are skipped. Only files of `package` count:
third-party modules are not followed. This module must stay free of heavy imports: Snakemake
imports it while parsing the workflow.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

__all__ = ["code_files", "code_inputs"]


def _module_file(root: Path, dotted: str) -> Path | None:
    """The file of module `dotted` under `root` (a package's `__init__.py`), or None."""
    base = root.joinpath(*dotted.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    """Whether an `if` test is `TYPE_CHECKING` or `typing.TYPE_CHECKING`."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _logger_names(tree: ast.AST) -> set[int]:
    """ids of the string constants passed to `getLogger(...)` (logger names, not modules)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "getLogger":
                skipped.update(id(arg) for arg in node.args)
    return skipped


def _imported_names(tree: ast.Module, module: str, is_package: bool) -> list[str]:
    """Dotted names a module's source may import (absolute, relative resolved, or by name)."""
    skipped = _logger_names(tree)
    names: list[str] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = ".".join(p for p in (package, node.module or "") if p)
            else:
                base = node.module or ""
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
            names.append(node.value)
        stack.extend(ast.iter_child_nodes(node))
    return names


def code_files(script: str | os.PathLike, root: str | os.PathLike, package: str = "scisr") -> list[Path]:
    """Every file of `package` (found under `root`) that running `script` may execute, sorted.

    `root` is the folder holding the package (e.g. `src/`); paths come back resolved, so a link
    does not make two names for one file.
    """
    root = Path(root).resolve()
    seen: dict[str, Path] = {}
    todo: list[tuple[Path, str, bool]] = [(Path(script), "__main__", False)]
    while todo:
        path, module, is_package = todo.pop()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name in _imported_names(tree, module, is_package):
            if name != package and not name.startswith(package + "."):
                continue
            if not all(part.isidentifier() for part in name.split(".")):
                continue
            parts = name.split(".")
            # the module itself and every package above it run on import
            for depth in range(1, len(parts) + 1):
                dotted = ".".join(parts[:depth])
                if dotted in seen:
                    continue
                found = _module_file(root, dotted)
                if found is None:
                    break  # `from scisr.x import function`: the name is not a module
                seen[dotted] = found.resolve()
                todo.append((found, dotted, found.name == "__init__.py"))
    return sorted(set(seen.values()))


def code_inputs(
    script: str | os.PathLike, root: str | os.PathLike, start: str | os.PathLike | None = None
) -> list[str]:
    """`code_files` as a rule's inputs: paths relative to `start` (default: the working directory).

    Relative inputs keep the workflow's plan (and Snakemake's records of it) the same wherever the checkout lives.
    """
    return [os.path.relpath(path, start) for path in code_files(script, root)]
