"""The dependency rule of docs/architecture.md ("Layers"), checked on the source: who may import whom."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = ("jobs", "serve", "dashboard", "cluster")
FORBIDDEN_IN_LIBRARY = ("ray", "streamlit", "fastapi", "starlette", "uvicorn", "plotly", *APPS)


def imported_roots(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found.setdefault(str(path.relative_to(ROOT)), set()).update(n.split(".")[0] for n in names)
    return found


def test_the_library_imports_no_application_framework() -> None:
    for path, roots in imported_roots("diffusion").items():
        assert not roots & set(FORBIDDEN_IN_LIBRARY), f"{path} imports {roots & set(FORBIDDEN_IN_LIBRARY)}"


@pytest.mark.parametrize("package", APPS)
def test_applications_never_import_each_other(package: str) -> None:
    others = set(APPS) - {package}
    for path, roots in imported_roots(package).items():
        assert not roots & others, f"{path} imports {roots & others}"


def test_the_library_imports_its_own_modules_at_the_top_only() -> None:
    """No import of a ``diffusion`` module inside a function: such imports hide a cycle; the lab store has none."""
    for path in (ROOT / "diffusion").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [module or ""]
                assert not [n for n in names if n.split(".")[0] == "diffusion"], \
                    f"{path.relative_to(ROOT)}:{node.lineno} imports {names} inside {function.name}()"
