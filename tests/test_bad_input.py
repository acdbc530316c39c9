"""Bad input: one clear line per problem naming the file or field, exit ≠ 0, no traceback, nothing written."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from cindra_dask.cli import app
from cindra_dask.config import SingleRecordingConfiguration, configuration_from_mapping, save_configuration
from tests.conftest import write_tiff_recording

ACQUISITION = {"frame_rate": 30.0, "plane_number": 2, "channel_number": 1}


def _good_recording(root: Path) -> Path:
    data = root / "data"
    pages = np.random.default_rng(0).integers(0, 100, size=(2 * 50, 12, 14)).astype(np.int16)
    write_tiff_recording(data, pages, file_page_counts=(40, 60), acquisition=ACQUISITION)
    return data


def _config(root: Path, data: Path, **sections: dict) -> Path:
    payload = {"runtime": {"display_progress_bars": False}, "file_io": {"data_path": str(data), "output_path": str(root / "out")}, "cluster": {"workers": 1}}
    for name, values in sections.items():
        payload.setdefault(name, {}).update(values)
    return save_configuration(configuration_from_mapping(payload, source="test"), root / "config.yaml")


def _missing_directory(root: Path) -> tuple[Path, str]:
    return _config(root, root / "nowhere"), "file_io.data_path"


def _no_tiffs(root: Path) -> tuple[Path, str]:
    data = root / "data"
    data.mkdir()
    (data / "cindra_parameters.json").write_text(json.dumps(ACQUISITION))
    return _config(root, data), "no .tif/.tiff files"


def _corrupt_tiff(root: Path) -> tuple[Path, str]:
    data = _good_recording(root)
    (data / "recording_3.tif").write_bytes(b"II*\x00" + os.urandom(200))
    return _config(root, data), "recording_3.tif: not a readable TIFF"


def _truncated_tiff(root: Path) -> tuple[Path, str]:
    data = _good_recording(root)
    path = data / "recording_2.tif"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return _config(root, data), "recording_2.tif"


def _pages_not_divisible(root: Path) -> tuple[Path, str]:
    data = root / "data"
    write_tiff_recording(data, np.zeros((101, 12, 14), np.int16), file_page_counts=(50, 51), acquisition=ACQUISITION)
    return _config(root, data), "not a multiple of plane_number × channel_number"


def _inconsistent_shapes(root: Path) -> tuple[Path, str]:
    data = _good_recording(root)
    tifffile.imwrite(data / "recording_3.tif", np.zeros((4, 10, 14), np.int16), photometric="minisblack")
    return _config(root, data), "recording_3.tif: frames are 10×14"


def _missing_parameters(root: Path) -> tuple[Path, str]:
    data = _good_recording(root)
    (data / "cindra_parameters.json").unlink()
    return _config(root, data), "no cindra_parameters.json found"


def _malformed_parameters(root: Path) -> tuple[Path, str]:
    data = _good_recording(root)
    (data / "cindra_parameters.json").write_text('{"frame_rate": 30.0, "plane_number": 2,')
    return _config(root, data), "cindra_parameters.json: not valid JSON"


def _invalid_parameter_value(root: Path) -> tuple[Path, str]:
    data = _good_recording(root)
    (data / "cindra_parameters.json").write_text(json.dumps({**ACQUISITION, "channel_number": 3}))
    return _config(root, data), "cindra_parameters.json: channel_number"


def _mroi_out_of_range(root: Path) -> tuple[Path, str]:
    data = _good_recording(root)
    (data / "cindra_parameters.json").write_text(json.dumps({**ACQUISITION, "roi_number": 2, "roi_lines": [[0, 5], [6, 40]], "roi_x_coordinates": [0, 14], "roi_y_coordinates": [0, 0]}))
    return _config(root, data), "roi_lines[1]: last row 40 is outside the 12-row frames"


def _unwritable_output(root: Path) -> tuple[Path, str]:
    data = _good_recording(root)
    blocker = root / "a_file"
    blocker.write_text("not a directory")
    payload = {"runtime": {"display_progress_bars": False}, "file_io": {"data_path": str(data), "output_path": str(blocker / "results")}}
    return save_configuration(configuration_from_mapping(payload, source="test"), root / "config.yaml"), "file_io.output_path"


def _locked_store(root: Path) -> tuple[Path, str]:
    data = _good_recording(root)
    (root / "out").mkdir()
    (root / "out" / "data.zarr.lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started": "earlier"}))
    return _config(root, data), "locked by another run"


def _yaml_syntax_error(root: Path) -> tuple[Path, str]:
    path = root / "config.yaml"
    path.write_text("file_io:\n  data_path: [oops\nmain:\n  tau: 1\n")
    return path, "YAML syntax error at line"


def _unknown_key(root: Path) -> tuple[Path, str]:
    path = root / "config.yaml"
    path.write_text("registration:\n  maximum_ofset_fraction: 0.2\n")
    return path, "registration.maximum_ofset_fraction: unknown key"


def _bad_frames_out_of_range(root: Path) -> tuple[Path, str]:
    data = _good_recording(root)
    np.save(data / "bad_frames.npy", np.array([3, 999]))
    return _config(root, data), "bad_frames.npy: frame indices must lie in [0, 50)"


def _short_recording(root: Path, pages: int) -> tuple[Path, str]:
    data = root / "data"
    write_tiff_recording(data, np.random.default_rng(0).integers(0, 100, size=(pages, 12, 14)).astype(np.int16), file_page_counts=(pages,), acquisition={**ACQUISITION, "plane_number": 1})
    frames = f"{pages} frame{'s' if pages != 1 else ''}"
    return _config(root, data), f"{data}: {frames} per plane ({pages} TIFF pages / 1 plane / 1 channel); registration and detection need at least 50 (200+ recommended)"


def _one_frame(root: Path) -> tuple[Path, str]:
    return _short_recording(root, 1)


def _three_frames(root: Path) -> tuple[Path, str]:
    return _short_recording(root, 3)


def _thirty_frames(root: Path) -> tuple[Path, str]:
    return _short_recording(root, 30)


def _forty_nine_frames(root: Path) -> tuple[Path, str]:
    return _short_recording(root, 49)


def _channel_mismatch(root: Path) -> tuple[Path, str]:
    data = _good_recording(root)
    return _config(root, data, main={"two_channels": True}), "main.two_channels"


CASES: dict[str, Callable[[Path], tuple[Path, str]]] = {
    function.__name__.strip("_"): function
    for function in (
        _missing_directory, _no_tiffs, _corrupt_tiff, _truncated_tiff, _pages_not_divisible, _inconsistent_shapes, _missing_parameters,
        _malformed_parameters, _invalid_parameter_value, _mroi_out_of_range, _unwritable_output, _locked_store, _yaml_syntax_error,
        _unknown_key, _bad_frames_out_of_range, _channel_mismatch, _one_frame, _three_frames, _thirty_frames, _forty_nine_frames,
    )
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_clear_line_and_writes_nothing(tmp_path: Path, case: str, command: str) -> None:
    config_path, expected = CASES[case](tmp_path)
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, [command, str(config_path)])
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    error_lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert error_lines and len(error_lines) == len([line for line in output.splitlines() if line.strip() and not line.startswith("warning: ")]), output
    assert expected in output, output
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before  # nothing written, nothing removed


def test_an_output_folder_inside_the_data_folder_is_warned_about_and_still_validates(tmp_path: Path) -> None:
    """Not an error (some labs keep results beside their data), but one line saying where the store lands."""
    from cindra_dask.config import load_configuration
    from cindra_dask.pipeline import preflight

    data = _good_recording(tmp_path)
    inside = load_configuration(_config(tmp_path, data, file_io={"output_path": str(data / "results")}))
    with pytest.warns(UserWarning, match=r"file_io.output_path: the store .*results.* is inside the data folder"):
        context = preflight(inside)
    assert context.store.path.parent == data / "results" and not context.store.path.exists()
    outside = load_configuration(_config(tmp_path, data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        preflight(outside)
    assert not [warning for warning in caught if "inside the data folder" in str(warning.message)]
