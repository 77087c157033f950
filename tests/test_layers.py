"""Layers point one way, inside functions too.

`lint-imports` (make check) holds the layers in pyproject.toml for every import it sees. This
test says the same for the imports most easily slipped in to dodge a cycle — the ones inside
a function — from the same list of layers, and runs with the suite.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def layers() -> list[list[str]]:
    """The layers contract of pyproject.toml, lowest first; each layer is its modules
    ("apps.policies | (apps.approvals)": independent siblings, parentheses = optional)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [
        [name.strip().strip("()") for name in layer.split("|")]
        for layer in reversed(contract["layers"])
    ]


def sibling_of(module: str, order: list[list[str]]) -> tuple[int, str] | None:
    """The rank of the layer `module` belongs to (0 is the lowest) and which of its
    independent modules it is in, if it is in one."""
    for rank, layer in enumerate(order):
        for sibling in layer:
            if module == sibling or module.startswith(sibling + "."):
                return rank, sibling
    return None


def layer_of(module: str, order: list[list[str]]) -> int | None:
    found = sibling_of(module, order)
    return found[0] if found else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolve against this module's package
        package = module.split(".")
        package = package if is_package else package[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    # `from apps import agents` imports apps.agents; `from apps.agents import x`, apps.agents.
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def function_level_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements anywhere inside a function or method body."""
    functions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
    for outer in ast.walk(tree):
        if isinstance(outer, functions):
            for node in ast.walk(outer):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    yield node


def upward_function_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """`line: imported module` for each function-level import of a higher layer."""
    order = layers()
    own = sibling_of(module, order)
    if own is None:
        return []
    found = set()
    for node in function_level_imports(ast.parse(source)):
        ranks = [
            (target, name)
            for name in imported_modules(node, module, is_package)
            if (target := sibling_of(name, order)) is not None
        ]
        if ranks:
            (rank, sibling), name = max(ranks, key=lambda r: (r[0][0], -len(r[1])))
            # Higher, or a sibling of the same layer (siblings are independent).
            if rank > own[0] or (rank == own[0] and sibling != own[1]):
                found.add(f"{module}:{node.lineno}: {name}")
    return sorted(found)


def test_no_function_imports_a_higher_layer() -> None:
    violations = []
    for package in ("apps", "config"):
        for path in sorted((ROOT / package).rglob("*.py")):
            violations += upward_function_imports(
                path.read_text(), module_name(path), is_package=path.name == "__init__.py"
            )
    assert violations == [], "function-level imports of a higher layer:\n" + "\n".join(violations)


def test_the_check_sees_an_upward_import_inside_a_function() -> None:
    source = (
        "from apps.tools.models import Tool\n"
        "def run():\n"
        "    from apps.agents.orchestrator import session_lock\n"
        "    from apps.core.locks import advisory_lock\n"
        "class Job:\n"
        "    async def finish(self):\n"
        "        import apps.agents.models\n"
        "        from apps import agents\n"
        "        from config.celery import app\n"
    )
    assert upward_function_imports(source, "apps.tools.jobs") == [
        "apps.tools.jobs:3: apps.agents.orchestrator",
        "apps.tools.jobs:7: apps.agents.models",
        "apps.tools.jobs:8: apps.agents",
        "apps.tools.jobs:9: config.celery",
    ]
    # Downward, or within the layer, is fine; so is a relative import inside the app.
    assert upward_function_imports(source, "apps.agents.jobs") == [
        "apps.agents.jobs:9: config.celery"
    ]
    relative = "def f():\n    from ..agents import models\n    from .models import Tool\n"
    assert upward_function_imports(relative, "apps.tools.jobs") == [
        "apps.tools.jobs:2: apps.agents"
    ]
    # Independent siblings of one layer ("apps.policies | apps.approvals") never import
    # each other either.
    sibling = "def f():\n    from apps.approvals import models\n"
    assert upward_function_imports(sibling, "apps.policies.services") == [
        "apps.policies.services:2: apps.approvals"
    ]
