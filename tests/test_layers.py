"""The package's layers, held: which layer may import which, no import circle (imports inside
functions counted; those only for type checkers not), the heavy libraries of the doors kept in
the doors, and every package's __init__ empty (importing a package costs nothing)."""

from __future__ import annotations

import ast
from pathlib import Path

import imgroute

PACKAGE = Path(imgroute.__file__).parent
DOORS = ("imgroute.cli", "imgroute.serve")
# What each layer must never import (any module under these names).
FORBIDDEN = {
    "imgroute.pricing": ("imgroute.net", "imgroute.store", "imgroute.jobs", "imgroute.batches", "imgroute.home",
                         "imgroute.output", "imgroute.advice", "imgroute.api", "imgroute.session", *DOORS),
    "imgroute.store": ("imgroute.jobs", "imgroute.batches", "imgroute.pricing", "imgroute.net", "imgroute.output",
                       "imgroute.api", "imgroute.session", *DOORS),
    "imgroute.net": ("imgroute.providers", "imgroute.pricing", "imgroute.store", "imgroute.jobs", "imgroute.home",
                     "imgroute.api", "imgroute.session", *DOORS),
    "imgroute.providers": ("imgroute.pricing", "imgroute.store", "imgroute.jobs", "imgroute.batches",
                           "imgroute.output", "imgroute.api", "imgroute.session", *DOORS),
    "imgroute.jobs": ("imgroute.api", *DOORS),
    "imgroute.batches": ("imgroute.api", *DOORS),
    "imgroute.home": ("imgroute.jobs", "imgroute.batches", "imgroute.store", "imgroute.api", *DOORS),
    "imgroute.output": ("imgroute.api", *DOORS),
    "imgroute.advice": ("imgroute.api", *DOORS),
    "imgroute.vocab": ("imgroute",),  # imports nothing of imgroute
}  # fmt: skip
# The doors' heavy libraries, and the only modules that may import them.
DOOR_LIBRARIES = ("typer", "rich", "starlette", "uvicorn")
MAY_IMPORT_DOOR_LIBRARIES = ("imgroute.cli", "imgroute.serve", "imgroute.output.render", "imgroute.output.layout")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code, but for type checkers only."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from imgroute.jobs import runner` imports the module runner
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


GRAPH = {name: {i for i in imports_of(path) if i in MODULES and i != name} for name, path in MODULES.items()}


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_each_layer_imports_only_what_is_below_it():
    broken = [
        f"{name} imports {target}"
        for name, path in MODULES.items()
        for layer, forbidden in FORBIDDEN.items()
        if under(name, layer)
        for target in imports_of(path)
        if any(under(target, f) for f in forbidden) and not (layer == "imgroute.vocab" and target == "__future__")
    ]
    assert broken == []


def test_the_doors_libraries_stay_in_the_doors():
    broken = [
        f"{name} imports {target}"
        for name, path in MODULES.items()
        if not any(under(name, door) for door in MAY_IMPORT_DOOR_LIBRARIES)
        for target in imports_of(path)
        if any(under(target, library) for library in DOOR_LIBRARIES)
    ]
    assert broken == []


def test_no_import_circle():
    circles, state = [], {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(GRAPH[name]):
            if state.get(target) == "open":
                circles.append(" -> ".join(trail[trail.index(target) :] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_every_package_init_is_empty():
    assert [str(p) for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE and p.read_text().strip()] == []


def test_the_tables_of_this_test_name_real_packages():
    for prefix in (*FORBIDDEN, *DOORS, *MAY_IMPORT_DOOR_LIBRARIES):
        assert any(under(name, prefix) for name in MODULES), prefix
