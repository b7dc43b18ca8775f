"""xapisim's import structure: the Simulator owns its parts, no part imports
the simulator back, and the package has no import cycle (type-only and
function-local imports counted, as they tie modules together all the same).
xapisim stands alone: it never imports compute_agent."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "xapisim"
# The entry points that build a Simulator: nothing else may import it.
SIMULATOR_USERS = {"xapisim.cli", "xapisim.server"}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the xapisim modules (and compute_agent ones) it imports."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")
               if "dom0lib" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join([*pkg, base] if base else pkg)
                # "from xapisim import domains" names a module; "from
                # xapisim.api import handler" names a function of a package
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            for t in targets:
                if t.startswith("compute_agent"):
                    deps.add("compute_agent")
                elif t in modules and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_simulators_own_imports():
    # guards the parser: server builds its parts from these modules
    graph = import_graph()
    assert {"xapisim.dispatch", "xapisim.httpserver", "xapisim.sessions",
            "xapisim.tasks", "xapisim.bootstrap", "xapisim.api"} <= graph["xapisim.server"]
    assert "xapisim.context" in graph["xapisim.api.generic"]


def test_no_part_imports_the_simulator():
    graph = import_graph()
    back = sorted(m for m, deps in graph.items()
                  if "xapisim.server" in deps and m not in SIMULATOR_USERS)
    assert back == []


def test_no_import_cycle_in_xapisim():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_xapisim_does_not_import_compute_agent():
    graph = import_graph()
    assert sorted(m for m, deps in graph.items() if "compute_agent" in deps) == []
