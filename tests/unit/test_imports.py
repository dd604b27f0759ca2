"""The package's modules import each other without cycles, function-level imports included.

Each module's imports (top level and inside functions) are read with `ast`; a module that imports
a package also depends on that package's `__init__`. The cli package registers its commands by
importing them from `cli/__init__.py`, and each command imports the root app back: that one
registration pattern is the only exception.
"""

from __future__ import annotations

import ast
from pathlib import Path

import instantvir_cli

ROOT = Path(instantvir_cli.__file__).parent
PACKAGE = "instantvir_cli"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports, anywhere in its body."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            if t in modules:
                found.add(t)
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    files = [p for p in ROOT.rglob("*.py")]
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_cycle_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_lazy_imports_are_read(tmp_path):
    pkg = tmp_path / "instantvir_cli"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text("def f():\n    from instantvir_cli import y\n    from .z import g\n")
    global ROOT
    old, ROOT = ROOT, pkg
    try:
        assert imports_of(pkg / "x.py", {"instantvir_cli", "instantvir_cli.y", "instantvir_cli.z"}) == {
            "instantvir_cli", "instantvir_cli.y", "instantvir_cli.z"}
    finally:
        ROOT = old


def test_no_import_cycles():
    graph = import_graph()
    cli = f"{PACKAGE}.cli"
    for name in graph:         # command registration: cli/__init__ -> cli.<command> -> cli
        if name.startswith(cli + "."):
            graph[name].discard(cli)
    assert len(graph) > 40
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
