"""The layers of DESIGN.md hold by themselves: a test walks every import and fails on a forbidden arrow.

``networks/`` is the lowest layer (pure torch/MONAI: no files, transforms or workflows);
``evaluation/`` is framework-free analysis (no workflows, no MLflow). Imports are read with
``ast`` — module-level and function-level alike, so an import "hidden" inside a function counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "networks": ("transforms", "pipelines", "evaluation", "phantoms", "mlflow"),
    "evaluation": ("pipelines", "mlflow"),
    "transforms": ("pipelines", "evaluation"),
    "phantoms": ("pipelines", "evaluation", "networks", "mlflow"),
}
"""Package → the top-level modules it must not import."""


def imported_modules(source: str) -> set[str]:
    """Every module an imported name comes from (``import a.b`` → ``a.b``; ``from a import b`` → ``a``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def violations(package_dir: Path, forbidden: tuple[str, ...]) -> list[str]:
    """``"file: module"`` for each import of a forbidden top-level module under ``package_dir``."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        for module in sorted(imported_modules(path.read_text())):
            if module.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(package_dir.parent)}: imports {module}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_import(package: str) -> None:
    assert violations(ROOT / package, FORBIDDEN[package]) == []


def test_a_forbidden_import_is_caught_wherever_it_hides(tmp_path: Path) -> None:
    """A synthetic package that breaks the rule, at module level and inside a function."""
    package = tmp_path / "networks"
    package.mkdir()
    (package / "fine.py").write_text("import torch\nfrom monai.networks.blocks import Convolution\n")
    (package / "top.py").write_text("from pipelines.training import train\n")
    (package / "hidden.py").write_text("def f():\n    import mlflow.pytorch\n    return mlflow\n")
    (package / "relative.py").write_text("from .fine import torch\n")  # inside the package: allowed
    assert violations(package, FORBIDDEN["networks"]) == [
        "networks/hidden.py: imports mlflow.pytorch",
        "networks/top.py: imports pipelines.training",
    ]
