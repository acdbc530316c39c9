"""The command line end to end: configure → validate → run → status; simulate; demo; --help."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from cindra_dask.cli import app
from cindra_dask.config import SingleRecordingConfiguration, load_configuration
from cindra_dask.simulate import load_ground_truth, simulate_recording
from cindra_dask.store import RecordingStore, frames_path

runner = CliRunner()


def test_configure_validate_run_status(tmp_path: Path) -> None:
    data = tmp_path / "data" / "mouse1"
    result = runner.invoke(app, ["simulate", str(data), "--set", "frame_height=48", "--set", "frame_width=40", "--set", "frame_count=60", "--set", "cell_count=5", "--set", "non_cell_count=1", "--set", "plane_count=2", "--set", "seed=4"])
    assert result.exit_code == 0, result.output
    truth = load_ground_truth(data / "ground_truth.npz")
    assert truth.parameters.plane_count == 2

    config = tmp_path / "mouse1.yaml"
    result = runner.invoke(app, ["configure", str(config), "--set", f"file_io.data_path={data}", "--set", f"file_io.output_path={tmp_path / 'out'}", "--set", "cluster.workers=1", "--set", "runtime.display_progress_bars=false"])
    assert result.exit_code == 0, result.output
    configuration = load_configuration(config)
    assert isinstance(configuration, SingleRecordingConfiguration) and configuration.file_io.data_path == data
    assert "# Evenly spaced frames sampled to build the reference image." in config.read_text()
    assert runner.invoke(app, ["configure", str(config)]).exit_code == 2  # refuses to overwrite

    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    assert "60 frames × 2 planes × 1 channels of 48×40" in result.output
    assert not (tmp_path / "out").exists()

    result = runner.invoke(app, ["run", str(config), "--phase", "ingest", "--no-progress"])
    assert result.exit_code == 0, result.output
    store = RecordingStore(tmp_path / "out" / "mouse1.zarr")
    movie = simulate_recording(truth.parameters).movie
    for plane in range(2):
        np.testing.assert_array_equal(store.read(frames_path(plane, 0)), movie[plane, 0])

    result = runner.invoke(app, ["status", str(store.path)])
    assert result.exit_code == 0 and "step ingest" in result.output and "complete" in result.output
    assert "plane_1/raw/channel_0" in result.output and "(60, 48, 40)" in result.output

    result = runner.invoke(app, ["run", str(config), "--phase", "discover"])
    assert result.exit_code == 2 and "unknown phase" in result.output
    result = runner.invoke(app, ["run", str(config), "--target-plane", "5", "--phase", "ingest"])
    assert result.exit_code == 2 and "target_plane 5" in result.output
    result = runner.invoke(app, ["run", str(config), "--set", "registration.batch_size=0"])
    assert result.exit_code == 2 and "registration.batch_size" in result.output


def test_demo_runs_on_a_local_cluster(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", str(tmp_path), "--frames", "120", "--size", "64", "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "demo: 120 frames of 64×64 px at 30 Hz (4 s) with 10 simulated cells, on 1 local worker; it ends with the accuracy against the simulator's truth and the paths of the results"
    assert not any("% of" in line for line in lines)  # --no-progress
    assert not any(" shape (" in line for line in lines)  # the array listing is `status`'s
    accuracy = lines.index("accuracy against the simulator's ground truth:")
    assert lines[accuracy - 1].startswith("found ") and lines[accuracy + 1].startswith("  registration: rigid offsets")
    assert "  README.md's simulator figures are for 2000 frames; with 120 detection finds fewer of the quieter cells" in "\n".join(lines)
    store_path = tmp_path / "results" / "demo_recording.zarr"
    assert lines[-3:] == [
        f"QC report:     {tmp_path / 'results' / 'demo_recording_report.html'}",
        f"results:       {store_path}  (`cindra-dask status {store_path}` lists every step and array)",
        f"configuration: {tmp_path / 'demo_configuration.yaml'}  (`cindra-dask run {tmp_path / 'demo_configuration.yaml'}` skips what is done)",
    ]
    store = RecordingStore(tmp_path / "results" / "demo_recording.zarr")
    assert all(record.complete for record in store.phase_records().values())
    assert set(store.phase_records()) == {"ingest", "registration/plane_0", "detection/plane_0", "extraction/plane_0", "combine"}
    assert store.read(frames_path(0, 0)).shape == (120, 64, 64)
    assert yaml.safe_load((tmp_path / "demo_configuration.yaml").read_text())["file_io"]["output_path"] == str(tmp_path / "results")


def test_help_explains_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("configure", "validate", "run", "status", "simulate", "demo"):
        assert command in result.output
    run_help = runner.invoke(app, ["run", "--help"]).output
    assert "--target-plane" in run_help and "--scheduler-address" in run_help and "--set" in run_help
