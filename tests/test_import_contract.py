"""The layering of the code base, checked on the source (AST) so that a lazy import cannot hide a breach.

Layers, bottom to top: the engine (``toolkit`` without ``toolkit.cli``) <- the challenge adapters
(``challenges``) <- the CLI (``toolkit.cli``). The engine never imports ``challenges`` or the CLI (the
CLI looks challenge facts up and passes them to the engine as values), the adapters never import the
CLI, so the three never import each other in a circle. Planning never reaches torch, not even through
a lazy import in a module it uses: plans are made on machines without it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("toolkit", "challenges")


def _module_of(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_of(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _imported_names(module: str, path: Path) -> set[str]:
    """Dotted names imported anywhere in the module (top level or inside functions), relative ones resolved."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


@cache
def _graph() -> dict[str, frozenset[str]]:
    """Module -> every name it imports: repository modules (with the packages that run on the way) and
    third-party top-level names."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        out: set[str] = set()
        for name in _imported_names(module, path):
            parts = name.split(".")
            if parts[0] in PACKAGES:
                out.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if p in modules)
            elif name:
                out.add(parts[0])
        graph[module] = frozenset(out - {module})
    return graph


def _layer(module: str) -> str:
    if module.split(".")[0] == "challenges":
        return "challenges"
    return "cli" if module == "toolkit.cli" or module.startswith("toolkit.cli.") else "engine"


def test_the_graph_sees_lazy_and_relative_imports():
    graph = _graph()
    assert "toolkit.containers.build" in graph["toolkit.containers.packager"]
    assert "toolkit.bundle.manifest" in graph["toolkit.containers.packager"]  # imported inside a function
    assert "challenges.registry" in graph["toolkit.cli.challenge_cmds"]
    assert "torch" in graph["toolkit.network.unet"]


def test_engine_never_imports_challenges_or_the_cli():
    breaches = {m: sorted(t for t in targets if _layer(t) != "engine" and t.split(".")[0] in PACKAGES)
                for m, targets in _graph().items() if _layer(m) == "engine"}
    assert {m: t for m, t in breaches.items() if t} == {}


def test_challenges_never_import_the_cli():
    breaches = {m: sorted(t for t in targets if _layer(t) == "cli")
                for m, targets in _graph().items() if _layer(m) == "challenges"}
    assert {m: t for m, t in breaches.items() if t} == {}


def test_layers_import_each_other_in_no_circle():
    edges = {(_layer(m), _layer(t)) for m, targets in _graph().items() for t in targets
             if t.split(".")[0] in PACKAGES and _layer(m) != _layer(t)}
    circles = sorted((a, b) for a, b in edges if (b, a) in edges)
    assert circles == [], f"layers importing each other: {circles}"


def _reached_from(prefix: str) -> set[str]:
    graph = _graph()
    todo = [m for m in graph if m == prefix or m.startswith(prefix + ".")]
    seen = set(todo)
    while todo:
        for t in graph.get(todo.pop(), ()):
            if t not in seen:
                seen.add(t)
                if t in graph:
                    todo.append(t)
    return seen


def test_planning_never_reaches_torch():
    reached = _reached_from("toolkit.planning")
    assert "toolkit.planning.planner" in reached
    users = sorted(m for m in reached if m in _graph() and "torch" in _graph()[m])
    assert "torch" not in reached, f"planning reaches torch through {users}"


def test_planning_and_plan_command_load_without_torch():
    """The same at run time, through the CLI command that plans."""
    code = ("import sys; from toolkit.planning import plan_experiment; import toolkit.fingerprint.case; "
            "import toolkit.cli.plan_cmds; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8",
                         errors="replace", check=True, cwd=REPO)
    assert out.stdout.strip() == "False"
