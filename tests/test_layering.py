"""The project's layering, read from the source with `ast` (no third-party tool):

- the engine (`copd/`) imports neither the dashboard (`app`, `pages`, `streamlit`), nor the
  experiments, nor the run store (`storage`), except `copd/runner.py`, the composition root;
- the run store (`storage/`) imports of the project only `copd.common` (the torch-free
  metric-name grammar, statistics and tables), which imports nothing but the standard library;
- the engine's subpackages keep their roles: `copd.math` (pure tensor math) imports no model,
  training or tool module and no transformers/peft; the control plane (`app.control`) imports
  neither Streamlit nor the dashboard;
- the dashboard (`app/`, `pages/`) never loads torch when its modules are imported: no
  module-level import chain from them reaches `torch`;
- no two modules of the project import each other in a loop (imports inside functions
  count: a lazy import still ties the two modules together, and so does a module named in
  a string, as an `import_module` table names it);
- no private name (`_x`) of one module is used by another;
- no function is over 80 lines and no module reaches 400 lines, in every package;
- every import from one room to another (a room: a top-level package, a subpackage of
  copd/ or app/, an engine top-level module) is an edge of ROOM_EDGES, the table that
  docs/ARCHITECTURE.md prints ("Rooms and their edges"; a test keeps the two equal).

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


def _module_strings(tree: ast.Module) -> list[tuple[str, int]]:
    """String constants that name a project module ("copd.train.algorithms.copd"): the
    targets of an `import_module` table, which a plain import scan cannot see."""
    return [
        (node.value, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in MODULES
        and "." in node.value
    ]


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
        for name, line in _module_strings(tree):
            found.append(Import(mod, name, rel, line, False))
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


def _under(name: str, pkg: str) -> bool:
    return name == pkg or name.startswith(pkg + ".")


def test_the_store_imports_only_the_shared_common_package():
    bad = [
        _where(i)
        for i in IMPORTS
        if _root(i.source) == "storage"
        and _root(i.target) in {"copd", "app", "pages", "experiments"}
        and not _under(i.target, "copd.common")
    ]
    assert not bad, "storage/ may import only copd.common of the project:\n" + "\n".join(bad)


def test_the_common_package_imports_only_the_standard_library():
    """(and numpy/scipy inside the statistics functions that need them)"""
    import sys

    bad = [
        _where(i)
        for i in IMPORTS
        if _under(i.source, "copd.common")
        and not _under(i.target, "copd.common")
        and _root(i.target) not in sys.stdlib_module_names | {"__future__", "numpy", "scipy"}
    ]
    assert not bad, "copd.common must stay torch-free and stand alone:\n" + "\n".join(bad)


def test_pure_math_imports_no_model_training_or_tools():
    allowed = {"copd.math", "copd.common", "copd.spec"}
    bad = [
        _where(i)
        for i in IMPORTS
        if _under(i.source, "copd.math")
        and (
            (_root(i.target) == "copd" and not any(_under(i.target, a) for a in allowed))
            or _root(i.target) in {"transformers", "peft"}
            or _under(i.target, "torch.nn")
            and i.target != "torch.nn.functional"
        )
    ]
    assert not bad, "copd.math is pure tensor math:\n" + "\n".join(bad)


def test_the_control_plane_imports_neither_streamlit_nor_the_dashboard():
    bad = [
        _where(i)
        for i in IMPORTS
        if _under(i.source, "app.control")
        and (_root(i.target) == "streamlit" or _under(i.target, "app.dashboard"))
    ]
    assert not bad, "app/control runs without Streamlit:\n" + "\n".join(bad)


# Every edge between rooms the architecture doc draws (docs/ARCHITECTURE.md, "Rooms and
# their edges"), the same table: a room imports its own modules and the rooms listed, no
# other room of the project. A room is a top-level package, a subpackage of copd/ or app/,
# or one of the engine's top-level modules.
ROOM_EDGES: dict[str, set[str]] = {
    "copd.common": set(),
    "copd.errors": set(),
    "copd.tasks": {"copd.common", "copd.errors"},
    "copd.spec": {"copd.common", "copd.errors", "copd.tasks"},
    "copd.math": {"copd.common", "copd.spec"},
    "copd.policy": {"copd.common", "copd.errors", "copd.math", "copd.spec", "copd.tasks"},
    "copd.builders": {"copd.common", "copd.policy", "copd.spec", "copd.tasks"},
    "copd.train": {
        "copd.builders", "copd.common", "copd.errors", "copd.math", "copd.policy",
        "copd.spec", "copd.tasks",
    },
    "copd.tools": {
        "copd.builders", "copd.common", "copd.errors", "copd.math", "copd.policy",
        "copd.spec", "copd.tasks", "copd.train",
    },
    "copd.runner": {
        "copd.common", "copd.errors", "copd.spec", "copd.tools", "copd.train", "storage",
    },
    "copd.cli": {
        "copd.builders", "copd.common", "copd.errors", "copd.math", "copd.policy",
        "copd.runner", "copd.spec", "copd.tasks", "copd.tools", "copd.train",
    },
    "copd.standby": {"copd.runner", "copd.train"},
    "copd.__main__": {"copd.cli", "copd.standby"},
    "copd": set(),  # copd/__init__.py
    "storage": {"copd.common"},
    "app.control": {
        "copd.cli", "copd.common", "copd.errors", "copd.runner", "copd.spec", "copd.tools",
        "copd.train", "storage",
    },
    "app.dashboard": {
        "app.control", "copd.common", "copd.spec", "copd.tasks", "copd.tools", "storage",
    },
    "app.main": {"app.dashboard"},
    "app": set(),
    "pages": {"app.control", "app.dashboard", "copd.spec", "copd.tasks", "storage"},
    "experiments": {
        "app.dashboard", "copd.common", "copd.math", "copd.policy", "copd.runner",
        "copd.spec", "copd.train", "storage",
    },
}  # fmt: skip
ENGINE_MODULES = {"runner", "standby", "cli", "errors", "__main__"}


def room(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "copd" and len(parts) > 1 and parts[1] in ENGINE_MODULES:
        return f"copd.{parts[1]}"
    if parts[0] in ("copd", "app") and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def test_every_edge_between_rooms_is_one_the_doc_draws():
    assert set(map(room, MODULES)) <= set(ROOM_EDGES), "a new room: add it to ROOM_EDGES"
    bad = [
        f"{_where(i)} ({room(i.source)} -> {room(i.target)})"
        for i in IMPORTS
        if _root(i.target) in PACKAGES
        and room(i.target) != room(i.source)
        and room(i.target) not in ROOM_EDGES[room(i.source)]
    ]
    assert not bad, "an edge docs/ARCHITECTURE.md does not draw:\n" + "\n".join(bad)


def test_the_doc_draws_the_same_room_edges_as_the_test():
    """The doc's table lists each room with the rooms it may import, one row per room."""
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = doc.split("## Rooms and their edges", 1)[1].split("\n## ", 1)[0]
    drawn: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and cells[0] in ROOM_EDGES:
            targets = {c.strip().strip("`") for c in cells[1].split(",")}
            drawn[cells[0]] = targets - {"-", ""}
    assert drawn == ROOM_EDGES


def _private_uses() -> list[str]:
    """`from m import _x` and `m._x` where m is a project module other than the user."""
    out = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        rel = str(path.relative_to(ROOT))
        aliases: dict[str, str] = {}  # local name -> project module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if full in MODULES:
                        aliases[a.asname or a.name] = full
                    elif (
                        _resolve(node.module) in MODULES
                        and _resolve(node.module) != mod
                        and a.name.startswith("_")
                        and not a.name.startswith("__")
                    ):
                        out.append(f"{rel}:{node.lineno} imports {node.module}.{a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in MODULES and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and aliases[node.value.id] != mod
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                out.append(f"{rel}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return out


def test_no_private_name_crosses_a_module():
    bad = _private_uses()
    assert not bad, "a private name used outside its module (make it public):\n" + "\n".join(bad)


def test_no_function_is_over_80_lines_and_no_module_over_400():
    """In every package of the project (app, copd, pages, storage, experiments; the
    Alembic migrations aside): a function reads on one screen, a module by one role."""
    long = []
    for path in MODULES.values():
        text = path.read_text()
        lines = text.count("\n")
        if lines >= 400:
            long.append(f"{path.relative_to(ROOT)}: {lines} lines (split it by role)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "split these:\n" + "\n".join(long)


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
    # a module named in an import_module table is an edge
    tree = ast.parse('TABLE = {"copd": "copd.train.algorithms.copd", "x": "not.a.module"}')
    assert [s for s, _ in _module_strings(tree)] == ["copd.train.algorithms.copd"]
