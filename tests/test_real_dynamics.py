"""Real dynamics: the activity bank (resampling, segments, refusal of the reserved datasets), planting
it in the simulator, and, where the CASCADE bank is cached, spike inference on real traces."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from cindra_dask.config import SpikeDeconvolutionSettings
from cindra_dask.evaluate import smoothed_spike_correlations
from cindra_dask.extraction.baseline import subtract_baseline
from cindra_dask.extraction.oasis import advance_spikes, deconvolve_oasis
from cindra_dask.simulate import LOWEST_PLANTED_DFF, SimulationParameters, generate_ground_truth
from cindra_dask.simulate.bank import load_activity_bank, resample_recording, write_activity_bank

FETCH_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy" / "fetch_cascade.py"


def synthetic_bank(path: Path, *, seed: int = 0) -> Path:
    """Three recordings: 20 s at 60 Hz, 15 s at 45 Hz, 12 s at 20 Hz (noise + spike-locked bumps)."""
    rng = np.random.default_rng(seed)
    traces, rates, spikes = [], [], []
    for duration_s, rate_hz in ((20.0, 60.0), (15.0, 45.0), (12.0, 20.0)):
        times = np.sort(rng.uniform(0, duration_s, int(duration_s)))
        clock = (np.arange(int(duration_s * rate_hz)) + 0.5) / rate_hz
        trace = 0.05 * rng.standard_normal(len(clock))
        for spike in times:
            trace += np.where(clock >= spike, 0.3 * np.exp(-(clock - spike) / 0.8), 0.0)
        traces.append(trace)
        rates.append(rate_hz)
        spikes.append(times)
    return write_activity_bank(
        path, dff=traces, source_rate_hz=rates, spike_times_s=spikes, dataset=["DS01-A", "DS02-B", "DS02-B"], indicator=["A", "B", "B"], source=["a#0", "b#0", "b#1"]
    )


# ---------------------------------------------------------------------------------------------
# resampling and the bank file
# ---------------------------------------------------------------------------------------------


def test_downsampling_is_an_exact_box_average_and_keeps_every_spike() -> None:
    rng = np.random.default_rng(3)
    dff = np.zeros(1000)  # 10 s at 100 Hz
    dff[:50] = 1.0  # the first 0.5 s = 15 frames at 30 Hz
    dff[50:55] = 3.0  # 0.50–0.55 s: all of frame 15 (0.500–0.533 s), half of frame 16
    times = np.sort(rng.uniform(0.0, 10.0, 57))
    resampled = resample_recording(dff, times, source_rate_hz=100.0, frame_rate_hz=30.0)
    assert resampled.dff.shape == resampled.spikes.shape == (300,)
    np.testing.assert_allclose(resampled.dff[:15], 1.0, atol=1e-6)
    assert resampled.dff[15] == pytest.approx(3.0, abs=1e-5)
    assert resampled.dff[16] == pytest.approx(1.5, abs=1e-5)
    np.testing.assert_allclose(resampled.dff[17:], 0.0, atol=1e-6)
    # the average of the signal is conserved
    assert resampled.dff.sum() / 30.0 == pytest.approx(dff.sum() / 100.0, rel=1e-6)
    assert resampled.spikes.sum() == 57
    np.testing.assert_array_equal(resampled.spikes, np.bincount(np.floor(times * 30).astype(int), minlength=300))


def test_upsampling_holds_each_sample_and_drops_spikes_past_the_end() -> None:
    dff = np.array([0.0, 1.0, 2.0, 3.0])  # 0.4 s at 10 Hz
    resampled = resample_recording(dff, np.array([-0.01, 0.0, 0.12, 0.399, 0.4, 2.0]), source_rate_hz=10.0, frame_rate_hz=30.0)
    np.testing.assert_allclose(resampled.dff, np.repeat(dff, 3), atol=1e-6)
    np.testing.assert_array_equal(resampled.spikes, [1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1])


def test_bank_segments_are_consecutive_pieces_of_each_resampled_recording(tmp_path: Path) -> None:
    path = synthetic_bank(tmp_path / "bank.npz")
    bank = load_activity_bank(path, frame_rate_hz=10.0, segment_frames=40)
    # 200, 150 and 120 frames at 10 Hz → 5 + 3 + 3 segments of 40
    assert bank.dff.shape == bank.spikes.shape == (11, 40)
    np.testing.assert_array_equal(bank.recording_index, [0] * 5 + [1] * 3 + [2] * 3)
    assert list(bank.dataset) == ["DS01-A"] * 5 + ["DS02-B"] * 6 and bank.frame_rate_hz == 10.0
    with np.load(path) as archive:
        first = resample_recording(archive["dff"][: archive["dff_offsets"][1]], archive["spike_times_s"][: archive["spike_offsets"][1]], source_rate_hz=60.0, frame_rate_hz=10.0)
        assert archive["spike_offsets"][1] == 20
    np.testing.assert_array_equal(bank.dff[:5].ravel(), first.dff)
    assert bank.spikes[:5].sum() == 20  # every spike of the 20 s recording
    only_b = load_activity_bank(path, frame_rate_hz=10.0, segment_frames=40, datasets=["DS02-B"])
    np.testing.assert_array_equal(only_b.dff, bank.dff[5:])
    assert load_activity_bank(path, frame_rate_hz=10.0, segment_frames=1000).dff.shape == (0, 1000)


@pytest.mark.parametrize("name", ["DS09-GCaMP6f-m-V1", "DS10-GCaMP6f-m-V1-neuropil-corrected", "X-DS11-GCaMP6s-m-V1"])
def test_reserved_datasets_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="kept aside"):
        write_activity_bank(tmp_path / "bank.npz", dff=[np.zeros(10)], source_rate_hz=[10.0], spike_times_s=[np.zeros(0)], dataset=[name], indicator=["GCaMP6f"], source=["x"])
    smuggled = tmp_path / "smuggled.npz"
    np.savez(smuggled, dff=np.zeros(10, np.float32), dff_offsets=np.array([0, 10]), source_rate_hz=np.array([10.0]), spike_times_s=np.zeros(0),
             spike_offsets=np.array([0, 0]), dataset=np.array([name]), indicator=np.array(["GCaMP6f"]), source=np.array(["x"]))
    with pytest.raises(ValueError, match="kept aside"):
        load_activity_bank(smuggled, frame_rate_hz=10.0, segment_frames=5)


def test_other_datasets_are_accepted(tmp_path: Path) -> None:
    path = write_activity_bank(tmp_path / "bank.npz", dff=[np.ones(10)], source_rate_hz=[10.0], spike_times_s=[np.array([0.05])], dataset=["DS19-R-CaMP-m-S1"], indicator=["R-CaMP"], source=["x"])
    assert load_activity_bank(path, frame_rate_hz=10.0, segment_frames=10).spikes.sum() == 1


# ---------------------------------------------------------------------------------------------
# planting
# ---------------------------------------------------------------------------------------------

SMALL = {"frame_height": 48, "frame_width": 48, "frame_count": 60, "cell_count": 4, "non_cell_count": 1, "frame_rate_hz": 10.0, "spike_rate_hz": 2.0, "silent_fraction": 0.2, "seed": 5}


def test_planted_activity_is_bank_segments_and_everything_else_is_unchanged(tmp_path: Path) -> None:
    path = synthetic_bank(tmp_path / "bank.npz")
    bank = load_activity_bank(path, frame_rate_hz=10.0, segment_frames=60)  # 3 + 2 + 2 = 7 segments
    default = generate_ground_truth(SimulationParameters(**SMALL))
    planted = generate_ground_truth(SimulationParameters(**SMALL, activity_bank_path=str(path)))
    spiking = default.spikes.sum(axis=1) > 0
    assert 0 < spiking.sum() < len(spiking)  # some sources silent, some spiking
    used = []
    for source in np.flatnonzero(spiking):
        matches = np.flatnonzero((bank.spikes == planted.spikes[source]).all(axis=1) & (np.maximum(bank.dff, LOWEST_PLANTED_DFF) == planted.calcium[source]).all(axis=1))
        assert len(matches) >= 1
        used.append(int(matches[0]))
    assert len(set(used)) == len(used)  # without replacement while the bank lasts
    np.testing.assert_array_equal(planted.spikes[~spiking], 0.0)
    np.testing.assert_array_equal(planted.calcium[~spiking], 0.0)
    np.testing.assert_array_equal(planted.active, planted.spikes.sum(axis=1) > 0)
    for name in ("footprint_ypix", "footprint_xpix", "footprint_weights", "source_baseline_photons", "rigid_offsets", "nonrigid_grid", "background_images"):
        np.testing.assert_array_equal(getattr(planted, name), getattr(default, name), err_msg=name)
    assert not np.array_equal(planted.calcium, default.calcium)


def test_planting_refuses_a_bank_shorter_than_the_recording(tmp_path: Path) -> None:
    path = synthetic_bank(tmp_path / "bank.npz")
    with pytest.raises(ValueError, match="no segment as long as the recording"):
        generate_ground_truth(SimulationParameters(**{**SMALL, "frame_count": 400}, activity_bank_path=str(path)))


# ---------------------------------------------------------------------------------------------
# the real CASCADE bank (skipped when it is not cached)
# ---------------------------------------------------------------------------------------------


def cascade_bank_path() -> Path:
    if str(FETCH_SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(FETCH_SCRIPT.parent))  # fetch_cascade imports its sibling data_cache
    spec = importlib.util.spec_from_file_location("fetch_cascade", FETCH_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cache_directory() / module.BANK_FILE_NAME


@pytest.fixture(scope="module")
def cascade_bank() -> Path:
    path = cascade_bank_path()
    if not path.exists():
        pytest.skip(f"CASCADE bank not found at {path}; run benchmarks/accuracy/fetch_cascade.py")
    return path


# indicator decay used for the real traces, s (the table of benchmarks/accuracy/bench_spike_defaults.py)
CASCADE_TAU_S = {"OGB1": 1.0, "GCaMP6f": 0.7, "GCaMP6s": 1.7, "GCaMP7f": 0.6, "GCaMP8f": 0.3, "GCaMP8m": 0.4, "GCaMP8s": 0.8}
# indicator rise, s: the median onset lag of the bank's response kernels per indicator (bench_spike_timing.py,
# section 3; the values SpikeDeconvolutionSettings.rise_time's description recommends)
CASCADE_RISE_TIME_S = {"OGB1": 0.06, "GCaMP6f": 0.06, "GCaMP6s": 0.09, "GCaMP7f": 0.03, "GCaMP8f": 0.01, "GCaMP8m": 0.0, "GCaMP8s": 0.01}


def real_trace_spike_r(path: Path, *, frame_rate_hz: float, minimum_spike_size: float, rise_time_s: dict[str, float] | None = None) -> np.ndarray:
    """Smoothed spike r of the default baseline + OASIS on every 100 s segment of the bank (spikes moved
    each indicator's ``rise_time_s`` earlier; None: the default ``rise_time``)."""
    bank = load_activity_bank(path, frame_rate_hz=frame_rate_hz, segment_frames=int(100 * frame_rate_hz))
    settings = SpikeDeconvolutionSettings()
    subtracted = subtract_baseline(
        bank.dff, baseline_method=settings.baseline_method.value, baseline_window_s=settings.baseline_window,
        baseline_sigma_frames=settings.baseline_sigma, baseline_percentile=settings.baseline_percentile, frame_rate_hz=frame_rate_hz,
    )
    scores = np.empty(len(bank.dff))
    for indicator in np.unique(bank.indicator):
        rows = bank.indicator == indicator
        spikes = deconvolve_oasis(subtracted[rows], tau_s=CASCADE_TAU_S[str(indicator)], frame_rate_hz=frame_rate_hz, minimum_spike_noise_multiple=minimum_spike_size).spikes
        rise = settings.rise_time if rise_time_s is None else rise_time_s[str(indicator)]
        spikes = advance_spikes(spikes, rise_time_s=rise, frame_rate_hz=frame_rate_hz)
        scores[rows] = smoothed_spike_correlations(spikes, bank.spikes[rows])
    return scores


def test_cascade_bank_holds_seven_indicators_and_no_reserved_dataset(cascade_bank: Path) -> None:
    with np.load(cascade_bank) as archive:
        datasets, indicators = set(archive["dataset"]), set(archive["indicator"])
        assert len(archive["dataset"]) == 82 and archive["spike_offsets"][-1] > 10_000
    assert len(datasets) == 10 and not any(name[:4] in ("DS09", "DS10", "DS11") for name in datasets)
    assert indicators == set(CASCADE_TAU_S)


def test_real_traces_median_spike_r_with_default_settings(cascade_bank: Path) -> None:
    minimum = SpikeDeconvolutionSettings().minimum_spike_size
    # measured (bench_spike_defaults.py, 135 segments): 7.5 Hz 0.842 (size 0) / 0.850 (1) / 0.842 (2); 30 Hz 0.684 / 0.683 / 0.697
    assert np.nanmedian(real_trace_spike_r(cascade_bank, frame_rate_hz=7.5, minimum_spike_size=minimum)) >= 0.82
    assert np.nanmedian(real_trace_spike_r(cascade_bank, frame_rate_hz=30.0, minimum_spike_size=minimum)) >= 0.66


def test_each_indicators_rise_time_raises_real_trace_spike_r(cascade_bank: Path) -> None:
    """AR(1) OASIS centres each spike on the indicator's rising phase; moving it back by the indicator's
    rise (GCaMP6s 0.09 s … jGCaMP8m 0) lifts the median r of every segment. Measured
    (bench_spike_timing.py, 135 segments): 30 Hz 0.684 → 0.809, 7.5 Hz 0.842 → 0.877."""
    minimum = SpikeDeconvolutionSettings().minimum_spike_size
    assert np.nanmedian(real_trace_spike_r(cascade_bank, frame_rate_hz=30.0, minimum_spike_size=minimum, rise_time_s=CASCADE_RISE_TIME_S)) >= 0.80
    assert np.nanmedian(real_trace_spike_r(cascade_bank, frame_rate_hz=7.5, minimum_spike_size=minimum, rise_time_s=CASCADE_RISE_TIME_S)) >= 0.87


def test_planting_the_cascade_bank(cascade_bank: Path) -> None:
    parameters = SimulationParameters(**{**SMALL, "frame_count": 600}, activity_bank_path=str(cascade_bank))
    truth = generate_ground_truth(parameters)
    bank = load_activity_bank(cascade_bank, frame_rate_hz=10.0, segment_frames=600)
    for source in np.flatnonzero(truth.spikes.sum(axis=1) > 0):
        assert ((bank.spikes == truth.spikes[source]).all(axis=1) & (np.maximum(bank.dff, LOWEST_PLANTED_DFF) == truth.calcium[source]).all(axis=1)).any()
    assert truth.spikes.sum() > 50
