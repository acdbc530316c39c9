"""The accuracy bench's scenario presets (cindra_dask.scenarios): valid, deterministic, and each
preset's defining property holds in the planted truth. Truth only (no rendering), except one tiny
write for the uint16 offset; about 10 s."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cindra_dask.scenarios import SCENARIO_BASE, SCENARIOS, _add_uint16_offset, scenario_parameters, write_scenario
from cindra_dask.simulate.bank import write_bank_subset
from cindra_dask.simulate import GroundTruth, SimulationParameters, generate_ground_truth, write_recording

AR1_SCENARIOS = [name for name, scenario in SCENARIOS.items() if not scenario.bank_datasets]
REAL_SCENARIOS = [name for name, scenario in SCENARIOS.items() if scenario.bank_datasets]
BANK_PATH = Path.home() / ".cache" / "cindra-dask" / "cascade" / "cascade_bank.npz"
_truths: dict[str, GroundTruth] = {}


def truth_of(name: str) -> GroundTruth:
    if name not in _truths:
        _truths[name] = generate_ground_truth(scenario_parameters(name))
    return _truths[name]


def active_cells(truth: GroundTruth) -> np.ndarray:
    return np.flatnonzero(truth.is_cell & truth.active)


def half_max_areas(truth: GroundTruth) -> np.ndarray:
    """(somata,) footprint pixels with weight ≥ half the footprint's peak."""
    offsets, weights = truth.footprint_pixel_offsets, truth.footprint_weights
    return np.array([(weights[offsets[k] : offsets[k + 1]] >= 0.5 * weights[offsets[k] : offsets[k + 1]].max()).sum() for k in np.flatnonzero(truth.is_cell)])


def test_the_sweep_names_every_scenario_of_issue_24() -> None:
    assert set(SCENARIOS) == {
        "default", "dim_quiet", "short_7hz", "fast_60hz", "slow_tau_1p5", "small_cells_7px", "large_cells_18px", "dense_512",
        "uint16_offset_low_photons", "strong_neuropil", "real_dynamics_gcamp6f", "real_dynamics_gcamp6s",
    }  # fmt: skip


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_preset_validates_and_is_small(name: str) -> None:
    scenario = SCENARIOS[name]
    assert "tau_s" not in scenario.overrides and "activity_bank_path" not in scenario.overrides
    assert set(scenario.overrides) <= set(SimulationParameters.model_fields)
    parameters = scenario_parameters(name, activity_bank_path="bank.npz" if scenario.bank_datasets else None)
    assert parameters.tau_s == scenario.true_tau_s
    assert scenario.wrong_tau_s == pytest.approx(1.3 * scenario.true_tau_s, rel=1e-3)
    assert parameters.seed > 0 and len({SCENARIOS[other].overrides["seed"] for other in SCENARIOS}) == len(SCENARIOS)
    pixels_frames = parameters.frame_height * parameters.frame_width * parameters.frame_count
    assert pixels_frames <= 512 * 512 * 400 and parameters.frame_count <= 1500  # the pipeline in ≲ 30 s on 2 cores


def test_real_dynamics_presets_need_a_bank() -> None:
    with pytest.raises(ValueError, match="activity_bank_path"):
        scenario_parameters("real_dynamics_gcamp6f")
    assert all(not any(tag in dataset for tag in ("DS09", "DS10", "DS11")) for name in REAL_SCENARIOS for dataset in SCENARIOS[name].bank_datasets)


def test_default_preset_is_the_simulator_default_but_smaller() -> None:
    parameters = scenario_parameters("default")
    assert parameters.model_dump(exclude={*SCENARIO_BASE, "seed"}) == SimulationParameters().model_dump(exclude={*SCENARIO_BASE, "seed"})


@pytest.mark.parametrize("name", ["default", "dim_quiet", "short_7hz", "large_cells_18px"])
def test_same_seed_same_truth(name: str) -> None:
    first, second = truth_of(name), generate_ground_truth(scenario_parameters(name))
    for field in ("footprint_ypix", "footprint_xpix", "footprint_weights", "source_baseline_photons", "spikes", "calcium", "rigid_offsets", "neuropil_activity"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field), err_msg=field)


def test_presets_differ_from_each_other() -> None:
    assert not np.array_equal(truth_of("default").footprint_ypix[:200], truth_of("dim_quiet").footprint_ypix[:200])


def test_dim_quiet_cells_are_dim_quiet_and_spread_over_a_decade() -> None:
    truth, reference = truth_of("dim_quiet"), truth_of("default")
    events = truth.spikes[active_cells(truth)].sum(axis=1)
    assert np.median(events) < 15 and np.median(events) == pytest.approx(3.0, abs=1.5)  # 3 events in 33 s
    assert np.mean(events < 15) > 0.8
    baseline = truth.source_baseline_photons[truth.is_cell]
    assert np.percentile(baseline, 95) / np.percentile(baseline, 5) > 8  # log-normal σ 0.7: ≈ 10× from 5th to 95th percentile
    assert np.median(baseline) < 0.4 * np.median(reference.source_baseline_photons[reference.is_cell])
    rates_hz = events / (truth.spikes.shape[1] / truth.frame_rate_hz)
    assert 0.05 <= np.median(rates_hz) <= 0.2


def test_short_7hz_is_short_and_slow() -> None:
    truth = truth_of("short_7hz")
    assert truth.frame_rate_hz == 7.0 and truth.spikes.shape[1] == 200 and truth.tau_s == 0.4
    assert truth.tau_s * truth.frame_rate_hz == pytest.approx(2.8)  # tau·fs ≈ 3 frames per bin
    assert SCENARIOS["short_7hz"].wrong_tau_s == pytest.approx(0.52)


def test_fast_60hz_and_slow_tau() -> None:
    fast, slow = truth_of("fast_60hz"), truth_of("slow_tau_1p5")
    assert fast.frame_rate_hz == 60.0 and fast.spikes.shape[1] == 1200
    assert slow.tau_s == 1.5
    # the planted calcium decays by exp(−1/(tau·fs)) per spike-free frame
    row = slow.calcium[active_cells(slow)[0]]
    quiet = np.flatnonzero((slow.spikes[active_cells(slow)[0]][1:] == 0) & (row[:-1] > 0.05))
    assert np.median(row[1:][quiet] / row[:-1][quiet]) == pytest.approx(math.exp(-1 / (1.5 * 30.0)), rel=1e-4)


@pytest.mark.parametrize(("name", "diameter_px"), [("small_cells_7px", 7.0), ("default", 12.0), ("large_cells_18px", 18.0)])
def test_cell_sizes(name: str, diameter_px: float) -> None:
    area = np.median(half_max_areas(truth_of(name)))
    assert area == pytest.approx(math.pi * (diameter_px / 2) ** 2, rel=0.2)


def test_dense_512_is_dense() -> None:
    truth = truth_of("dense_512")
    assert truth.illumination.shape == (512, 512) and truth.is_cell.sum() >= 300 and truth.spikes.shape[1] >= 300
    assert active_cells(truth).size >= 300


def test_low_photons_and_strong_neuropil() -> None:
    low, neuropil, reference = truth_of("uint16_offset_low_photons"), truth_of("strong_neuropil"), truth_of("default")
    assert np.median(low.source_baseline_photons[low.is_cell]) < 20 and low.neuropil_images.sum(axis=1).mean() < 10
    assert SCENARIOS["uint16_offset_low_photons"].uint16_offset_counts == 100
    assert neuropil.neuropil_images.sum(axis=1).mean() > 2.5 * reference.neuropil_images.sum(axis=1).mean()
    assert neuropil.neuropil_activity.std() > 1.8 * reference.neuropil_activity.std()


def test_uint16_offset_is_added_to_the_simulated_pages(tmp_path: Path) -> None:
    import tifffile

    parameters = SimulationParameters(frame_height=32, frame_width=32, frame_count=6, cell_count=2, non_cell_count=0, file_count=2, baseline_photons=3.0, neuropil_photons=1.0, background_photons=0.0, seed=3)
    write_recording(parameters, tmp_path)
    before = [tifffile.imread(path) for path in sorted(tmp_path.glob("*.tif"))]
    assert min(pages.min() for pages in before) < 0  # read noise below zero survives in int16
    _add_uint16_offset(tmp_path, 100)
    after = [tifffile.imread(path) for path in sorted(tmp_path.glob("*.tif"))]
    for old, new in zip(before, after):
        assert new.dtype == np.uint16
        np.testing.assert_array_equal(new.astype(np.int32), old.astype(np.int32) + 100)


@pytest.mark.skipif(not BANK_PATH.exists(), reason=f"CASCADE bank not cached at {BANK_PATH} (benchmarks/accuracy/fetch_cascade.py)")
@pytest.mark.parametrize("name", REAL_SCENARIOS)
def test_real_dynamics_presets_plant_their_bank(name: str, tmp_path: Path) -> None:
    scenario = SCENARIOS[name]
    subset = write_bank_subset(BANK_PATH, scenario.bank_datasets, tmp_path / "bank.npz")
    with np.load(subset) as archive:
        assert set(archive["dataset"].tolist()) == set(scenario.bank_datasets)
    truth = generate_ground_truth(scenario_parameters(name, activity_bank_path=subset))
    cells = active_cells(truth)
    assert len(cells) >= 30
    calcium = truth.calcium[cells]
    # real dF/F is not the AR(1) of its spikes: the spike-free frame-to-frame ratio is not one constant
    assert np.std(calcium[:, 1:] - math.exp(-1 / (scenario.true_tau_s * 30.0)) * calcium[:, :-1]) > 0.01


def test_write_scenario_refuses_real_dynamics_without_a_bank(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fetch_cascade"):
        write_scenario("real_dynamics_gcamp6s", tmp_path, bank_path=tmp_path / "absent.npz")


@pytest.mark.parametrize(("name", "shared_rise_cost"), [("default", 0.03), ("fast_60hz", 0.12)])
def test_rise_time_default_keeps_the_simulators_spikes_and_a_shared_rise_would_cost(name: str, shared_rise_cost: float) -> None:
    """The simulator's calcium rises within the spike's frame, so `spike_deconvolution.rise_time` is 0 by
    default: OASIS's spikes untouched. One rise for every indicator (0.03 s, the best single value on the
    CASCADE bank: benchmarks/accuracy/results/spike_timing.md) would cost here; measured on the planted
    calcium + white noise σ 0.05 dF/F: default 0.959 → 0.914, fast_60hz 0.960 → 0.795 (through the whole
    pipeline 0.955 → 0.907 and 0.955 → 0.784)."""
    from cindra_dask.config import SpikeDeconvolutionSettings
    from cindra_dask.evaluate import smoothed_spike_correlations
    from cindra_dask.extraction.oasis import advance_spikes, deconvolve_oasis

    truth, parameters = truth_of(name), scenario_parameters(name)
    cells = active_cells(truth)
    rng = np.random.default_rng(5)
    traces = (truth.calcium[cells] + 0.05 * rng.standard_normal(truth.calcium[cells].shape)).astype(np.float32)
    frame_rate_hz = parameters.plane_frame_rate_hz
    spikes = deconvolve_oasis(traces, tau_s=SCENARIOS[name].true_tau_s, frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=0.0).spikes
    default = advance_spikes(spikes, rise_time_s=SpikeDeconvolutionSettings().rise_time, frame_rate_hz=frame_rate_hz)
    np.testing.assert_array_equal(default, spikes)
    default_r = np.nanmedian(smoothed_spike_correlations(default, truth.spikes[cells]))
    shared_r = np.nanmedian(smoothed_spike_correlations(advance_spikes(spikes, rise_time_s=0.03, frame_rate_hz=frame_rate_hz), truth.spikes[cells]))
    print(f"{name}: spike r {default_r:.3f} (rise_time 0) vs {shared_r:.3f} (0.03 s)")
    assert default_r >= 0.95
    assert shared_r <= default_r - shared_rise_cost
