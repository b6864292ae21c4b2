"""The import layering of docs/architecture.md ("Layers"), checked on the source: every import counts, the ones inside
functions too (a lazy import is still a dependency, only a later one).

- floor: the modules of ``evalharness`` named in FLOOR (and ``evalharness/__init__``); they import only the floor.
- middle: ``trainers``, ``judges``, ``leaderboards``; each imports the floor and itself, never another middle package.
- top: every other module of ``evalharness`` (commands, experiments, generation, judging, evaluation, diagnose…);
  it may import anything.

No module imports one that imports it back (no cycle), and every module stays under 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("evalharness", "trainers", "judges", "leaderboards")
MIDDLE = ("trainers", "judges", "leaderboards")
# The first name under evalharness/ of each floor module or package (data covers evalharness.data.*).
FLOOR = {
    "checkpoints", "config", "data", "errors", "evalkey", "hashing", "imported", "limits", "metrics", "migrations", "models",
    "packing", "plugins", "registry", "scoring", "stats", "store", "store_rows", "task_model", "textsafe", "threads", "tiny",
}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _imported(node: ast.AST, module: str, is_package: bool, mods: dict[str, Path]) -> list[str]:
    """The project modules one import statement names (``from pkg import sub`` names ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            here = module.split(".") if is_package else module.split(".")[:-1]
            here = here[: len(here) - node.level + 1]
            base = ".".join(here + ([base] if base else []))
        subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
        names = subs or [base]
    else:
        return []
    out = []
    for name in names:
        while name and name not in mods:  # `import a.b.c` of a function or attribute: its module
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports, leaving out its own parent packages (Python imports those first
    anyway) and, for a package, its own submodules."""
    mods = _modules()
    graph = {}
    for module, path in mods.items():
        is_package = path.name == "__init__.py"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for dep in _imported(node, module, is_package, mods):
                if dep == module or module.startswith(dep + ".") or (is_package and dep.startswith(module + ".")):
                    continue
                deps.add(dep)
        graph[module] = deps
    return graph


def layer(module: str) -> str:
    """``floor``, ``top``, or the middle package's own name."""
    parts = module.split(".")
    if parts[0] in MIDDLE:
        return parts[0]
    if len(parts) == 1 or parts[1] in FLOOR:
        return "floor"
    return "top"


def allowed(src: str, dst: str) -> bool:
    s, d = layer(src), layer(dst)
    if s == "top" or d == "floor":
        return True
    return s == d and s != "floor"  # a middle package may import itself; the floor imports nothing above it


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iteratively)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
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


def test_the_layer_map_sorts_modules_as_documented():
    assert layer("evalharness") == layer("evalharness.scoring") == layer("evalharness.data.loaders") == "floor"
    assert layer("evalharness.metrics") == "floor"  # the pure metric maths; the eval verb is evalharness.evaluation
    assert layer("evalharness.evaluation.pairs") == layer("evalharness.judging") == layer("evalharness.cli") == "top"
    assert layer("trainers.loop") == "trainers" and layer("judges.reward_model") == "judges"
    assert not allowed("evalharness.store", "trainers.loop") and not allowed("judges.llm", "trainers.batching")
    assert not allowed("leaderboards.board", "evalharness.importers") and allowed("evalharness.cli", "judges.base")
    assert allowed("trainers.loop", "trainers.setup") and allowed("judges.base", "evalharness.registry")


def test_the_cycle_finder_finds_a_cycle_through_three_modules_and_none_in_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "evalharness.generate" in graph["evalharness.judging"]  # imported inside a function only


def test_no_module_imports_above_its_layer():
    graph = import_graph()
    upward = sorted(f"{src} ({layer(src)}) -> {dst} ({layer(dst)})"
                    for src, deps in graph.items() for dst in deps if not allowed(src, dst))
    print("\n".join(upward))
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_every_module_is_under_the_line_limit():
    over = sorted(f"{m} ({n} lines)" for m, path in _modules().items()
                  if (n := len(path.read_text().splitlines())) > MAX_LINES)
    assert not over, f"modules over {MAX_LINES} lines:\n" + "\n".join(over)
