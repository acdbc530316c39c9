"""The notebook in notebooks/ runs top to bottom (nbclient) on a small simulated recording."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "pipeline_tour.ipynb"


def test_pipeline_tour_notebook_executes(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", []))
    assert "detection_f1" in outputs and "classified as cells" in outputs
    assert "dashboard:" in outputs
