"""The package's layout rules, read from the source (AST): no import cycles, no import fallbacks.

Every import counts, including those inside functions: a cycle hidden in a function is
still a cycle. `from pkg import name` is an edge to `pkg.name` when that is a module, else
to `pkg`; relative imports are resolved against the importing module.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "inbox"

# Third-party packages the inbox runs without, which may be imported under `except ImportError`.
OPTIONAL_DEPENDENCIES: frozenset[str] = frozenset()


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    imports: list[tuple[str, ast.AST, bool]] = field(default_factory=list)  # (target, node, inside a function)

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def _modules() -> dict[str, Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        modules[name] = Module(name, path, ast.parse(path.read_text(), str(path)))
    for module in modules.values():
        _collect(module, module.tree, modules, inside=False)
    return modules


def _collect(module: Module, node: ast.AST, modules: dict[str, Module], *, inside: bool) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            for alias in child.names:
                if alias.name in modules:
                    module.imports.append((alias.name, child, inside))
        elif isinstance(child, ast.ImportFrom):
            base = _base(module, child)
            for alias in child.names:
                target = f"{base}.{alias.name}" if base else alias.name
                target = target if target in modules else base
                if target in modules:
                    module.imports.append((target, child, inside))
        _collect(module, child, modules, inside=inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _base(module: Module, node: ast.ImportFrom) -> str:
    """The module an ImportFrom reads from, absolute."""
    if not node.level:
        return node.module or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _edges(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Who imports whom. A module importing its own ancestor package (`from .. import create_app`)
    is no edge when that package's file imports none of its modules at its top level: the
    package is then complete before any of its modules runs."""
    self_contained = {
        name for name, module in modules.items() if module.is_package
        and not any(target.startswith(name + ".") for target, _, inside in module.imports if not inside)
    }
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, module in modules.items():
        for target, _, _ in module.imports:
            if target == name or (name.startswith(target + ".") and target in self_contained):
                continue
            edges[name].add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) for each strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_path_within(group, edges) for group in groups]


def _path_within(group: set[str], edges: dict[str, set[str]]) -> list[str]:
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges[v] & group):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group always has one


def test_no_import_cycles():
    cycles = _cycles(_edges(_modules()))
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    edges = {"inbox.a": {"inbox.b"}, "inbox.b": {"inbox.c"}, "inbox.c": {"inbox.a"}, "inbox.d": {"inbox.a"}}
    assert _cycles(edges) == [["inbox.a", "inbox.b", "inbox.c", "inbox.a"]]
    module = Module("inbox.services.a", PACKAGE / "services" / "a.py", ast.parse(
        "def f():\n    from .b import thing\n    from .. import queue\n"))
    modules = {"inbox.services.a": module, "inbox.services.b": None, "inbox.queue": None, "inbox": None}
    _collect(module, module.tree, modules, inside=False)
    assert [(target, inside) for target, _, inside in module.imports] == [
        ("inbox.services.b", True), ("inbox.queue", True)]


def test_no_import_fallbacks():
    """`except ImportError` only around a truly optional third-party import, named above."""
    found = []
    for module in _modules().values():
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Try):
                continue
            for handler in node.handlers:
                caught = {n.id for n in ast.walk(handler.type) if isinstance(n, ast.Name)} if handler.type else set()
                if not caught & {"ImportError", "ModuleNotFoundError"}:
                    continue
                guarded = {alias.name.split(".")[0] for stmt in node.body for n in ast.walk(stmt)
                           if isinstance(n, ast.Import) for alias in n.names}
                guarded |= {(n.module or "").split(".")[0] for stmt in node.body for n in ast.walk(stmt)
                            if isinstance(n, ast.ImportFrom) and not n.level}
                if not guarded or not guarded <= OPTIONAL_DEPENDENCIES:
                    found.append(f"{module.path.relative_to(PACKAGE.parent)}:{handler.lineno}")
    assert found == [], "except ImportError around code that exists: " + ", ".join(found)


def test_an_import_inside_a_function_says_why():
    """An import left inside a function has a comment (on its line or the line above) with the reason."""
    silent = []
    for module in _modules().values():
        lines = module.path.read_text().splitlines()
        for function in ast.walk(module.tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if (isinstance(node, (ast.Import, ast.ImportFrom)) and "#" not in lines[node.lineno - 1]
                        and not lines[node.lineno - 2].strip().startswith("#")):
                    silent.append(f"{module.path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert silent == [], "imports inside functions without a reason: " + ", ".join(sorted(set(silent)))


def test_queue_imports_no_service_and_services_never_import_tasks():
    edges = _edges(_modules())
    assert not {t for t in edges["inbox.queue"] if t.startswith("inbox.services")}
    assert [m for m, targets in edges.items() if "inbox.tasks" in targets] == []  # RQ imports it by name


def test_every_task_named_in_a_string_exists():
    """Services enqueue "inbox.tasks.<name>" by string: a typo must fail here, not in the worker."""
    modules = _modules()
    tasks = {node.name for node in modules["inbox.tasks"].tree.body if isinstance(node, ast.FunctionDef)}
    named = {(str(module.path.relative_to(PACKAGE.parent)), node.value) for module in modules.values()
             for node in ast.walk(module.tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and re.fullmatch(r"inbox\.tasks\.\w+", node.value)}
    missing = sorted((path, name) for path, name in named if name.removeprefix("inbox.tasks.") not in tasks)
    assert named and missing == []
