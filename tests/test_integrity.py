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
