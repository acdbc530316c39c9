"""The accuracy bench's default scenario through the whole pipeline, against suite2p's stored figures.

suite2p 1.1.0 is not run here: its scores on the same recording (scenario ``default``, seed 101,
given the true tau) come from ``benchmarks/accuracy/results/scenarios.md`` (the run at 76fe2e5).
The other presets where suite2p ran are not asserted because we do not beat it there yet
(classified-cell recall short_7hz 0.897 vs 0.907, dim_quiet 0.183 vs 0.194).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SUITE2P_DEFAULT_SCENARIO = {"recall": 0.774, "precision": 0.932, "spike_r": 0.948, "rigid_rms_px": 0.403}
"""suite2p 1.1.0 with the true tau on scenario ``default``: classified cells vs active somata (IoU 0.3)."""


def test_default_scenario_beats_suite2p_on_recall_spikes_and_registration(tmp_path: Path, client: Any) -> None:
    """Measured: recall 0.868, precision 0.948, spike r 0.955, rigid 0.035 px (bench, 2 worker processes)."""
    from cindra_dask.config import configuration_from_mapping
    from cindra_dask.evaluate import score_recording
    from cindra_dask.pipeline import run_single_recording
    from cindra_dask.scenarios import SCENARIOS, write_scenario
    from cindra_dask.simulate import load_ground_truth

    data = write_scenario("default", tmp_path / "data")
    configuration = configuration_from_mapping(
        {
            "runtime": {"display_progress_bars": False},
            "main": {"tau": SCENARIOS["default"].true_tau_s},
            "file_io": {"data_path": str(data), "output_path": str(tmp_path / "out")},
            "registration": {"registration_metric_principal_components": 0},
        },
        source="test",
    )
    report = run_single_recording(configuration, client=client)
    scores = score_recording(report.store_path, load_ground_truth(data / "ground_truth.npz"))
    print(scores)
    assert scores.detection_recall >= SUITE2P_DEFAULT_SCENARIO["recall"] + 0.05
    assert scores.detection_precision >= SUITE2P_DEFAULT_SCENARIO["precision"]
    assert scores.spike_correlation >= SUITE2P_DEFAULT_SCENARIO["spike_r"]
    assert scores.rigid_offset_rms_px <= SUITE2P_DEFAULT_SCENARIO["rigid_rms_px"] / 4
