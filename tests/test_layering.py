"""The project's layering, read from the source with `ast` (no third-party tool):

- the engine (`copd/`) imports neither the dashboard (`app`, `pages`, `streamlit`), nor the
  experiments, nor the run store (`storage`), except `copd/runner.py`, the composition root;
- the run store (`storage/`) imports neither `copd` nor `app`;
- the dashboard (`app/`, `pages/`) never loads torch when its modules are imported: no
  module-level import chain from them reaches `torch`;
- no two modules of the project import each other in a loop (imports inside functions
  count: a lazy import still ties the two modules together).

Each failure names the file and line of the offending import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("copd", "storage", "app", "pages", "experiments")


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (resolved to a project module where possible)
    file: str
    line: int
    top_level: bool  # executed when the module is imported (not inside a function)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if "migrations" not in path.parts:
                mods[_module_name(path)] = path
    return mods


MODULES = _project_modules()


def _resolve(name: str) -> str:
    """The project module an import names (longest existing prefix), else the name."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in MODULES:
            return cand
    return name


def _top_level_nodes(tree: ast.Module) -> set[int]:
    """ids of import nodes that run at import time (not inside a def / lambda)."""
    out: set[int] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.add(id(child))
            visit(child)

    visit(tree)
    return out


def _imports() -> list[Import]:
    found = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        top = _top_level_nodes(tree)
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # `from copd import presets` imports the module copd.spec.presets
                names = [
                    f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix
                    for a in node.names
                ]
            else:
                continue
            for name in names:
                found.append(Import(mod, _resolve(name), rel, node.lineno, id(node) in top))
    return found


IMPORTS = _imports()


def _root(name: str) -> str:
    return name.split(".")[0]


def _where(i: Import) -> str:
    return f"{i.file}:{i.line} imports {i.target}"


def test_the_engine_imports_no_dashboard_store_or_experiments():
    banned = {"app", "pages", "streamlit", "storage", "experiments"}
    bad = [
        _where(i)
        for i in IMPORTS
        if _root(i.source) == "copd"
        and _root(i.target) in banned
        and not (i.source == "copd.runner" and _root(i.target) == "storage")
    ]
    assert not bad, "the engine must stand alone (only copd/runner.py may touch storage):\n" + (
        "\n".join(bad)
    )


def test_the_store_imports_neither_engine_nor_dashboard():
    bad = [
        _where(i)
        for i in IMPORTS
        if _root(i.source) == "storage" and _root(i.target) in {"copd", "app", "pages"}
    ]
    assert not bad, "storage/ must not import copd or app:\n" + "\n".join(bad)


def test_dashboard_modules_never_load_torch_on_import():
    """Follow module-level imports from every app/ and pages/ module; none may reach torch
    (the dashboard process stays light; trainers run as separate processes)."""
    top: dict[str, list[Import]] = {}
    for i in IMPORTS:
        if i.top_level:
            top.setdefault(i.source, []).append(i)
    heavy = {"torch", "transformers", "peft"}
    bad = []
    for start in (m for m in MODULES if _root(m) in {"app", "pages"}):
        seen, stack = {start}, [(start, [])]
        while stack:
            mod, chain = stack.pop()
            for i in top.get(mod, []):
                if _root(i.target) in heavy:
                    bad.append(" -> ".join([*chain, _where(i)]))
                elif i.target in MODULES and i.target not in seen:
                    seen.add(i.target)
                    stack.append((i.target, [*chain, _where(i)]))
    assert not bad, "a dashboard module loads torch on import:\n" + "\n".join(sorted(set(bad)))


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def test_no_import_loops_between_project_modules():
    edges: dict[str, set[str]] = {}
    where: dict[tuple[str, str], Import] = {}
    for i in IMPORTS:
        if i.target in MODULES and i.target != i.source:
            # a package's own __init__ importing its submodules (re-exports) is not a loop
            if i.source == i.target.rpartition(".")[0] or i.target == i.source.rpartition(".")[0]:
                continue
            edges.setdefault(i.source, set()).add(i.target)
            where.setdefault((i.source, i.target), i)
    loops = _cycles(edges)
    msgs = []
    for comp in loops:
        lines = [_where(where[a, b]) for a in comp for b in sorted(edges.get(a, ())) if b in comp]
        msgs.append(" / ".join(comp) + ":\n  " + "\n  ".join(lines))
    assert not loops, "import loops:\n" + "\n".join(msgs)


def test_the_checker_sees_a_loop_and_a_lazy_import():
    """The rules above would catch what they claim to (a test that can fail)."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    tree = ast.parse("import os\ndef f():\n    import torch\n")
    top = _top_level_nodes(tree)
    kinds = [id(n) in top for n in ast.walk(tree) if isinstance(n, ast.Import)]
    assert kinds == [True, False]
    assert any(i.source == "copd.runner" and _root(i.target) == "storage" for i in IMPORTS)
