"""UCLA Miniscope AVI input (``file_io.input_format: avi``): V3 and V4 folders written by the one-photon
simulator ingest to the simulator's own frames; bad input gives one clear line and writes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from typer.testing import CliRunner

from cindra_dask.cli import app
from cindra_dask.config import InputFormat, configuration_from_mapping, save_configuration
from cindra_dask.io.inputs import inspect_inputs
from cindra_dask.pipeline import run_single_recording
from cindra_dask.simulate import miniscope_file_name, one_photon_parameters, simulate_recording, write_miniscope_recording
from cindra_dask.store import RecordingStore, frames_path
from tests.conftest import single_configuration

PARAMETERS = one_photon_parameters(frame_height=40, frame_width=48, frame_count=130, cell_count=6, seed=2)


def _folder(root: Path, *, version: str) -> Path:
    return write_miniscope_recording(PARAMETERS, root / f"miniscope_{version}", version=version, frames_per_file=50)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_a_miniscope_folder_ingests_to_the_simulated_frames(tmp_path: Path, client: Any, version: str) -> None:
    data = _folder(tmp_path, version=version)
    names = sorted(path.name for path in data.glob("*.avi"))
    assert names == sorted(miniscope_file_name(index, version=version) for index in range(3))  # type: ignore[arg-type]
    inspected = inspect_inputs(data, input_format=InputFormat.AUTO, hdf5_dataset="data", nwb_series=None, zarr_array=None, ignored_file_names=(), explicit=None)
    assert inspected.problems == [] and inspected.input_format is InputFormat.AVI
    assert [info.page_count for info in inspected.files] == [50, 50, 30] and inspected.acquisition is not None
    assert inspected.acquisition.used.kind == "miniscope" and abs(inspected.acquisition.parameters.frame_rate - PARAMETERS.frame_rate_hz) < 0.01
    store_path = run_single_recording(single_configuration(data, tmp_path / "out"), client=client, phases=("ingest",)).store_path
    store = RecordingStore(store_path)
    expected = simulate_recording(PARAMETERS).movie[0, 0]
    np.testing.assert_array_equal(store.read(frames_path(0, 0)), expected)
    attributes = store.attributes()
    assert attributes["input_format"] == "avi" and attributes["avi_files"] == [miniscope_file_name(index, version=version) for index in range(3)]  # type: ignore[arg-type]


# -- bad input: one line naming the file and what to do, nothing written ---------------------------------


def _config(root: Path, data: Path) -> Path:
    payload = {"runtime": {"display_progress_bars": False}, "file_io": {"data_path": str(data), "output_path": str(root / "out"), "input_format": "avi"}, "cluster": {"workers": 1}}
    return save_configuration(configuration_from_mapping(payload, source="test"), root / "config.yaml")


def _not_a_video(root: Path) -> tuple[Path, str]:
    data = _folder(root, version="v4")
    (data / "1.avi").write_bytes(b"RIFF but not a video" * 40)
    return _config(root, data), "1.avi: not a readable video"


def _mismatched_frame_sizes(root: Path) -> tuple[Path, str]:
    data = _folder(root, version="v4")
    other = write_miniscope_recording(PARAMETERS.model_copy(update={"frame_width": 40}), root / "other", version="v4", frames_per_file=50)
    shutil.copy(other / "2.avi", data / "2.avi")
    return _config(root, data), "2.avi: frames are 40×40 but"


def _missing_timestamps(root: Path) -> tuple[Path, str]:
    data = _folder(root, version="v3")
    (data / "timestamp.dat").unlink()
    return _config(root, data), "no Miniscope timestamps (timeStamps.csv or timestamp.dat) beside the AVIs"


def _timestamps_of_another_recording(root: Path) -> tuple[Path, str]:
    data = _folder(root, version="v4")
    (data / "2.avi").unlink()
    return _config(root, data), "timeStamps.csv: 130 timestamps but the AVIs hold 100 frames"


CASES: dict[str, Callable[[Path], tuple[Path, str]]] = {function.__name__.strip("_"): function for function in (_not_a_video, _mismatched_frame_sizes, _missing_timestamps, _timestamps_of_another_recording)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_miniscope_input_gives_one_clear_line_and_writes_nothing(tmp_path: Path, case: str) -> None:
    config_path, expected = CASES[case](tmp_path)
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, ["run", str(config_path)])
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert expected in lines[0], result.output
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before
