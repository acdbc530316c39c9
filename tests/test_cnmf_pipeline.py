"""CNMF as the source extraction of the single-recording pipeline (``source_extraction.method: cnmf``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from cindra_dask.evaluate import match_rois, row_correlations, score_recording
from cindra_dask.pipeline import run_single_recording
from cindra_dask.simulate import SimulationParameters, load_ground_truth, write_recording
from cindra_dask.store import RecordingStore
from tests.conftest import single_configuration

SIMULATION = SimulationParameters(frame_height=96, frame_width=96, frame_count=600, cell_count=14, non_cell_count=3, cell_diameter_px=10, file_count=2, seed=31)
CNMF = {"method": "cnmf", "gSig": [5, 5], "rf": 24, "stride": 10, "K": 6}


def configuration(data: Path, output: Path, method: str) -> Any:
    return single_configuration(data, output, main={"tau": SIMULATION.tau_s}, runtime={"max_chunk_memory": "1MiB"}, nonrigid_registration={"block_size": [64, 64]},
                                source_extraction={**CNMF, "method": method})


class Runs(NamedTuple):
    data: Path
    sparse: RecordingStore
    cnmf: RecordingStore
    cnmf_outcomes: dict[str, str]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, client: Any) -> Runs:
    root = tmp_path_factory.mktemp("cnmf_pipeline")
    data = write_recording(SIMULATION, root / "data")
    sparse = run_single_recording(configuration(data, root / "sparse", "sparse"), client=client)
    cnmf = run_single_recording(configuration(data, root / "cnmf", "cnmf"), client=client)
    return Runs(data, RecordingStore(sparse.store_path), RecordingStore(cnmf.store_path), {outcome.name: outcome.state for outcome in cnmf.outcomes})


def test_cnmf_replaces_detection_and_the_rest_runs_unchanged(runs: Runs) -> None:
    assert runs.cnmf_outcomes == {"ingest": "ran", "registration/plane_0": "ran", "cnmf/plane_0": "ran", "extraction/plane_0": "ran", "combine": "ran"}
    rois = runs.cnmf.read_rois("plane_0/rois")
    accepted = runs.cnmf.read("plane_0/cnmf/accepted")
    source = runs.cnmf.read("plane_0/rois/source_component")
    probability = runs.cnmf.read("plane_0/cnmf/cell_probability")
    # every component is an ROI (less overlap removal), most probable first, labelled by its evaluation
    assert rois.count == len(source) > accepted[source].sum() > 0 and len(np.unique(source)) == len(source) and np.all(np.diff(probability[source]) <= 0)
    np.testing.assert_array_equal((probability >= 0.5), accepted)
    np.testing.assert_array_equal(runs.cnmf.read("plane_0/extraction/cell_classification"), np.stack([accepted[source], probability[source]], axis=1).astype(np.float32))
    assert runs.cnmf.read("plane_0/extraction/cell_fluorescence").shape == (rois.count, SIMULATION.frame_count)
    assert runs.cnmf.read("plane_0/cnmf/temporal").shape == (len(accepted), SIMULATION.frame_count)
    assert np.all(runs.cnmf.read("plane_0/rois/footprint") == -1)
    # every ROI's mask is its component's footprint above 10 % of its maximum
    components = runs.cnmf.read_rois("plane_0/cnmf")
    for roi, component in enumerate(source[:5]):
        ypix, xpix, lam = components.roi(int(component))
        kept = lam > 0.1 * lam.max()
        roi_y, roi_x, roi_lam = rois.roi(roi)
        assert set(zip(roi_y.tolist(), roi_x.tolist())) == set(zip(ypix[kept].tolist(), xpix[kept].tolist()))


def test_cnmf_finds_at_least_what_sparse_detection_finds(runs: Runs) -> None:
    """The issue's bar: CNMF's F1 on the two-photon simulator ≥ sparse detection's, cells as the evaluation labels them (measured: F1 0.786 vs
    0.762, recall 0.846 vs 0.615, precision 0.733 vs 1.0: the evaluation accepts planted non-somatic sources, which the classifier removed
    (0.846 F1 with it); every active soma matched by an accepted component is a cell: recall of all 19 ROIs 0.846 too)."""
    truth = load_ground_truth(runs.data / "ground_truth.npz")
    sparse, cnmf = score_recording(runs.sparse.path, truth), score_recording(runs.cnmf.path, truth)
    assert cnmf.detection_f1 >= sparse.detection_f1 and cnmf.detection_f1 >= 0.78 and cnmf.detection_recall >= 0.84 and cnmf.detection_precision >= 0.7
    assert cnmf.trace_correlation >= 0.95 and cnmf.spike_correlation >= 0.9


def test_cnmf_activity_follows_the_planted_calcium(runs: Runs) -> None:
    """The refitted activity C of the matched components (measured: 11 matched, median r 0.896; the simulator's
    neuropil fluctuates with the cells, which a rank-1 background does not model, so a few C stay near 0.8)."""
    truth = load_ground_truth(runs.data / "ground_truth.npz")
    sources = np.flatnonzero(truth.is_cell & truth.active)
    components = runs.cnmf.read_rois("plane_0/cnmf")
    accepted = np.flatnonzero(runs.cnmf.read("plane_0/cnmf/accepted"))
    matching = match_rois(components.select(accepted), truth.rois().select(sources), frame_shape=(SIMULATION.frame_height, SIMULATION.frame_width))
    activity = runs.cnmf.read("plane_0/cnmf/temporal")[accepted[matching.detected_index]]
    correlations = row_correlations(activity, truth.calcium[sources[matching.true_index]])
    assert len(correlations) >= 10 and np.median(correlations) >= 0.85


def test_switching_the_method_reruns_the_step_that_now_owns_the_rois(runs: Runs, client: Any, tmp_path: Path) -> None:
    import shutil

    store_copy = tmp_path / runs.cnmf.path.name
    shutil.copytree(runs.cnmf.path, store_copy)
    to_sparse = run_single_recording(configuration(runs.data, tmp_path, "sparse"), client=client)
    states = {outcome.name: outcome.state for outcome in to_sparse.outcomes}
    assert states["detection/plane_0"] == "ran" and states["extraction/plane_0"] == "ran" and states["registration/plane_0"] == "skipped"
    store = RecordingStore(to_sparse.store_path)
    assert "cnmf/plane_0" not in store.phase_records() and "plane_0/cnmf/accepted" not in store
    np.testing.assert_array_equal(store.read("plane_0/rois/ypix"), runs.sparse.read("plane_0/rois/ypix"))
    back = run_single_recording(configuration(runs.data, tmp_path, "cnmf"), client=client)
    states = {outcome.name: outcome.state for outcome in back.outcomes}
    assert states["cnmf/plane_0"] == "ran" and "detection/plane_0" not in store.phase_records()
    np.testing.assert_array_equal(store.read("plane_0/rois/ypix"), runs.cnmf.read("plane_0/rois/ypix"))
