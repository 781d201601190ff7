"""Structure rules of the code base, checked on every change (see docs/architecture.md).

- No import cycles between the modules of ``crlc_engine/`` and ``app/``, counting every import:
  at module level, inside functions and under ``TYPE_CHECKING``. Importing ``a.b.c`` also
  runs the packages ``a`` and ``a.b``, so it counts as an import of them too (except of the
  importer's own packages).
- No module over :data:`MAX_MODULE_LINES` lines.
- No function over :data:`MAX_FUNCTION_LINES` lines, except functions that only build
  argparse parsers.
- ``app/`` and ``crlc_engine/cli/`` import the engine through ``crlc_engine.api`` only.
- Every name of the facade resolves to the module it names.
- Imports run down the data path (:data:`LAYERS`): core <- augment, losses <- library <- models
  <- results, training <- pipeline, bench <- api <- cli, app.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("crlc_engine", "app")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
#: Calls that make a statement part of building an argparse parser.
PARSER_CALLS = frozenset(
    {
        "add_argument",
        "add_parser",
        "add_subparsers",
        "add_argument_group",
        "add_mutually_exclusive_group",
        "set_defaults",
        "ArgumentParser",
    }
)
#: The rooms of the code, from the bottom of the data path up: a module imports only from its
#: own room or rooms below it (docs/architecture.md draws the path).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("crlc_engine.core",),
    ("crlc_engine.augment", "crlc_engine.losses"),
    ("crlc_engine.library",),
    ("crlc_engine.models",),
    ("crlc_engine.results", "crlc_engine.training"),
    ("crlc_engine.pipeline", "crlc_engine.bench"),
    ("crlc_engine.api",),
    ("crlc_engine.cli", "app"),
)
#: Where the command line and the window may import the engine from.
FACADE = "crlc_engine.api"
FACADE_USERS = ("app", "crlc_engine.cli")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    def tree(self) -> ast.Module:
        return _parse(self.path)


@cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@cache
def modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            found[name] = Module(name, path)
    return found


def _imported_names(module: Module) -> Iterator[tuple[str, int]]:
    """Every module name an import statement of ``module`` names, with its line."""
    for node in ast.walk(module.tree()):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.name.split(".")
                if not module.is_package:
                    parts.pop()
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno
                yield base, node.lineno


def _known(name: str) -> str | None:
    """The project module ``name`` is, or is inside (``pkg.mod.attr`` -> ``pkg.mod``)."""
    known = modules()
    while name and name not in known:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name or None


@cache
def import_graph() -> dict[str, frozenset[str]]:
    graph: dict[str, frozenset[str]] = {}
    for name, module in modules().items():
        targets: set[str] = set()
        for imported, _ in _imported_names(module):
            target = _known(imported)
            if target is None or target == name:
                continue
            targets.add(target)
            parts = target.split(".")
            for depth in range(1, len(parts)):
                package = ".".join(parts[:depth])
                if package in modules() and not (name + ".").startswith(package + "."):
                    targets.add(package)
        graph[name] = frozenset(targets)
    return graph


def _cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def _is_parser_builder(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether a function only builds argparse parsers: at least 80 % of its simple
    statements call the argparse builders, and it does nothing else of note."""
    simple = [
        node
        for node in ast.walk(function)
        if isinstance(node, ast.Expr | ast.Assign | ast.AnnAssign | ast.AugAssign)
        and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
    ]

    def builds(node: ast.AST) -> bool:
        for call in ast.walk(node):
            if isinstance(call, ast.Call):
                func = call.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in PARSER_CALLS:
                    return True
        return False

    return bool(simple) and sum(builds(node) for node in simple) >= 0.8 * len(simple)


def test_no_import_cycles() -> None:
    cycles = _cycles(import_graph())
    assert cycles == [], "import cycles (every import counted):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_no_module_over_the_line_limit() -> None:
    long = {
        name: count
        for name, module in modules().items()
        if (count := len(module.path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_the_line_limit() -> None:
    long = []
    for name, module in modules().items():
        for node in ast.walk(module.tree()):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_FUNCTION_LINES and not _is_parser_builder(node):
                long.append(f"{name}.{node.name} ({lines} lines)")
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines: {sorted(long)}"


def _room(module: str) -> str | None:
    for rooms in LAYERS:
        for room in rooms:
            if module == room or module.startswith(room + "."):
                return room
    return None


def _layer(room: str) -> int:
    return next(k for k, rooms in enumerate(LAYERS) if room in rooms)


def test_imports_run_down_the_data_path() -> None:
    upward = []
    for name, targets in import_graph().items():
        source = _room(name)
        for target in targets:
            room = _room(target)
            if source is None or room is None or room == source:
                continue
            if _layer(room) >= _layer(source):
                upward.append(f"{name} imports {target}")
    assert upward == [], "imports against the data path:\n" + "\n".join(sorted(upward))


def test_app_and_cli_use_the_engine_facade_only() -> None:
    wrong = []
    for name, module in modules().items():
        if not any(name == user or name.startswith(user + ".") for user in FACADE_USERS):
            continue
        for imported, line in _imported_names(module):
            target = _known(imported)
            if target is None or not target.startswith("crlc_engine"):
                continue
            allowed = target in (FACADE, "crlc_engine") or (
                name.startswith("crlc_engine.cli") and target.startswith("crlc_engine.cli")
            )
            if not allowed:
                wrong.append(f"{module.path.relative_to(ROOT)}:{line} imports {target}")
    assert wrong == [], "import the engine through crlc_engine.api:\n" + "\n".join(sorted(wrong))


def test_facade_names_resolve_where_it_says() -> None:
    api = importlib.import_module(FACADE)
    locations: dict[str, str] = api._LOCATIONS
    assert sorted(api.__all__) == sorted(["__version__", *locations])
    typed: dict[str, str] = {}
    for node in ast.walk(modules()[FACADE].tree()):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crlc_engine."):
            for alias in node.names:
                typed[alias.asname or alias.name] = node.module
    assert typed == locations, "the TYPE_CHECKING imports and _LOCATIONS disagree"
    for name, module in locations.items():
        assert getattr(api, name) is getattr(importlib.import_module(module), name), name


def test_the_rules_see_cycles_and_parser_builders() -> None:
    """The checks themselves, on hand-made examples."""
    assert _cycles({"a": frozenset({"b"}), "b": frozenset({"a"}), "c": frozenset()}) == [["a", "b"]]
    assert _cycles({"a": frozenset({"b"}), "b": frozenset()}) == []
    builder = ast.parse(
        "def build(sub):\n"
        "    p = sub.add_parser('x')\n"
        "    p.add_argument('--a')\n"
        "    p.add_argument('--b')\n"
        "    p.set_defaults(run=1)\n"
    ).body[0]
    worker = ast.parse(
        "def work(x):\n    y = x + 1\n    print(y)\n    p.add_argument('--a')\n"
    ).body[0]
    assert isinstance(builder, ast.FunctionDef) and isinstance(worker, ast.FunctionDef)
    assert _is_parser_builder(builder)
    assert not _is_parser_builder(worker)
