"""The package's import graph: no cycle among `gcpo` modules, no module-private name imported across modules, the
library never imports the trainables, and every module imports in a fresh interpreter.

The graph is read from the source with `ast`: every `import` / `from ... import` of a `gcpo` module, at module level
or inside a function (a function-level import is still an arrow between layers; it only runs later). A package's
`__init__` counts as a module, so its re-exports are arrows too. `from gcpo.x import y` is an arrow to the submodule
`gcpo.x.y` when there is one, else to `gcpo.x`. Importing a submodule also runs its parents' `__init__`, but that
implicit arrow is not counted: Python has the parent half-initialised in `sys.modules` by then, so only a parent's
*names* (an explicit `from gcpo.x import name`) can be missing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "platform"


def module_names() -> dict[str, Path]:
    """Every module of the `gcpo` package by dotted name (a package under its own name)."""
    names = {}
    for path in sorted((SOURCE / "gcpo").rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported(module: str, path: Path, known: set[str]) -> list[tuple[str, str | None, int]]:
    """(target module, imported name or None, line) for every import of a `gcpo` or `trainables` module."""
    is_package = path.name == "__init__.py"
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((alias.name, None, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full, None, node.lineno) if full in known else (base, alias.name, node.lineno))
    return [(t, name, line) for t, name, line in out if t.split(".")[0] in ("gcpo", "trainables")]


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    known = set(modules)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for target, _, _ in imported(module, path, known):
            while target not in known and "." in target:  # `import gcpo.x.y.attr` -> the module gcpo.x.y
                target = target.rsplit(".", 1)[0]
            if target in known and target != module:
                graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def dependency_order(graph: dict[str, set[str]]) -> list[str]:
    """Every module after the modules it imports (the graph must be acyclic)."""
    order: list[str] = []
    done: set[str] = set()

    def place(v: str) -> None:
        if v in done:
            return
        done.add(v)
        for w in sorted(graph[v]):
            place(w)
        order.append(v)

    for v in sorted(graph):
        place(v)
    return order


def test_the_graph_reader_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "gcpo" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("def f():\n    from gcpo.sub import b\n    from gcpo.sub.b import _g\n")
    known = {"gcpo.sub", "gcpo.sub.a", "gcpo.sub.b"}
    assert imported("gcpo.sub", pkg / "__init__.py", known) == [("gcpo.sub.a", "f", 1)]
    assert imported("gcpo.sub.a", pkg / "a.py", known) == [("gcpo.sub.b", None, 2), ("gcpo.sub.b", "_g", 3)]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert dependency_order({"a": {"b"}, "b": set()}) == ["b", "a"]


def test_no_import_cycle_among_gcpo_modules():
    graph = import_graph()
    assert len(graph) > 50  # the reader found the package
    found = cycles(graph)
    assert not found, "import cycles (each a set of modules reaching each other):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_no_private_name_is_imported_across_modules():
    modules = module_names()
    known = set(modules)
    crossings = [f"{path.relative_to(ROOT)}:{line}: from {target} import {name}"
                 for module, path in modules.items()
                 for target, name, line in imported(module, path, known)
                 if name and name.startswith("_") and not name.startswith("__")]
    assert not crossings, "module-private names imported from another module:\n" + "\n".join(crossings)


def test_the_library_never_imports_the_trainables():
    modules = module_names()
    arrows = [f"{path.relative_to(ROOT)}:{line}: {target}" for module, path in modules.items()
              for target, _, line in imported(module, path, set(modules)) if target.split(".")[0] == "trainables"]
    assert not arrows, "gcpo imports trainables (the trainable must stay a thin wrapper of the library):\n" + \
        "\n".join(arrows)


def test_every_module_imports_in_a_fresh_interpreter():
    """One interpreter imports every module, each after the modules it imports (a fresh one per module would take
    minutes: torch, Ray and transformers load each time)."""
    order = dependency_order(import_graph())
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run([sys.executable, "-c", code, *order], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_nothing_imports_the_command_line_entry_point():
    """`gcpo.cli` is the top: the command table and parser it uses live below it, in `gcpo.commands`."""
    graph = import_graph()
    assert not [m for m, targets in graph.items() if "gcpo.cli" in targets]


def test_the_config_and_the_command_line_parser_load_without_torch():
    """`gcpo --help` and config loading stay fast: the presets and the choice switches are torch-free."""
    code = ("import sys\nfrom gcpo.commands import build_parser\nfrom gcpo.config import load_config\n"
            "build_parser()\nload_config(preset='gcpo')\n"
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"


def part_of(module: str) -> str:
    """The part a module belongs to: its top-level package under `gcpo` (`gcpo.training.loop` -> `training`), or
    the module itself (`gcpo.preflight` -> `preflight`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_no_two_parts_import_each_other():
    """At the level of parts (`training/`, `tracking/`, `cluster/`, `preflight.py`, ...) the graph is acyclic too:
    a part low enough for another to use never reaches back up to it."""
    parts: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        parts.setdefault(part_of(module), set()).update(part_of(t) for t in targets if part_of(t) != part_of(module))
    found = cycles(parts)
    assert not found, "parts that reach each other:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_start_up_check_imports_nothing_from_training():
    """`gcpo.preflight` sits below `gcpo.training` (the training worker uses `gcpo.tasks.lengths.fit_task`, as the
    check does), and it builds nothing: the commands make the built-in warm start themselves."""
    graph = import_graph()
    assert not [t for t in graph["gcpo.preflight"] if t.startswith("gcpo.training")]
    assert not [t for t in graph["gcpo.preflight"] if t.startswith("gcpo.standalone")]
