"""No import circle among ser_bench's modules, and the runner's stages stay small.

Every import statement counts, the ones inside functions too (a lazy import hides a circle from
the interpreter, not from a reader): the graph of ``ser_bench`` module -> ``ser_bench`` modules it
imports must have no cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import ser_bench

ROOT = Path(ser_bench.__file__).resolve().parent


def _modules() -> dict[str, tuple[Path, list[str]]]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
            pkg = ["ser_bench"] + parts
        else:
            pkg = ["ser_bench"] + parts[:-1]
        mods[".".join(["ser_bench"] + parts)] = (p, pkg)
    return mods


def import_graph() -> dict[str, set[str]]:
    """ser_bench module -> the ser_bench modules it imports (anywhere in its code)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, pkg) in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = pkg[: len(pkg) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{mod}.{alias.name}"
                    deps.add(sub if sub in mods else mod)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports_inside_functions():
    g = import_graph()
    assert "ser_bench.runner" in g["ser_bench.cli"]  # cli imports the runner inside a command
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_the_runner_stages_are_each_under_500_lines():
    for name in ("artefacts", "audit", "jobs", "plan", "runner", "quality_runner", "cache"):
        n = len((ROOT / f"{name}.py").read_text(encoding="utf-8").splitlines())
        assert n < 500, f"{name}.py has {n} lines"
