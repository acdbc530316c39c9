"""The architecture of DESIGN.md §2, checked: import-linter contracts, no import cycle, no printing
below the command line, no Zarr group opened outside the store module, one skip-or-run loop."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cindra_dask"


def _modules() -> dict[str, ast.Module]:
    return {str(path.relative_to(PACKAGE.parent)): ast.parse(path.read_text()) for path in sorted(PACKAGE.rglob("*.py"))}


def test_import_linter_contracts_are_kept() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "3 kept, 0 broken" in result.stdout


def test_no_module_imports_itself_back() -> None:
    """No cycle between modules of the package (imports inside functions included; type-checking-only imports excluded)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("cindra_dask", exclude_type_checking_imports=True)
    cycles = [
        (importer, imported)
        for importer in sorted(graph.modules)
        for imported in sorted(graph.find_modules_directly_imported_by(importer))
        if imported.startswith("cindra_dask") and graph.chain_exists(importer=imported, imported=importer)
    ]
    assert cycles == []


def test_nothing_below_the_command_line_prints() -> None:
    offenders = [
        f"{name}:{node.lineno}"
        for name, tree in _modules().items()
        if name != "cindra_dask/cli.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    ]
    assert offenders == []


def test_only_the_store_opens_zarr_groups() -> None:
    offenders = [
        f"{name}:{node.lineno}"
        for name, tree in _modules().items()
        if name != "cindra_dask/store.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("open_group", "open") and isinstance(node.value, ast.Name) and node.value.id == "zarr"
    ]
    assert offenders == []


def test_the_skip_or_run_loop_exists_once() -> None:
    """Only the runner's loop marks steps started or complete."""
    callers = sorted(
        name
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("mark_phase_started", "mark_phase_complete") and name != "cindra_dask/store.py"
    )
    assert set(callers) == {"cindra_dask/runner/loop.py"}
