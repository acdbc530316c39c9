"""The miniscope step: detrending and dF/F against a planted trend, events against planted spikes,
spectrum and phase against planted sinusoids, and the step on the one-photon recording (`one_photon_run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from scipy.signal import lfilter

from cindra_dask.miniscope.events import detect_calcium_events
from cindra_dask.miniscope.spectral import instantaneous_phase, multitaper_spectrogram
from cindra_dask.miniscope.traces import detrend_traces, footprint_background, miniscope_delta_f_over_f, windowed_percentile_baseline
from cindra_dask.rois import RaggedRois
from tests.conftest import ONE_PHOTON

FRAME_RATE_HZ = 20.0


def planted_transients(rng: np.random.Generator, *, rows: int, frame_count: int, rate_hz: float = 0.2, tau_s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(spikes (rows, T) 0/1, dF/F (rows, T)) of AR(1) transients of 0.3–0.5 dF/F, in their steady state (the first 10 τ dropped)."""
    warm_up = int(10 * tau_s * FRAME_RATE_HZ)
    spikes = (rng.random((rows, warm_up + frame_count)) < rate_hz / FRAME_RATE_HZ).astype(np.float64)
    amplitudes = spikes * rng.uniform(0.3, 0.5, spikes.shape)
    return spikes[:, warm_up:], lfilter([1.0], [1.0, -np.exp(-1.0 / (tau_s * FRAME_RATE_HZ))], amplitudes, axis=1)[:, warm_up:]


def onset_scores(event_offsets: np.ndarray, event_frames: np.ndarray, spikes: np.ndarray, *, tolerance_frames: int, isolation_frames: int) -> tuple[float, float]:
    """(precision, recall): events within ``tolerance_frames`` of a planted spike; planted spikes with no
    other spike in the ``isolation_frames`` before them (onsets an event can mark) that an event marks."""
    hits = found = onsets = 0
    for row, train in enumerate(spikes):
        frames = event_frames[event_offsets[row] : event_offsets[row + 1]]
        spike_frames = np.flatnonzero(train)
        if len(frames) and len(spike_frames):
            hits += int((np.abs(frames[:, None] - spike_frames[None, :]).min(axis=1) <= tolerance_frames).sum())
        isolated = spike_frames[np.diff(spike_frames, prepend=-isolation_frames - 1) > isolation_frames]
        onsets += len(isolated)
        if len(frames) and len(isolated):
            found += int((np.abs(isolated[:, None] - frames[None, :]).min(axis=1) <= tolerance_frames).sum())
    return hits / max(1, len(event_frames)), found / max(1, onsets)


def test_linear_detrending_removes_a_planted_bleaching_line_and_keeps_the_level() -> None:
    rng = np.random.default_rng(3)
    _, dff = planted_transients(rng, rows=20, frame_count=2400, rate_hz=0.05)
    time = np.arange(2400) / 2399.0
    clean = 200.0 * (1.0 + dff)
    traces = (clean - 100.0 * time + rng.normal(0, 2.0, clean.shape)).astype(np.float32)  # 50 % bleaching over the recording
    detrended = detrend_traces(traces, detrend_method="linear", mean_trace=traces.mean(axis=0))
    residual_slopes = np.polyfit(time, (detrended - clean).T, 1)[0]  # what is left: the line fitted to the transients themselves
    assert np.abs(residual_slopes).max() < 10.0 and np.abs(np.polyfit(time, (traces - clean).T, 1)[0]).min() > 95.0
    assert np.allclose(detrended.mean(axis=1), traces.mean(axis=1), atol=1e-3)


def test_median_detrending_removes_a_trend_common_to_every_component() -> None:
    rng = np.random.default_rng(4)
    _, dff = planted_transients(rng, rows=200, frame_count=2400)
    clean = rng.uniform(100, 300, (200, 1)) * (1.0 + dff)
    bleaching = 150.0 * np.exp(-np.arange(2400) / 600.0)
    traces = (clean + bleaching).astype(np.float32)
    detrended = detrend_traces(traces, detrend_method="median", mean_trace=traces.mean(axis=0))
    left = (detrended - clean).mean(axis=0)
    assert np.ptp(left) < 0.15 * np.ptp(bleaching)
    assert np.ptp(detrend_traces(traces, detrend_method=None, mean_trace=traces.mean(axis=0)) - clean) > 0.9 * np.ptp(bleaching)


def test_delta_f_over_f_follows_a_planted_transient_train_on_a_drifting_baseline() -> None:
    rng = np.random.default_rng(5)
    _, dff = planted_transients(rng, rows=10, frame_count=4000, rate_hz=0.1)
    resting = 150.0 + 40.0 * np.sin(2 * np.pi * np.arange(4000) / FRAME_RATE_HZ / 120.0)  # a slow baseline the windowed percentile must follow
    traces = (resting * (1.0 + dff) + rng.normal(0, 0.5, dff.shape)).astype(np.float32)
    window_frames = int(5.0 * FRAME_RATE_HZ)
    ratio = miniscope_delta_f_over_f(traces, window_frames=window_frames, quantile_min=8.0, df_over_f_method="delta_f_over_f")
    assert np.median(np.abs(ratio - dff)) < 0.02 and np.corrcoef(ratio.ravel(), dff.ravel())[0, 1] > 0.97
    over_root = miniscope_delta_f_over_f(traces, window_frames=window_frames, quantile_min=8.0, df_over_f_method="delta_f_over_sqrt_f")
    baseline = windowed_percentile_baseline(traces, window_frames=window_frames, quantile_min=8.0)
    assert np.median(np.abs(baseline / resting - 1)) < 0.02
    assert np.allclose(over_root, ratio * np.sqrt(baseline), rtol=1e-4, atol=1e-6)  # (F − F0) / √F0 = dF/F · √F0


def test_background_under_a_footprint_is_its_weighted_sum() -> None:
    footprints = RaggedRois(np.array([0, 2, 2, 3]), np.array([0, 1, 2], np.int32), np.array([0, 1, 2], np.int32), np.array([0.6, 0.8, 1.0], np.float32))
    assert np.allclose(footprint_background(footprints, np.diag([10.0, 20.0, 5.0]).astype(np.float32)), [0.6 * 10 + 0.8 * 20, 0.0, 5.0])


def test_events_mark_planted_spike_onsets() -> None:
    """Measured (40 traces, 2 400 frames, 0.3–0.5 dF/F spikes, noise σ 0.03, 5 σ, 0.5 s apart): first derivative precision 0.999,
    recall 0.947 of the isolated onsets, on the exact frame; second derivative precision 1.00 within a frame; OASIS (deconvolution)
    precision 1.00, recall 0.949 on the exact frame."""
    rng = np.random.default_rng(6)
    spikes, dff = planted_transients(rng, rows=40, frame_count=2400)
    noisy = (dff + rng.normal(0, 0.03, dff.shape)).astype(np.float32)
    interval_frames = int(0.5 * FRAME_RATE_HZ)
    options = {"event_height": 5.0, "minimum_event_interval_frames": interval_frames, "tau_s": 1.0, "frame_rate_hz": FRAME_RATE_HZ}
    events = detect_calcium_events(noisy, event_method="derivative", derivative_for_estimates="first", **options)
    precision, recall = onset_scores(events.event_offsets, events.event_frames, spikes, tolerance_frames=0, isolation_frames=interval_frames)
    assert precision >= 0.95 and recall >= 0.9
    assert np.allclose(events.noise_sigma, 0.03 * np.sqrt(2), rtol=0.15)  # σ of a frame-to-frame difference
    second = detect_calcium_events(noisy, event_method="derivative", derivative_for_estimates="second", **options)
    assert onset_scores(second.event_offsets, second.event_frames, spikes, tolerance_frames=1, isolation_frames=interval_frames)[0] >= 0.9
    deconvolved = detect_calcium_events(noisy, event_method="deconvolution", derivative_for_estimates="first", **options)
    precision, recall = onset_scores(deconvolved.event_offsets, deconvolved.event_frames, spikes, tolerance_frames=0, isolation_frames=interval_frames)
    assert precision >= 0.95 and recall >= 0.9


def test_spectrum_peaks_at_a_planted_sinusoid_and_the_phase_follows_it() -> None:
    rng = np.random.default_rng(7)
    frequencies_hz = np.array([0.25, 0.5, 1.2])
    time_s = np.arange(2400) / FRAME_RATE_HZ
    phases = 2 * np.pi * frequencies_hz[:, None] * time_s + np.array([[0.3], [-1.0], [2.0]])
    traces = (np.cos(phases) + rng.normal(0, 0.5, phases.shape)).astype(np.float32)
    spectrogram = multitaper_spectrogram(traces, frame_rate_hz=FRAME_RATE_HZ, window_length_s=30.0, window_step_s=3.0, freq_lims_hz=(0.0, 15.0), time_bandwidth=2.0)
    assert spectrogram.power.shape == (3, 31, len(spectrogram.frequencies_hz)) and spectrogram.frequencies_hz.max() == FRAME_RATE_HZ / 2
    assert np.all(np.abs(spectrogram.dominant_frequency_hz - frequencies_hz) <= 2.0 / 30.0)  # within the tapers' half-bandwidth TW / window
    phase = instantaneous_phase(traces, frame_rate_hz=FRAME_RATE_HZ, filter_order=2, filter_cut_hz=(0.1, 1.5))
    error = np.angle(np.exp(1j * (phase - phases)))[:, 200:-200]
    assert np.median(np.abs(error)) < 0.25
    with pytest.raises(ValueError, match="half the frame rate"):
        instantaneous_phase(traces, frame_rate_hz=2.0, filter_order=2, filter_cut_hz=(0.1, 1.5))


class RecordingScores(NamedTuple):
    """Miniscope outputs of a store against the one-photon truth: ROIs matched to active cells, median r of their
    dF/F with the planted calcium, event precision and recall (`onset_scores`, within a frame, onsets 0.5 s apart)."""

    matched: int
    median_correlation: float
    precision: float
    recall: float


def recording_scores(store: Any, truth: Any) -> RecordingScores:
    from cindra_dask.evaluate import match_rois, row_correlations

    rois = store.read_rois("plane_0/rois")
    sources = np.flatnonzero(truth.is_cell & truth.active)
    matching = match_rois(rois, truth.rois().select(sources), frame_shape=(ONE_PHOTON["frame_height"], ONE_PHOTON["frame_width"]))
    matched_truth = sources[matching.true_index]
    correlations = row_correlations(np.nan_to_num(store.read("plane_0/miniscope/delta_f_over_f")[matching.detected_index]), truth.calcium[matched_truth])
    offsets, frames = store.read("plane_0/miniscope/event_offsets"), store.read("plane_0/miniscope/event_frames")
    selected_offsets = np.concatenate([[0], np.cumsum(np.diff(offsets)[matching.detected_index])])
    selected_frames = np.concatenate([np.zeros(0, np.int64), *(frames[offsets[row] : offsets[row + 1]] for row in matching.detected_index)])
    interval_frames = int(round(0.5 * truth.frame_rate_hz))
    precision, recall = onset_scores(selected_offsets, selected_frames, truth.spikes[matched_truth], tolerance_frames=1, isolation_frames=interval_frames)
    return RecordingScores(len(correlations), float(np.median(correlations)), precision, recall)


def test_the_miniscope_step_on_a_one_photon_recording(one_photon_run: tuple[Path, Any]) -> None:
    """CNMF_E_PRESET turns the step on; its rows are the ROIs. Measured (80² × 500 at 20 Hz, 16 cells, 14 active): 13 ROIs
    matched to active cells, median r of their dF/F with the planted calcium 0.929; events (first derivative, 5 σ, 0.5 s)
    precision 1.00 within a frame of a planted spike, recall 0.74 of the isolated planted onsets (138 events)."""
    from cindra_dask.simulate import load_ground_truth
    from cindra_dask.store import RecordingStore

    data, report = one_photon_run
    assert {outcome.name: outcome.state for outcome in report.outcomes}["miniscope/plane_0"] == "ran"
    store = RecordingStore(report.store_path)
    row_count = store.read_rois("plane_0/rois").count
    assert store.read("plane_0/miniscope/delta_f_over_f").shape == (row_count, ONE_PHOTON["frame_count"]) and store.read("plane_0/miniscope/event_offsets").shape == (row_count + 1,)
    assert np.all(store.read("plane_0/miniscope/footprint_background") > 0)
    scores = recording_scores(store, load_ground_truth(data / "ground_truth.npz"))
    assert scores.matched >= 11 and scores.median_correlation >= 0.85
    assert scores.precision >= 0.9 and scores.recall >= 0.6


def test_a_miniscope_setting_reruns_only_the_miniscope_step(one_photon_run: tuple[Path, Any], tmp_path: Path, client: Any) -> None:
    """On a copy of the `one_photon_run` store: linear detrending, dF/F and OASIS events rerun the miniscope step (and combine),
    nothing before it; the same configuration again skips every step. Measured: median dF/F r 0.929 over 13 matched ROIs, events
    (deconvolution, main.tau = the planted 1 s) precision 1.00, recall 0.61."""
    import shutil

    from cindra_dask.config import CNMF_E_PRESET
    from cindra_dask.pipeline import run_single_recording
    from cindra_dask.simulate import load_ground_truth, one_photon_parameters
    from cindra_dask.store import RecordingStore
    from tests.conftest import single_configuration

    data, report = one_photon_run
    shutil.copytree(report.store_path, tmp_path / report.store_path.name)
    changed = {"enabled": True, "detrend_method": "linear", "df_over_f_method": "delta_f_over_f", "event_method": "deconvolution"}
    sections = {**CNMF_E_PRESET, "miniscope_analysis": changed}
    configuration = single_configuration(data, tmp_path, main={"tau": one_photon_parameters(**ONE_PHOTON).tau_s}, runtime={"max_chunk_memory": "1MiB"}, **sections)
    rerun = run_single_recording(configuration, client=client)
    assert {outcome.name: outcome.state for outcome in rerun.outcomes} == {
        "ingest": "skipped", "registration/plane_0": "skipped", "cnmf/plane_0": "skipped", "extraction/plane_0": "skipped", "miniscope/plane_0": "ran", "combine": "ran"
    }
    assert {outcome.state for outcome in run_single_recording(configuration, client=client).outcomes} == {"skipped"}
    before, after = RecordingStore(report.store_path), RecordingStore(rerun.store_path)
    ratio = after.read("plane_0/miniscope/delta_f_over_f")
    over_root = before.read("plane_0/miniscope/delta_f_over_f")
    assert ratio.shape == over_root.shape and np.all(np.isfinite(ratio)) and np.nanmax(np.abs(ratio)) < np.nanmax(np.abs(over_root))  # dF/F, not dF/√F of F ≫ 1
    scores = recording_scores(after, load_ground_truth(data / "ground_truth.npz"))
    assert scores.median_correlation >= 0.85 and scores.precision >= 0.9 and scores.recall >= 0.5


def test_the_miniscope_step_needs_cnmf_e() -> None:
    from cindra_dask.config import configuration_from_mapping
    from cindra_dask.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="miniscope_analysis.enabled needs source_extraction.method: cnmf_e"):
        configuration_from_mapping({"miniscope_analysis": {"enabled": True}}, source="test")
    assert configuration_from_mapping({"miniscope_analysis": {"enabled": True}, "source_extraction": {"method": "cnmf_e"}}, source="test").miniscope_analysis.enabled


def test_ingest_stores_only_the_crop_in_the_miniscope_pipelines_convention(tmp_path: Path, client: Any) -> None:
    """crop_coords (x0, y0, x1, y1) with y up from the bottom edge: TIFF pages of two planes, and a Miniscope V4 AVI folder;
    a crop outside the frame and a phase band above Nyquist are refused by preflight."""
    from cindra_dask.errors import CindraError, ConfigurationError
    from cindra_dask.pipeline import run_single_recording
    from cindra_dask.simulate import one_photon_parameters, simulate_recording, write_miniscope_recording
    from cindra_dask.store import RecordingStore, frames_path
    from tests.conftest import single_configuration, write_tiff_recording

    pages = np.random.default_rng(8).integers(0, 1000, size=(2 * 10, 30, 20)).astype(np.int16)
    write_tiff_recording(tmp_path / "tiff", pages, file_page_counts=(20,), acquisition={"frame_rate": 20.0, "plane_number": 2, "channel_number": 1})
    report = run_single_recording(single_configuration(tmp_path / "tiff", tmp_path / "out", file_io={"crop_coords": [15, 4, 3, 25]}), client=client, phases=["ingest"])
    store = RecordingStore(report.store_path)
    for plane in range(2):
        np.testing.assert_array_equal(store.read(frames_path(plane, 0)), pages[plane::2, 30 - 25 : 30 - 4, 3:15])
    parameters = one_photon_parameters(frame_height=40, frame_width=48, frame_count=60, cell_count=4, seed=3)
    movie = simulate_recording(parameters).movie[0, 0]
    avi = write_miniscope_recording(parameters, tmp_path / "avi", version="v4", frames_per_file=60)
    report = run_single_recording(single_configuration(avi, tmp_path / "out_avi", file_io={"crop_coords": [0, 40, 30, 10]}), client=client, phases=["ingest"])
    np.testing.assert_array_equal(RecordingStore(report.store_path).read(frames_path(0, 0)), movie[:, 0:30, 0:30])
    with pytest.raises(CindraError, match="miniscope_analysis.filter_cut: the band 0.1–12 Hz must satisfy"):  # before anything is written
        sections = {"source_extraction": {"method": "cnmf_e"}, "miniscope_analysis": {"enabled": True, "filter_cut": [0.1, 12.0]}}
        run_single_recording(single_configuration(avi, tmp_path / "refused", **sections), client=client)
    with pytest.raises(ConfigurationError, match="crop_coords"):
        run_single_recording(single_configuration(avi, tmp_path / "refused", file_io={"crop_coords": [0, 0, 60, 10]}), client=client, phases=["ingest"])
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())
