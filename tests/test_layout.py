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


def library_imports() -> dict[str, set[str]]:
    """Each module of ``diffusion`` (dotted) -> the ``diffusion`` modules it imports, TYPE_CHECKING imports included."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "diffusion").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        imported = found.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names if alias.name.startswith("diffusion."))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("diffusion."):
                imported.add(node.module)
    return found


def package_of(module: str) -> str:
    """``diffusion.lab.store`` -> ``lab``; a top-level module (``diffusion.network``) is its own package."""
    return module.split(".")[1] if module.count(".") else module


def test_the_library_packages_import_each_other_without_a_loop() -> None:
    """core <- lab, embeddings, metrics <- cli: a graph of packages with no cycle (docs/architecture.md, "Layers")."""
    graph: dict[str, set[str]] = {}
    for module, imported in library_imports().items():
        here = package_of(module)
        graph.setdefault(here, set()).update(package_of(m) for m in imported if package_of(m) != here)
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(package: str, trail: list[str]) -> None:
        if state.get(package) == "done":
            return
        assert state.get(package) != "open", f"packages import each other in a loop: {' -> '.join([*trail, package])}"
        state[package] = "open"
        for imported in sorted(graph.get(package, ())):
            visit(imported, [*trail, package])
        state[package] = "done"
        order.append(package)

    for package in sorted(graph):
        visit(package, [])
    assert order.index("core") < order.index("lab") < order.index("cli"), order
    assert graph["core"] <= {"core"}, f"core imports {graph['core']}"


def test_the_byte_store_imports_nothing_that_builds_networks() -> None:
    """``diffusion.lab.store`` (bytes under one root) needs no torch and no other module of the lab."""
    store = ROOT / "diffusion" / "lab" / "store.py"
    roots = imported_roots("diffusion")[str(store.relative_to(ROOT))]
    assert "torch" not in roots and "diffusion" not in roots, roots
