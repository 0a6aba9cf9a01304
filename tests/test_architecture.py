"""The shape of the package (issue 13): imports flow one way, no module branches on a scoring
method's name or a backend's name, and the backends know nothing of codebooks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "textcoder"


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Every module's imports of other textcoder modules, at any depth of the file
    (function-level and TYPE_CHECKING imports count: a hidden cycle is still a cycle)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                else:
                    target = node.module or ""
                if target.startswith("textcoder"):
                    found.add(target)
                    found.update(f"{target}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("textcoder"))
        graph[name] = found
    modules = set(graph)
    return {m: {t for t in ts if t in modules and t != m} for m, ts in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return [*stack[stack.index(t) :], t]
            if t not in state and (found := visit(t)) is not None:
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)) is not None:
            return found
    return None


def test_no_import_cycle_in_the_package() -> None:
    graph = _imports()
    # a package's __init__ re-exporting its own modules is not a cycle through them
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_backends_import_nothing_above_them() -> None:
    above = ("codebook", "prompt", "runner", "scoring", "coder", "plan", "run")
    for m, targets in _imports().items():
        if m.startswith("textcoder.backends"):
            bad = [t for t in targets if t.split(".")[1] in above]
            assert not bad, f"{m} imports {bad}"


def test_no_dispatch_on_a_method_or_backend_name() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r'\.name == "openai"|isinstance\(.*ContinuationScorer', text), path
        if "scoring" not in path.relative_to(PACKAGE).parts:
            assert not re.search(r'scoring == "', text), path
