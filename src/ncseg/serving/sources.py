"""Which of ncseg's files the served model runs, read from the code itself: `model_code` and `model` and, one
import at a time, every ncseg module they import. A change to any of them is a change of the model
(registry.promote.fingerprint), and DVC's `register` stage depends on exactly them
(tests/registry/test_promote.py checks dvc.yaml). Training, data, CLI and registry bookkeeping code are not among
them, so editing those registers no new version.

The walk reads the imports at the top of each module (and in module-level `if`/`try` blocks, other than
`if TYPE_CHECKING:`), so the served code imports ncseg modules there and nowhere else: an import inside a function
would run unseen. Importing `ncseg.a.b` runs `ncseg/a/__init__.py` first, which is served too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # src/ncseg
ROOTS = ("ncseg.serving.model_code", "ncseg.serving.model")  # what MLflow runs to build the model, and the model


def served_sources() -> list[Path]:
    """Every file the served model runs, sorted: the roots and the ncseg modules they import, transitively."""
    seen: set[Path] = set()
    todo = [file for root in ROOTS for file in module_files(root)]
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        todo += [found for module in imported_modules(file) for found in module_files(module)]
    return sorted(seen)


def module_files(module: str) -> list[Path]:
    """The files importing `module` (ncseg.a.b) runs: each package's `__init__.py` on the way, then the module's
    own file; for `ncseg.a.b.name` where `name` is no module, those of `ncseg.a.b`. Nothing outside ncseg."""
    parts = module.split(".")
    if parts[0] != PACKAGE.name:
        return []
    files, folder = [], PACKAGE
    for part in parts[1:]:
        folder = folder / part
        if (folder / "__init__.py").is_file():
            files.append(folder / "__init__.py")
        elif folder.with_suffix(".py").is_file():
            files.append(folder.with_suffix(".py"))
            break
        elif not folder.is_dir():  # a name imported from a module or package, not a module itself
            break
    return files


def imported_modules(file: Path) -> list[str]:
    """The modules `file` imports at module level, absolute; `from a import b` names both `a` and `a.b` (`b` may be
    a submodule)."""
    package = ".".join(file.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    modules = []
    for node in module_level(ast.parse(file.read_text(), str(file)).body):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            modules += [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return modules


def module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements that run when a module is imported, through module-level `if` and `try` blocks, except
    `if TYPE_CHECKING:` (only a type checker reads it)."""
    statements = []
    for node in body:
        statements.append(node)
        if isinstance(node, ast.If) and not _is_type_checking(node.test):
            statements += module_level(node.body) + module_level(node.orelse)
        elif isinstance(node, ast.If):
            statements += module_level(node.orelse)
        elif isinstance(node, ast.Try):
            blocks = [node.body, *(handler.body for handler in node.handlers), node.orelse, node.finalbody]
            statements += [s for block in blocks for s in module_level(block)]
    return statements


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """`from ..a import b` in package ncseg.x.y names ncseg.x.a."""
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)
