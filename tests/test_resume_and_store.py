"""Resume by configuration hash, phase records, the store lock, ragged ROIs, atomic attributes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cindra_dask.errors import ConfigurationError, OutputError
from cindra_dask.pipeline import run_single_recording, store_status
from cindra_dask.rois import RaggedRois
from cindra_dask.store import RecordingStore, frames_path
from tests.conftest import single_configuration, write_tiff_recording


def _chunk_times(store: RecordingStore) -> dict[str, int]:
    return {str(path): path.stat().st_mtime_ns for path in (store.path / "plane_0").rglob("c/*")}


def test_second_run_skips_ingest_and_changed_field_reruns(tmp_path: Path, client: Any) -> None:
    pages = np.random.default_rng(1).integers(0, 500, size=(60, 10, 12)).astype(np.int16)
    write_tiff_recording(tmp_path / "data", pages, file_page_counts=(25, 35), acquisition={"frame_rate": 30.0, "plane_number": 1, "channel_number": 1})
    configuration = single_configuration(tmp_path / "data", tmp_path / "out", registration={"batch_size": 8})
    report = run_single_recording(configuration, client=client, phases=["ingest"])
    assert [(outcome.name, outcome.state) for outcome in report.outcomes] == [("ingest", "ran")]
    store = RecordingStore(report.store_path)
    record, chunk_times = store.phase_record("ingest"), _chunk_times(store)
    assert len(chunk_times) == 8  # ceil(60 / 8)

    second = run_single_recording(configuration, client=client, phases=["ingest"])
    assert second.outcomes[0].state == "skipped"
    assert store.phase_record("ingest") == record
    assert _chunk_times(store) == chunk_times

    rechunked = single_configuration(tmp_path / "data", tmp_path / "out", registration={"batch_size": 16})
    third = run_single_recording(rechunked, client=client, phases=["ingest"])
    assert third.outcomes[0].state == "ran"
    assert store.phase_record("ingest").config_hash != record.config_hash
    assert store.array(frames_path(0, 0)).chunks == (16, 10, 12)
    np.testing.assert_array_equal(store.read(frames_path(0, 0)), pages)

    forced = run_single_recording(rechunked, client=client, force=True, phases=["ingest"])
    assert forced.outcomes[0].state == "ran"
    repeat = single_configuration(tmp_path / "data", tmp_path / "out", registration={"batch_size": 16}, file_io={"repeat_binarization": True})
    assert run_single_recording(repeat, client=client, phases=["ingest"]).outcomes[0].state == "ran"

    (tmp_path / "data" / "recording_2.tif").touch()  # an input changed: ingest is redone
    os.utime(tmp_path / "data" / "recording_2.tif", ns=(1, 1))
    assert run_single_recording(rechunked, client=client, phases=["ingest"]).outcomes[0].state == "ran"


def test_status_shows_an_interrupted_phase(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "r.zarr")
    store.root("a")
    started = store.mark_phase_started("ingest", config_hash="abc")
    assert "INCOMPLETE" in "\n".join(store_status(store.path))
    store.mark_phase_complete("ingest", config_hash="abc", started=started)
    lines = store_status(store.path)
    assert any(line.startswith("step ingest") and "complete" in line and "abc" in line for line in lines)
    assert any(line.startswith("step combine") and "not run" in line for line in lines)


def test_unknown_phase_is_a_clear_error(tmp_path: Path) -> None:
    configuration = single_configuration(tmp_path, tmp_path / "out")
    with pytest.raises(ConfigurationError, match="unknown phase discover; single-recording phases are ingest, process, combine"):
        run_single_recording(configuration, phases=["discover"])


def test_lock_refuses_a_second_run_and_replaces_a_stale_one(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "r.zarr")
    with store.locked():
        with pytest.raises(OutputError, match="locked by another run"):
            with store.locked():
                pass
    assert not store.lock_path.exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    store.lock_path.write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename, "started": "yesterday"}))
    with pytest.warns(UserWarning, match="stale lock"):
        with store.locked():
            assert json.loads(store.lock_path.read_text())["pid"] == os.getpid()


def test_ragged_rois_round_trip(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "r.zarr")
    rois = RaggedRois.from_masks([(np.array([1, 2]), np.array([3, 4]), np.array([0.5, 0.5])), (np.array([7]), np.array([8]), np.array([1.0]))])
    store.write_rois("plane_0/rois", rois, radius=np.array([1.5, 0.5], np.float32))
    loaded = store.read_rois("plane_0/rois")
    for name in ("pixel_offsets", "ypix", "xpix", "lam"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(rois, name))
    assert loaded.count == 2 and loaded.roi(1)[0].tolist() == [7]
    np.testing.assert_array_equal(store.read("plane_0/rois/radius"), [1.5, 0.5])
    with pytest.raises(ValueError, match="expected 2 rows"):
        store.write_rois("plane_0/rois", rois, radius=np.zeros(3))


def test_attribute_updates_are_atomic_and_merge(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "r.zarr")
    store.root("a")
    store.update_attributes(a=1)
    store.update_attributes(b={"c": [1, 2]})
    assert store.attributes() == {"a": 1, "b": {"c": [1, 2]}}
    assert not list(store.path.glob(".zarr.json.*"))  # no temporary left behind
    with pytest.raises(ValueError, match="refusing to delete"):
        store.delete("..")


def test_detection_disabled_runs_registration_only(tmp_path: Path, client: Any) -> None:
    """``roi_detection.enabled: false`` (cindra: skips detection and extraction for the plane)."""
    from cindra_dask.simulate import SimulationParameters, write_recording

    data = write_recording(SimulationParameters(frame_height=48, frame_width=48, frame_count=50, cell_count=4, non_cell_count=0, file_count=1, seed=2), tmp_path / "data")
    configuration = single_configuration(data, tmp_path / "out", roi_detection={"enabled": False}, nonrigid_registration={"enabled": False})
    report = run_single_recording(configuration, client=client)
    assert [(outcome.name, outcome.state) for outcome in report.outcomes] == [("ingest", "ran"), ("registration/plane_0", "ran"), ("combine", "ran")]
    store = RecordingStore(report.store_path)
    assert store.array("plane_0/registered/channel_0").shape == (50, 48, 48)
    assert not (store.path / "plane_0" / "detection").exists() and not (store.path / "plane_0" / "extraction").exists()
    assert dict(store.root()["combined"].attrs)["included_planes"] == []
