"""`configure` leaves the fields main.indicator fills as comments (issue 20, configuration friction):
an indicator set later in the file is not silently overridden by a written default."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cindra_dask.cli import app
from cindra_dask.config import load_configuration


def _configure(path: Path, *overrides: str) -> str:
    result = CliRunner().invoke(app, ["configure", str(path), *(argument for override in overrides for argument in ("--set", override))])
    assert result.exit_code == 0, result.output
    return path.read_text()


def _with_indicator(text: str, indicator: str) -> str:
    """The file as a user edits it: main's ``indicator`` line (the first) set to ``indicator``."""
    return re.sub(r"(?m)^  indicator: .*$", f"  indicator: {indicator}", text, count=1)


def _kinetics(path: Path) -> tuple[Any, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "main.tau ... is used, not main.indicator's" would be an error
        configuration = load_configuration(path)
    return configuration.main.tau, configuration.spike_deconvolution.rise_time, configuration.metadata.indicator


def test_the_template_leaves_tau_and_rise_time_to_the_indicator(tmp_path: Path) -> None:
    paths = ("file_io.data_path=/data/rec1", "file_io.output_path=/results")
    plain = _configure(tmp_path / "plain.yaml", *paths)
    assert "  # tau: 0.4  (the default unless main.indicator sets it; uncomment to override the indicator)" in plain
    assert "  # rise_time: 0.0  (the default unless main.indicator sets it; uncomment to override the indicator)" in plain
    assert not re.search(r"(?m)^\s*(tau|rise_time):", plain)
    assert _kinetics(tmp_path / "plain.yaml") == (0.4, 0.0, None)
    (tmp_path / "edited.yaml").write_text(_with_indicator(plain, "GCaMP6s"))
    assert _kinetics(tmp_path / "edited.yaml") == (1.7, 0.09, "GCaMP6s")

    chosen = _configure(tmp_path / "chosen.yaml", *paths, "main.indicator=jGCaMP8s")
    assert "  # tau: 0.8  (main.indicator jGCaMP8s's value; uncomment to override the indicator)" in chosen
    assert _kinetics(tmp_path / "chosen.yaml") == (0.8, 0.01, "jGCaMP8s")
    (tmp_path / "changed.yaml").write_text(_with_indicator(chosen, "GCaMP6f"))
    assert _kinetics(tmp_path / "changed.yaml") == (0.7, 0.06, "GCaMP6f")

    written = _configure(tmp_path / "written.yaml", *paths, "main.tau=1.2")
    assert re.search(r"(?m)^  tau: 1\.2$", written) and "  # rise_time: 0.0  (" in written
    assert _kinetics(tmp_path / "written.yaml") == (1.2, 0.0, None)
