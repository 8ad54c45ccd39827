"""The package's layers, held: which layer may import which, no import circle (imports inside
functions counted; those only for type checkers not), the heavy libraries of the doors kept in
the doors, and every package's __init__ empty (importing a package costs nothing)."""

from __future__ import annotations

import ast
from pathlib import Path

import imgroute

PACKAGE = Path(imgroute.__file__).parent
DOORS = ("imgroute.cli", "imgroute.serve", "imgroute.agents")
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
DOOR_LIBRARIES = ("typer", "rich", "starlette", "uvicorn", "mcp", "mcp_types", "pydantic")
MAY_IMPORT_DOOR_LIBRARIES = ("imgroute.cli", "imgroute.serve", "imgroute.agents", "imgroute.output.text")


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


def _named_tuples() -> dict[str, dict[str, list[str]]]:
    """module -> NamedTuple class -> its fields."""
    found: dict[str, dict[str, list[str]]] = {}
    for name, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") == "NamedTuple" for b in node.bases):
                fields = [
                    s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                ]
                found.setdefault(name, {})[node.name] = fields
    return found


def test_values_of_four_fields_or_more_are_built_by_name():
    """A value with many fields is never built by position: a field added or moved cannot shift
    the others silently. (The options table is written as rows, the exception.)"""
    defined = _named_tuples()
    positional = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        in_scope = dict(defined.get(name, {}))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in defined:
                for alias in node.names:
                    if alias.name in defined[node.module]:
                        in_scope[alias.asname or alias.name] = defined[node.module][alias.name]
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            if isinstance(node.func, ast.Name):  # Job(...), or module.Job(...) of one of its modules
                called, fields = node.func.id, in_scope.get(node.func.id)
            elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                called = node.func.attr
                module = next((m for m in defined if m.rsplit(".", 1)[-1] == node.func.value.id), None)
                fields = defined[module].get(called) if module else None
            else:
                continue
            if fields is not None and len(fields) >= 4 and called != "Option":
                positional.append(f"{name}:{node.lineno} {called}(...)")
    assert positional == []


def test_no_value_has_a_mutable_default():
    shared = [
        f"{name}:{statement.lineno} {node.name}.{ast.unparse(statement.target)}"
        for name, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        for statement in node.body
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.value, (ast.Dict, ast.List, ast.Set))
    ]
    assert shared == []


def test_every_exception_class_lives_in_errors():
    import importlib

    outside = []
    for name in sorted(set(MODULES) - {"imgroute.__main__"}):  # (importing that one runs the CLI)
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == name:
                outside.append(f"{name}.{value.__name__}")
    assert [where for where in outside if not where.startswith("imgroute.errors.")] == []
