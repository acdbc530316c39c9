"""The store never lies (issue 20): a rerun phase removes every later phase's outputs; a missing or
damaged output of a complete step is rebuilt on the next run instead of being skipped."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from cindra_dask.manifest import verify_store
from cindra_dask.pipeline import run_single_recording, store_status
from cindra_dask.runner.maintenance import clean_store
from cindra_dask.store import RecordingStore
from tests.conftest import single_configuration

ALL_STEPS = ["ingest", "registration/plane_0", "detection/plane_0", "extraction/plane_0", "combine"]


class ProcessedRecording(NamedTuple):
    data: Path
    store: RecordingStore


class Messages:
    """Run events that keep the messages (progress is ignored)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)

    def computing(self, label: str, future: Any, client: Any) -> None:
        pass


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory, client: Any) -> ProcessedRecording:
    """A small recording run through every step (64×64 px, 300 frames, 10 cells)."""
    from cindra_dask.simulate import SimulationParameters, write_recording

    root = tmp_path_factory.mktemp("integrity")
    data = write_recording(SimulationParameters(frame_height=64, frame_width=64, frame_count=300, cell_count=10, non_cell_count=0, file_count=1, seed=3), root / "data")
    report = run_single_recording(single_configuration(data, root / "out"), client=client)
    assert [outcome.state for outcome in report.outcomes] == ["ran"] * 5
    assert RecordingStore(report.store_path).array("plane_0/rois/centroids").shape[0] >= 5
    return ProcessedRecording(data, RecordingStore(report.store_path))


def _copy(processed: ProcessedRecording, tmp_path: Path) -> Any:
    """A copy of the processed store (file times kept) and its configuration."""
    shutil.copytree(processed.store.path, tmp_path / "out" / processed.store.path.name)
    return single_configuration(processed.data, tmp_path / "out")


def _states(report: Any) -> dict[str, str]:
    return {outcome.name: outcome.state for outcome in report.outcomes}


def test_a_rerun_phase_removes_the_later_phases_outputs(processed: ProcessedRecording, tmp_path: Path, client: Any) -> None:
    configuration = _copy(processed, tmp_path)
    store = RecordingStore(tmp_path / "out" / processed.store.path.name)
    assert (store.path / "combined").is_dir()
    changed = single_configuration(processed.data, tmp_path / "out", roi_detection={"threshold_scaling": 2.0})
    events = Messages()
    report = run_single_recording(changed, client=client, phases=["process"], events=events)
    assert _states(report) == {"registration/plane_0": "skipped", "detection/plane_0": "ran", "extraction/plane_0": "ran"}
    assert "step 'detection/plane_0': removed plane_0/detection, plane_0/rois, plane_0/extraction, combined (outputs of this step and of the steps after it, which depend on it)" in events.lines
    assert not (store.path / "combined").exists()  # the old combine described the old ROIs
    assert not any(path.startswith("combined/") for path in store.array_paths())
    assert any(line.startswith("step combine") and "not run" in line for line in store_status(store.path))
    assert verify_store(store) == []
    report = run_single_recording(changed, client=client, phases=["combine"])
    assert _states(report) == {"combine": "ran"}
    assert store.array("combined/rois/centroids").shape == store.array("plane_0/rois/centroids").shape
    # a rerun of the step alone (with the default configuration again) also drops its own old arrays
    assert run_single_recording(configuration, client=client).outcomes[-1].state == "ran"


def test_a_deleted_array_is_rebuilt(processed: ProcessedRecording, tmp_path: Path, client: Any) -> None:
    configuration = _copy(processed, tmp_path)
    store = RecordingStore(tmp_path / "out" / processed.store.path.name)
    shutil.rmtree(store.path / "plane_0" / "rois" / "xpix")
    events = Messages()
    report = run_single_recording(configuration, client=client, events=events)
    assert _states(report) == {"ingest": "skipped", "registration/plane_0": "skipped", "detection/plane_0": "ran", "extraction/plane_0": "ran", "combine": "ran"}
    assert "step 'detection/plane_0': complete, but its outputs are damaged (plane_0/rois/xpix: missing (listed in the manifest)); running it again" in events.lines
    assert verify_store(store) == []
    assert set(_states(run_single_recording(configuration, client=client)).values()) == {"skipped"}


def test_a_deleted_group_and_a_truncated_array_metadata_are_rebuilt(processed: ProcessedRecording, tmp_path: Path, client: Any) -> None:
    configuration = _copy(processed, tmp_path)
    store = RecordingStore(tmp_path / "out" / processed.store.path.name)
    shutil.rmtree(store.path / "combined")
    metadata = store.path / "plane_0" / "extraction" / "spikes" / "zarr.json"
    metadata.write_text(metadata.read_text()[:40])
    events = Messages()
    report = run_single_recording(configuration, client=client, events=events)
    assert _states(report) == {"ingest": "skipped", "registration/plane_0": "skipped", "detection/plane_0": "skipped", "extraction/plane_0": "ran", "combine": "ran"}
    assert "step 'extraction/plane_0': complete, but its outputs are damaged (plane_0/extraction/spikes: unreadable metadata (zarr.json)); running it again" in events.lines
    assert verify_store(store) == []


def test_a_flipped_byte_is_rebuilt(processed: ProcessedRecording, tmp_path: Path, client: Any) -> None:
    configuration = _copy(processed, tmp_path)
    store = RecordingStore(tmp_path / "out" / processed.store.path.name)
    chunk = sorted((store.path / "plane_0" / "registration" / "rigid_offsets").rglob("c/*/*"))[0]
    payload = bytearray(chunk.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    chunk.write_bytes(bytes(payload))
    assert any("plane_0/registration/rigid_offsets: contents differ" in line for line in verify_store(store))
    events = Messages()
    report = run_single_recording(configuration, client=client, events=events)
    assert _states(report) == {"ingest": "skipped", **{step: "ran" for step in ALL_STEPS[1:]}}
    assert "step 'registration/plane_0': complete, but its outputs are damaged (plane_0/registration/rigid_offsets: stored bytes changed since the manifest was written); running it again" in events.lines
    assert verify_store(store) == []


def test_files_touched_but_unchanged_and_cleaned_intermediates_are_not_rerun(processed: ProcessedRecording, tmp_path: Path, client: Any) -> None:
    configuration = _copy(processed, tmp_path)
    store = RecordingStore(tmp_path / "out" / processed.store.path.name)
    touched = [path for path in (store.path / "plane_0" / "rois").rglob("c/*") if path.is_file()]
    for chunk in touched:
        chunk.write_bytes(chunk.read_bytes())  # newer than the manifest, same bytes: checksummed, kept
    assert len(touched) > 10
    clean_store(store, what=("registered",))
    report = run_single_recording(configuration, client=client)
    assert set(_states(report).values()) == {"skipped"}


# -- exports and reads of a damaged store ------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.test_manifest import write_synthetic_store

    return write_synthetic_store(tmp_path_factory.mktemp("integrity_synthetic"))


def _tree(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()} if folder.exists() else {}


def test_an_export_on_a_full_disk_leaves_no_partial_files(synthetic: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import numpy as np

    from cindra_dask.errors import OutputError
    from cindra_dask.export import export_suite2p

    output = tmp_path / "suite2p"
    earlier = export_suite2p(synthetic.path, output)
    assert {path.parent.name for path in earlier} == {"plane0", "plane1"}
    before = _tree(output)
    save = np.save

    def full_disk(file: Any, array: Any, *args: Any, **kwargs: Any) -> None:
        if Path(file).name == "ops.npy" and ".plane1." in Path(file).parent.name:
            Path(file).write_bytes(b"\x93NUMPY")  # a truncated file, as a full disk leaves it
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        save(file, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", full_disk)
    with pytest.raises(OutputError, match=r"suite2p: no space left on the device \(.* free\); nothing was exported \(earlier files are unchanged\)"):
        export_suite2p(synthetic.path, output, overwrite=True)
    assert _tree(output) == before  # plane0 was complete too, but nothing is moved into place unless every plane is
    assert sorted(path.name for path in output.iterdir()) == ["plane0", "plane1"]  # no temporary folder left
    with pytest.raises(OutputError, match="no space left"):
        export_suite2p(synthetic.path, tmp_path / "fresh")
    assert list((tmp_path / "fresh").iterdir()) == []
    def quota_exceeded(file: Any, array: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EDQUOT, "Disk quota exceeded", str(file))

    monkeypatch.setattr(np, "save", quota_exceeded)
    with pytest.raises(OutputError, match=r"quota: disk quota exceeded \(.* free\); nothing was exported"):
        export_suite2p(synthetic.path, tmp_path / "quota")
    monkeypatch.setattr(np, "save", save)
    written = export_suite2p(synthetic.path, output, overwrite=True)
    assert len(written) == len(earlier) and all(path.is_file() for path in written)
    assert oct((output / "plane0").stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    import os

    current = os.umask(0)
    os.umask(current)
    return current


def _cli(*arguments: str) -> Any:
    from typer.testing import CliRunner

    from cindra_dask.cli import app

    return CliRunner().invoke(app, [str(argument) for argument in arguments])


def _one_error_line(result: Any, expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output


def test_export_into_a_file_is_one_clear_line(synthetic: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    _one_error_line(_cli("export", "suite2p", synthetic.path, blocker), f"{blocker}: is a file, not a folder; give a folder to export into")
    _one_error_line(_cli("export", "suite2p", synthetic.path, blocker / "suite2p"), f"{blocker / 'suite2p'}: lies under {blocker}, which is a file, not a folder")
    assert blocker.read_text() == "not a folder"


def test_a_corrupted_chunk_is_one_clear_line_in_report_and_export(synthetic: Any, tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "copy.zarr")
    shutil.copytree(synthetic.path, store.path)
    chunk = sorted(path for path in (store.path / "plane_0" / "extraction" / "cell_fluorescence").rglob("c/*/*") if path.is_file())[0]
    payload = bytearray(chunk.read_bytes())
    for position in range(16, len(payload), 7):
        payload[position] ^= 0xFF
    chunk.write_bytes(bytes(payload))
    expected = f"{store.path}/plane_0/extraction/cell_fluorescence: cannot be read ("
    _one_error_line(_cli("export", "suite2p", store.path, tmp_path / "suite2p"), expected)
    assert not (tmp_path / "suite2p" / "plane0").exists()
    _one_error_line(_cli("report", store.path, "--output", tmp_path / "report.html"), expected)
    assert not (tmp_path / "report.html").exists()


# -- simulate ----------------------------------------------------------------------------------

SMALL_SIMULATION = ["--set", "frame_height=32", "--set", "frame_width=32", "--set", "frame_count=12", "--set", "cell_count=3", "--set", "non_cell_count=0"]


def test_simulate_refuses_a_folder_that_holds_files(tmp_path: Path) -> None:
    folder = tmp_path / "sim"
    assert _cli("simulate", folder, *SMALL_SIMULATION, "--set", "file_count=3").exit_code == 0
    before = _tree(folder)
    assert sorted(before) == ["cindra_parameters.json", "ground_truth.npz", "recording_000.tif", "recording_001.tif", "recording_002.tif"]
    _one_error_line(
        _cli("simulate", folder, *SMALL_SIMULATION, "--set", "frame_height=40"),
        f"{folder}: not empty (cindra_parameters.json, ground_truth.npz, recording_000.tif and 2 more); simulate into a new or empty folder, or pass --overwrite",
    )
    assert _tree(folder) == before
    result = _cli("simulate", folder, *SMALL_SIMULATION, "--set", "frame_height=40", "--set", "file_count=1", "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in folder.iterdir()) == ["cindra_parameters.json", "ground_truth.npz", "recording_000.tif"]  # no file of the old recording left
    import tifffile

    assert tifffile.imread(folder / "recording_000.tif").shape == (12, 40, 32)
    (folder / "mine.tif").write_bytes(b"")
    _one_error_line(_cli("simulate", folder, *SMALL_SIMULATION, "--overwrite"), f"{folder}: holds TIFF files the simulator did not write (mine.tif)")
    assert (folder / "recording_000.tif").exists()
    (tmp_path / "a_file").write_text("x")
    _one_error_line(_cli("simulate", tmp_path / "a_file", *SMALL_SIMULATION), "a_file: is a file, not a folder")


def test_simulate_with_too_many_cells_is_one_clear_line(tmp_path: Path) -> None:
    result = _cli("simulate", tmp_path / "sim", "--set", "frame_height=64", "--set", "frame_width=64", "--set", "frame_count=20", "--set", "cell_count=500")
    _one_error_line(result, "error: cell_count: could not place 500 cells of 12 px (cell_diameter_px) at least 9 px apart in 64×64 frames; lower cell_count or cell_diameter_px")
    assert not (tmp_path / "sim").exists()


def test_manifest_refuses_a_store_a_run_holds(synthetic: Any, tmp_path: Path) -> None:
    import json
    import os

    from cindra_dask.manifest import manifest_path

    store = RecordingStore(tmp_path / "copy.zarr")
    shutil.copytree(synthetic.path, store.path)
    before = manifest_path(store).read_bytes() if manifest_path(store).exists() else None
    store.lock_path.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started": "earlier"}))
    _one_error_line(_cli("manifest", store.path), f"{store.path}: locked by another run (process {os.getpid()} on {os.uname().nodename}, started earlier)")
    assert (manifest_path(store).read_bytes() if manifest_path(store).exists() else None) == before
    store.lock_path.unlink()
    result = _cli("manifest", store.path)
    assert result.exit_code == 0 and manifest_path(store).is_file() and not store.lock_path.exists()


def test_a_truncated_root_metadata_is_one_clear_line(processed: ProcessedRecording, tmp_path: Path) -> None:
    from cindra_dask.config import save_configuration

    configuration = _copy(processed, tmp_path)
    config_path = save_configuration(configuration, tmp_path / "config.yaml")
    store = RecordingStore(tmp_path / "out" / processed.store.path.name)
    root = store.path / "zarr.json"
    root.write_text(root.read_text()[: len(root.read_text()) // 2])
    damaged = root.read_bytes()
    before = _tree(store.path)
    expected = f"{root}: the store's root metadata is damaged (not valid JSON); it holds the configuration and the phase records"
    for arguments in (("status", store.path), ("verify", store.path), ("run", config_path), ("report", store.path), ("manifest", store.path), ("reset", store.path, "--phase", "combine")):
        _one_error_line(_cli(*arguments), expected)
    assert _tree(store.path) == before and root.read_bytes() == damaged
    assert not store.lock_path.exists()


def test_a_truncated_array_metadata_is_named_by_status_and_verify(processed: ProcessedRecording, tmp_path: Path) -> None:
    _copy(processed, tmp_path)
    store = RecordingStore(tmp_path / "out" / processed.store.path.name)
    metadata = store.path / "plane_0" / "detection" / "mean_image" / "zarr.json"
    metadata.write_text(metadata.read_text()[:30])
    assert f"  {'plane_0/detection/mean_image':<40} DAMAGED: zarr.json is not valid JSON; `cindra-dask run` with the same configuration rebuilds it" in store_status(store.path)
    assert verify_store(store) == [f"plane_0/detection/mean_image: metadata (zarr.json) is not valid JSON; rerun phase 'process' (`cindra-dask reset {store.path} --phase process`, then `cindra-dask run`)"]
    result = _cli("verify", store.path)
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_ctrl_c_is_one_line_and_the_run_resumes(processed: ProcessedRecording, tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole process group: the runner and every worker process."""
    import os
    import signal
    import subprocess
    import sys

    from cindra_dask.config import save_configuration

    configuration = single_configuration(processed.data, tmp_path / "out", cluster={"workers": 2, "threads_per_worker": 1, "dashboard_address": ":0"})
    config_path = save_configuration(configuration, tmp_path / "config.yaml")
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [str(Path(sys.executable).parent / "cindra-dask"), "run", str(config_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment, start_new_session=True)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("reference image:"):
            os.killpg(process.pid, signal.SIGINT)
            break
    lines += process.stdout.read().splitlines()
    assert process.wait(timeout=120) == 130, "\n".join(lines)
    output = "\n".join(lines)
    assert "Traceback" not in output and lines[-1] == "interrupted: finished phases are kept; rerun the same command to resume", output
    after = lines[lines.index(next(line for line in lines if line.startswith("reference image:"))) + 1 : -1]
    assert len([line for line in after if " - distributed." in line]) <= 1, output  # at most a worker's note that its task was cancelled
    assert not [line for line in after if " - distributed." not in line and not line.startswith("step ")], output
    store = RecordingStore(tmp_path / "out" / processed.store.path.name)
    assert store.phase_record("ingest").complete and not store.lock_path.exists()
    record = store.phase_record("combine")
    assert record is None or not record.complete


def test_ctrl_c_dropped_in_a_gc_callback_still_stops_the_command() -> None:
    """Python prints and drops a KeyboardInterrupt raised inside a garbage-collector callback (it
    happened in CI: distributed's GC diagnosis took the Ctrl-C, and the run went on to the end); a
    command still stops with the one interrupted line and exit code 130, also after a library replaced
    the SIGINT handler with ``sys.exit()`` (dask_jobqueue's import does; CI ran with it)."""
    import gc
    import signal
    import sys
    import time

    import typer
    from typer.testing import CliRunner

    from cindra_dask.cli import user_errors

    state = {"armed": True, "finished": False}

    def interrupt_inside_gc(phase: str, info: dict) -> None:
        if state["armed"]:
            state["armed"] = False
            raise KeyboardInterrupt

    command_app = typer.Typer()

    @command_app.command()
    @user_errors
    def long_step() -> None:
        gc.callbacks.append(interrupt_inside_gc)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(interrupt_inside_gc)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            time.sleep(0.01)
        state["finished"] = True

    library_handler = signal.signal(signal.SIGINT, lambda *_: sys.exit())  # what importing dask_jobqueue installs
    try:
        result = CliRunner().invoke(command_app, [])
    finally:
        signal.signal(signal.SIGINT, library_handler)
    assert not state["armed"] and not state["finished"]
    assert result.exit_code == 130, result.output
    assert "Exception ignored" not in result.output and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == "interrupted: finished phases are kept; rerun the same command to resume"
