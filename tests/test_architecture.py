"""The architecture of DESIGN.md §2, checked: import-linter contracts, no import cycle, no printing
below the command line, no Zarr group opened outside the store module, one skip-or-run loop, every
stage module but the plan under the kernel contract, no parameter default declared outside config.py."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cindra_dask"


def _modules() -> dict[str, ast.Module]:
    return {str(path.relative_to(PACKAGE.parent)): ast.parse(path.read_text()) for path in sorted(PACKAGE.rglob("*.py"))}


def test_import_linter_contracts_are_kept() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "4 kept, 0 broken" in result.stdout


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


def _kernel_contract_modules() -> set[str]:
    contracts = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (kernels,) = [contract for contract in contracts if contract["name"].startswith("Kernels never import")]
    return set(kernels["source_modules"])


def test_every_stage_module_but_its_plan_is_under_the_kernel_contract() -> None:
    """A new kernel module in a stage package cannot escape the contract by not being listed."""
    stages = ("registration", "detection", "extraction", "multirecording", "cnmf", "miniscope")
    modules = {f"cindra_dask.{stage}.{path.stem}" for stage in stages for path in (PACKAGE / stage).glob("*.py") if path.stem not in ("__init__", "graph")}
    assert modules - _kernel_contract_modules() == set()


UNIT_SUFFIX = re.compile(r"_(px|frames|s|hz)$")
"""Units kernel argument names carry and configuration field names do not (``tau_s`` ↔ ``tau``)."""
NOT_CONFIGURATION = {"workers"}
"""Argument names that mean something else than the configuration field of that name (``workers``:
``scipy.fft`` threads in a kernel, worker processes in ``cluster``)."""

def _configuration_field_names() -> set[str]:
    from cindra_dask.config import MultiRecordingConfiguration, Section, SingleRecordingConfiguration

    def names(model: type[Section]) -> set[str]:
        found: set[str] = set()
        for name, field in model.model_fields.items():
            nested = field.annotation
            found |= names(nested) if isinstance(nested, type) and issubclass(nested, Section) else {name}
        return found

    return names(SingleRecordingConfiguration) | names(MultiRecordingConfiguration)


def test_no_function_default_copies_a_configuration_field() -> None:
    """A default on an argument named like a configuration field (units aside) declares that parameter a second time."""
    fields = _configuration_field_names() - NOT_CONFIGURATION
    offenders = []
    for name, tree in _modules().items():
        if name in ("cindra_dask/config.py", "cindra_dask/cli.py"):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            arguments = node.args
            positional = arguments.posonlyargs + arguments.args
            defaults = [*zip(positional[len(positional) - len(arguments.defaults) :], arguments.defaults), *zip(arguments.kwonlyargs, arguments.kw_defaults)]
            for argument, default in defaults:
                if default is None or (isinstance(default, ast.Constant) and default.value is None):
                    continue
                if argument.arg in fields or UNIT_SUFFIX.sub("", argument.arg) in fields:
                    offenders.append(f"{name}:{node.lineno} {node.name}({argument.arg}={ast.unparse(default)})")
    assert offenders == []
