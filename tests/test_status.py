"""`status` lists the steps of the source-extraction method the store recorded (issue 20): a sparse
store shows no CNMF step and a CNMF store no sparse detection; a run that changes the method
records it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cindra_dask.config import SingleRecordingConfiguration, configuration_to_yaml
from cindra_dask.pipeline import run_single_recording, store_status
from cindra_dask.store import RecordingStore
from tests.conftest import single_configuration, write_tiff_recording


def _step_names(path: Path) -> list[str]:
    return [line.split()[1] for line in store_status(path) if line.startswith("step ")]


def test_status_lists_the_steps_of_the_recorded_method(tmp_path: Path) -> None:
    expected = {
        "sparse": ["ingest", "registration/plane_0", "detection/plane_0", "extraction/plane_0", "registration/plane_1", "detection/plane_1", "extraction/plane_1", "combine"],
        "cnmf": ["ingest", "registration/plane_0", "cnmf/plane_0", "extraction/plane_0", "registration/plane_1", "cnmf/plane_1", "extraction/plane_1", "combine"],
        "cnmf_e": ["ingest", "registration/plane_0", "cnmf/plane_0", "extraction/plane_0", "registration/plane_1", "cnmf/plane_1", "extraction/plane_1", "combine"],
    }
    for method, steps in expected.items():
        store = RecordingStore(tmp_path / f"{method}.zarr")
        store.root("a")
        store.update_attributes(configuration=configuration_to_yaml(SingleRecordingConfiguration(source_extraction={"method": method})), planes=[{"index": 0}, {"index": 1}])
        assert _step_names(store.path) == steps, method
    unreadable = RecordingStore(tmp_path / "unreadable.zarr")
    unreadable.root("a")
    unreadable.update_attributes(configuration="source_extraction: {method: sparse_v0}", planes=[{"index": 0}])
    assert _step_names(unreadable.path) == ["ingest", "registration/plane_0", "detection/plane_0", "cnmf/plane_0", "extraction/plane_0", "miniscope/plane_0", "combine"]


def test_a_run_records_its_method_for_status(tmp_path: Path, client: Any) -> None:
    """Ingest with the default method, then process (registration only: detection off) with method cnmf: status lists cnmf's steps."""
    pages = np.random.default_rng(2).integers(0, 500, size=(60, 16, 16)).astype(np.int16)
    write_tiff_recording(tmp_path / "data", pages, file_page_counts=(60,), acquisition={"frame_rate": 30.0, "plane_number": 1, "channel_number": 1})
    sections: dict[str, Any] = {"roi_detection": {"enabled": False}, "registration": {"batch_size": 20}}
    report = run_single_recording(single_configuration(tmp_path / "data", tmp_path / "out", **sections), client=client, phases=["ingest"])
    assert _step_names(report.store_path) == ["ingest", "registration/plane_0", "detection/plane_0", "extraction/plane_0", "combine"]
    cnmf = single_configuration(tmp_path / "data", tmp_path / "out", source_extraction={"method": "cnmf"}, **sections)
    again = run_single_recording(cnmf, client=client, phases=["ingest", "process"])
    assert [(outcome.name, outcome.state) for outcome in again.outcomes] == [("ingest", "skipped"), ("registration/plane_0", "ran")]
    assert _step_names(report.store_path) == ["ingest", "registration/plane_0", "cnmf/plane_0", "extraction/plane_0", "combine"]
    assert RecordingStore(report.store_path).recorded_configuration().source_extraction.method.value == "cnmf"
