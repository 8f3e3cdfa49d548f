"""pyproject.toml's runtime dependencies are exactly what toolkit/ and challenges/ import.

Every runtime dependency is imported by runtime code (lazy imports inside functions count), every
third-party package runtime code imports is a runtime dependency, nothing only in the ``test`` extra is
imported at runtime, and each dependency's comment names modules that really import it.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
RUNTIME_PACKAGES = ("toolkit", "challenges")
# distribution name -> import name, where they differ beyond case and '-'/'_'
IMPORT_NAMES = {"pyyaml": "yaml", "connected-components-3d": "cc3d", "pillow": "PIL", "scikit-learn": "sklearn"}


def _dist_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return match.group(0)


def _import_name(dist: str) -> str:
    return IMPORT_NAMES.get(dist.lower(), dist.replace("-", "_"))


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _imports(path: Path) -> set[str]:
    """Top-level names of absolute imports anywhere in ``path`` (module level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _runtime_imports() -> dict[str, set[str]]:
    """Third-party import name -> dotted runtime modules importing it."""
    found: dict[str, set[str]] = {}
    for package in RUNTIME_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            for name in _imports(path) - set(sys.stdlib_module_names) - set(RUNTIME_PACKAGES) - {"__future__"}:
                found.setdefault(name, set()).add(module)
    return found


def test_runtime_dependencies_equal_runtime_imports():
    runtime = {_import_name(_dist_name(r)) for r in _project()["dependencies"]}
    imported = _runtime_imports()
    assert runtime - set(imported) == set(), "runtime dependencies that no runtime module imports"
    assert set(imported) - runtime == set(), "imported by runtime code but not a runtime dependency"


def test_test_only_packages_are_not_imported_at_runtime():
    project = _project()
    runtime = {_import_name(_dist_name(r)) for r in project["dependencies"]}
    test_only = {_import_name(_dist_name(r)) for r in project["optional-dependencies"]["test"]} - runtime
    assert {"PIL", "pydicom", "sklearn"} <= test_only
    imported = _runtime_imports()
    assert {name: sorted(imported[name]) for name in test_only & set(imported)} == {}


def test_each_runtime_dependency_comment_names_modules_that_import_it():
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    block = text[text.index("dependencies = ["):]
    block = block[: block.index("]")]
    comments = dict(re.findall(r'^\s*"([^"]+)",\s*#\s*(.+)$', block, flags=re.M))
    assert sorted(comments) == sorted(_project()["dependencies"]), "every dependency needs its comment"
    imported = _runtime_imports()
    for requirement, comment in comments.items():
        named = re.findall(r"\b(?:toolkit|challenges)(?:\.\w+)*", comment)
        assert named, f"{requirement}: the comment names no module"
        users = imported.get(_import_name(_dist_name(requirement)), set())
        for module in named:
            assert any(u == module or u.startswith(module + ".") for u in users), \
                f"{requirement}: {module} does not import it (imported by {sorted(users)})"
