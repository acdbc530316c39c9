"""The simulator plants what it says: bytes, page order, motion, activity, difficulty, sessions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage
from scipy.signal.windows import hann
from skimage.registration import phase_cross_correlation

import cindra_dask.simulate as simulate
from cindra_dask.evaluate import row_correlations
from cindra_dask.simulate import (
    SimulationParameters,
    file_page_counts,
    generate_ground_truth,
    load_ground_truth,
    nonrigid_displacement,
    render_frames,
    save_ground_truth,
    simulate_recording,
    simulate_sessions,
    to_output_dtype,
    write_recording,
    write_sessions,
)

SMALL = dict(frame_height=64, frame_width=48, frame_count=37, cell_count=8, non_cell_count=3, cell_diameter_px=9.0)


@pytest.fixture(scope="module")
def two_plane_two_channel() -> simulate.SimulatedRecording:
    """A tiny 2-plane, 2-channel recording with bad frames and an odd-line offset."""
    parameters = SimulationParameters(**SMALL, plane_count=2, channel_count=2, bad_frame_count=4, bidirectional_offset_px=1, seed=3)
    return simulate_recording(parameters)


@pytest.fixture(scope="module")
def motion_only() -> tuple[SimulationParameters, simulate.GroundTruth]:
    """128² recording with rigid motion and bad frames, no nonrigid warp (truth only)."""
    parameters = SimulationParameters(frame_height=128, frame_width=128, frame_count=120, cell_count=30, non_cell_count=8, nonrigid_shift_px=0.0, bad_frame_count=6, seed=5)
    return parameters, generate_ground_truth(parameters)


@pytest.fixture(scope="module")
def long_truth() -> simulate.GroundTruth:
    """Activity of many sources over a long recording (no pixels rendered)."""
    return generate_ground_truth(SimulationParameters(frame_height=128, frame_width=128, frame_count=9000, cell_count=60, non_cell_count=20, seed=2))


def _hann_window(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(hann(shape[0]), hann(shape[1]))


def _shift_between(reference: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """(dy, dx) by which ``moved`` shows ``reference`` moved (windowed cross-correlation, 0.01 px)."""
    window = _hann_window(reference.shape)
    shift, _, _ = phase_cross_correlation((reference - reference.mean()) * window, (moved - moved.mean()) * window, upsample_factor=100, normalization=None)
    return -np.asarray(shift)


def test_parameters_are_frozen_strict_and_checked() -> None:
    parameters = SimulationParameters()
    assert parameters.plane_frame_rate_hz == 30.0
    with pytest.raises(ValidationError):
        SimulationParameters(cell_count=-1)
    with pytest.raises(ValidationError):
        SimulationParameters(unknown_field=1)
    with pytest.raises(ValidationError):
        SimulationParameters(frame_count=10, bad_frame_count=10)
    with pytest.raises(ValidationError):
        parameters.seed = 3  # type: ignore[misc]
    assert all(field.description for field in SimulationParameters.model_fields.values())


def test_same_seed_same_bytes_other_seed_other_bytes(two_plane_two_channel: simulate.SimulatedRecording) -> None:
    parameters = two_plane_two_channel.truth.parameters
    again = simulate_recording(parameters).movie
    assert again.tobytes() == two_plane_two_channel.movie.tobytes()
    other = simulate_recording(parameters.model_copy(update={"seed": 4})).movie
    assert np.mean(other != again) > 0.5
    # rendering any subset of frames gives the same pages (noise is drawn per frame, not per chunk)
    subset = to_output_dtype(render_frames(parameters, two_plane_two_channel.truth, plane=1, frames=[30, 5, 17]), parameters.dtype)
    np.testing.assert_array_equal(subset, two_plane_two_channel.movie[1][:, [30, 5, 17]])


def test_tiff_pages_interleave_plane_major_channel_minor(two_plane_two_channel: simulate.SimulatedRecording, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tifffile

    parameters, truth, movie = two_plane_two_channel.truth.parameters, two_plane_two_channel.truth, two_plane_two_channel.movie
    monkeypatch.setattr(simulate.render, "CHUNK_BYTES", 1)  # one frame per chunk: files are filled across many chunks
    write_recording(parameters, tmp_path, truth=truth)
    paths = sorted(tmp_path.glob("recording_*.tif"))
    counts = [len(tifffile.TiffFile(path).pages) for path in paths]
    cycle = parameters.plane_count * parameters.channel_count
    assert counts == file_page_counts(parameters.frame_count * cycle, file_count=parameters.file_count, cycle_pages=cycle).tolist()
    assert len(paths) == 3 and sum(counts) == 37 * 4 and len(set(counts)) == 3
    assert all(count % cycle for count in counts[:-1]) and all(sum(counts[: k + 1]) % cycle for k in range(2))
    pages = np.concatenate([tifffile.imread(path) for path in paths])
    assert pages.dtype == np.int16
    volumes = pages.reshape(parameters.frame_count, parameters.plane_count, parameters.channel_count, parameters.frame_height, parameters.frame_width)
    np.testing.assert_array_equal(volumes.transpose(1, 2, 0, 3, 4), movie)
    acquisition = json.loads((tmp_path / "cindra_parameters.json").read_text())
    assert acquisition == {"frame_rate": 30.0, "plane_number": 2, "channel_number": 2, "roi_number": 1, "roi_lines": [], "roi_x_coordinates": [], "roi_y_coordinates": []}
    np.testing.assert_array_equal(load_ground_truth(tmp_path / "ground_truth.npz").calcium, truth.calcium)


def test_file_page_counts_are_unequal_and_off_cycle() -> None:
    counts = file_page_counts(6000, file_count=4, cycle_pages=3)
    assert counts.sum() == 6000 and len(set(counts.tolist())) == 4
    assert all(boundary % 3 for boundary in np.cumsum(counts)[:-1])
    assert file_page_counts(2, file_count=3, cycle_pages=1).tolist() == [1, 1]


def test_planted_rigid_offsets_are_what_the_frames_show(motion_only: tuple[SimulationParameters, simulate.GroundTruth]) -> None:
    parameters, truth = motion_only
    good = np.flatnonzero(~truth.bad_frames[0])[::9]
    moved = render_frames(parameters, truth, plane=0, frames=good, noise=False)[0]
    reference = render_frames(parameters, truth, plane=0, frames=good, motion=False, noise=False)[0]
    errors = np.array([_shift_between(reference[k], moved[k]) for k in range(len(good))]) - truth.rigid_offsets[0, good]
    assert np.abs(errors).max() < 0.05
    assert np.abs(truth.rigid_offsets[0, good]).max() > 2.0  # the offsets are not trivially small
    np.testing.assert_allclose(np.abs(truth.rigid_offsets[0][~truth.bad_frames[0]]).max(axis=0), parameters.rigid_shift_px, rtol=1e-5)


def test_bad_frames_are_blank_or_far_shifted(motion_only: tuple[SimulationParameters, simulate.GroundTruth]) -> None:
    parameters, truth = motion_only
    bad = np.flatnonzero(truth.bad_frames[0])
    assert len(bad) == parameters.bad_frame_count and truth.blank_frames[0, bad].any() and not truth.blank_frames[0, bad].all()
    shifted = bad[~truth.blank_frames[0, bad]]
    assert np.all(np.abs(truth.rigid_offsets[0, shifted]) >= 3 * parameters.rigid_shift_px)
    assert np.all(np.abs(truth.rigid_offsets[0, shifted]) > 0.1 * parameters.frame_height)  # beyond cindra's search radius
    frames = render_frames(parameters, truth, plane=0, frames=bad, noise=False)[0]
    reference = render_frames(parameters, truth, plane=0, frames=bad, motion=False, noise=False)[0]
    normal = render_frames(parameters, truth, plane=0, frames=[0], noise=False)[0, 0]
    pad = truth.scene_padding_px
    background = truth.background_images[0, 0, pad:-pad, pad:-pad]
    for frame, reference_frame, time_index in zip(frames, reference, bad):
        if truth.blank_frames[0, time_index]:  # background only: smooth, dark, no cells
            assert np.corrcoef(frame.ravel(), background.ravel())[0, 1] > 0.85 and frame.mean() < 0.5 * normal.mean()
        else:  # the whole scene, moved by the planted far offset
            np.testing.assert_allclose(_shift_between(reference_frame, frame), truth.rigid_offsets[0, time_index], atol=0.3)


def test_nonrigid_field_is_what_the_frames_show() -> None:
    parameters = SimulationParameters(frame_height=128, frame_width=128, frame_count=60, cell_count=30, non_cell_count=8, rigid_shift_px=0.0, nonrigid_shift_px=3.0, nonrigid_grid_spacing_px=48.0, seed=7)
    truth = generate_ground_truth(parameters)
    frames = np.array([10, 40])
    moved = render_frames(parameters, truth, plane=0, frames=frames, noise=False)[0]
    reference = render_frames(parameters, truth, plane=0, frames=frames, motion=False, noise=False)[0]
    field = nonrigid_displacement(truth, 0, frames)
    all_frames = nonrigid_displacement(truth, 0, slice(None))
    assert 0.99 * parameters.nonrigid_shift_px < np.abs(all_frames).max() < 1.01 * parameters.nonrigid_shift_px
    np.testing.assert_allclose(field.mean(axis=(2, 3)), 0.0, atol=1e-4)  # nonrigid is relative to the rigid offset
    errors, block_shifts = [], []
    for k in range(len(frames)):
        for y0 in (16, 48, 80):
            for x0 in (16, 48, 80):
                block = (slice(y0, y0 + 32), slice(x0, x0 + 32))
                block_shifts.append(field[k][:, block[0], block[1]].mean(axis=(1, 2)))
                errors.append(_shift_between(reference[k][block], moved[k][block]) - block_shifts[-1])
    assert np.sqrt(np.mean(np.square(errors))) < 0.1 and np.sqrt(np.mean(np.square(block_shifts))) > 0.3


def test_bidirectional_offset_sign_matches_cindra_estimator() -> None:
    parameters = SimulationParameters(**{**SMALL, "frame_height": 96, "frame_width": 96, "cell_count": 20}, bidirectional_offset_px=3, rigid_shift_px=0, nonrigid_shift_px=0)
    truth = generate_ground_truth(parameters)
    frames = render_frames(parameters, truth, plane=0, frames=range(0, 37, 4), noise=False)[0]
    # cindra §3.2.2: odd × conj(even) phase correlation along x; offset = -(argmax - 10)
    odd, even = np.fft.rfft(frames[:, 1::2], axis=-1), np.fft.rfft(frames[:, ::2][:, : frames[:, 1::2].shape[1]], axis=-1)
    product = odd / (np.abs(odd) + 1e-5) * np.conj(even / (np.abs(even) + 1e-5))
    correlation = np.fft.fftshift(np.fft.irfft(product, n=frames.shape[-1], axis=-1).mean(axis=(0, 1)))
    centre = frames.shape[-1] // 2
    estimate = -(np.argmax(correlation[centre - 10 : centre + 11]) - 10)
    assert estimate == parameters.bidirectional_offset_px
    # undoing it (odd rows right by the offset) gives the motion-free frame without the artefact
    clean = render_frames(parameters.model_copy(update={"bidirectional_offset_px": 0}), truth._replace(bidirectional_offset_px=0), plane=0, frames=[0], noise=False)[0, 0]
    np.testing.assert_allclose(frames[0, 1::2, :-3], clean[1::2, 3:], rtol=1e-5)
    np.testing.assert_allclose(frames[0, ::2], clean[::2], rtol=1e-5)


def test_calcium_is_the_ar1_of_the_spikes_at_the_planted_rate(long_truth: simulate.GroundTruth) -> None:
    parameters = long_truth.parameters
    decay = math.exp(-1.0 / (parameters.tau_s * parameters.plane_frame_rate_hz))
    calcium, spikes = long_truth.calcium.astype(np.float64), long_truth.spikes
    innovation = calcium.copy()
    innovation[:, 1:] -= decay * calcium[:, :-1]
    assert np.abs(innovation[spikes == 0]).max() < 1e-5
    assert innovation[spikes > 0].min() > 0
    np.testing.assert_allclose(innovation[spikes > 0].sum() / spikes.sum(), parameters.spike_amplitude_dff, rtol=0.05)
    np.testing.assert_array_equal(long_truth.active, spikes.sum(axis=1) > 0)
    duration_s = parameters.frame_count / parameters.plane_frame_rate_hz
    rates = spikes[long_truth.active].sum(axis=1) / duration_s
    assert abs(rates.mean() - parameters.spike_rate_hz) < 0.15 * parameters.spike_rate_hz
    assert rates.std() > 0.2 * rates.mean()  # heterogeneous rates
    assert 0.02 < 1 - long_truth.active.mean() < 0.25  # some silent sources (silent_fraction = 0.1)


def test_data_are_neither_trivial_nor_hopeless() -> None:
    parameters = SimulationParameters(frame_height=128, frame_width=128, frame_count=1200, cell_count=30, non_cell_count=8, rigid_shift_px=0.0, nonrigid_shift_px=0.0, seed=11)
    recording = simulate_recording(parameters)
    truth = recording.truth
    frames = recording.movie[0, 0].reshape(parameters.frame_count, -1).astype(np.float32)
    rois = truth.rois()
    traces = np.array([frames[:, ypix.astype(np.int64) * parameters.frame_width + xpix].mean(axis=1) for ypix, xpix, _ in (rois.roi(k) for k in range(rois.count))])
    correlations = row_correlations(traces, truth.calcium)[truth.active & truth.is_cell]
    assert 0.5 < np.mean(correlations) < 0.95
    assert np.mean(correlations > 0.2) > 0.9
    # neuropil is a real confound: it correlates with the sources
    neuropil_mean = truth.neuropil_activity[0].mean(axis=0)
    assert np.mean(row_correlations(np.broadcast_to(neuropil_mean, truth.calcium.shape), truth.calcium)[truth.active]) > 0.1


def test_footprints_look_like_somata_and_dendrites(long_truth: simulate.GroundTruth) -> None:
    parameters, rois = long_truth.parameters, long_truth.rois()
    counts = rois.pixel_counts()
    soma_area = np.pi * (parameters.cell_diameter_px / 2) ** 2
    assert 0.7 * soma_area < np.median(counts[long_truth.is_cell]) < 1.6 * soma_area
    for k in range(rois.count):
        _, _, weights = rois.roi(k)
        assert abs(weights.mean() - 1.0) < 1e-5
    cells = rois.select(np.flatnonzero(long_truth.is_cell))
    coverage = np.zeros((parameters.frame_height, parameters.frame_width), int)
    np.add.at(coverage, (cells.ypix, cells.xpix), 1)
    assert (coverage > 1).sum() > 0  # some somata overlap
    elongations = []
    for k in np.flatnonzero(~long_truth.is_cell):
        ypix, xpix, _ = rois.roi(k)
        eigenvalues = np.linalg.eigvalsh(np.cov(np.vstack([ypix, xpix]).astype(float)))
        elongations.append(np.sqrt(eigenvalues[1] / max(eigenvalues[0], 1e-6)))
    assert np.median(elongations) > 2.0
    assert long_truth.is_red.sum() == round(parameters.red_cell_fraction * parameters.cell_count) and not long_truth.is_red[~long_truth.is_cell].any()


def test_one_photon_background_dominates_and_footprints_blur() -> None:
    common = dict(frame_height=96, frame_width=96, frame_count=20, cell_count=15, non_cell_count=0, seed=4)
    two_photon, one_photon = generate_ground_truth(SimulationParameters(**common)), generate_ground_truth(SimulationParameters(**common, one_photon=True))
    pad = one_photon.scene_padding_px
    background = (one_photon.neuropil_images[0].sum(axis=0) + one_photon.background_images[0, 0])[pad:-pad, pad:-pad] + one_photon.sensor_background[0, 0]
    assert background.mean() > 5 * one_photon.source_baseline_photons.mean()
    assert np.median(np.diff(one_photon.footprint_pixel_offsets)) > 1.5 * np.median(np.diff(two_photon.footprint_pixel_offsets))
    assert one_photon.illumination.min() < 0.8 and np.all(two_photon.illumination == 1)


def test_red_channel_shows_labelled_cells(two_plane_two_channel: simulate.SimulatedRecording) -> None:
    truth, movie = two_plane_two_channel.truth, two_plane_two_channel.movie
    good = ~truth.bad_frames[0]
    red_mean = render_frames(truth.parameters, truth, plane=0, frames=np.flatnonzero(good), motion=False, noise=False)[1].mean(axis=0)
    rois = truth.rois(plane=0)
    contrast = np.array([red_mean[rois.roi(k)[0], rois.roi(k)[1]].mean() for k in range(rois.count)])
    is_red = truth.is_red[truth.plane_index == 0]
    assert is_red.any() and contrast[is_red].min() > contrast[~is_red].max()
    assert movie[:, 1].mean() < movie[:, 0].mean()


def test_uint16_output_clips_instead_of_wrapping() -> None:
    converted = to_output_dtype(np.array([-5.0, 3.4, 70000.0], np.float32), "uint16")
    assert converted.tolist() == [0, 3, 65535]
    assert to_output_dtype(np.array([40000.0]), "int16").tolist() == [32767]


def test_sessions_share_a_deformed_field_of_view(tmp_path: Path) -> None:
    parameters = SimulationParameters(frame_height=128, frame_width=128, frame_count=12, cell_count=40, non_cell_count=10, seed=9)
    sessions = simulate_sessions(parameters, session_count=3, deformation_px=4.0, turnover_fraction=0.2)
    shared_positions = []
    for session in sessions:
        truth = session.truth
        assert truth.is_cell.sum() == 40 and (~truth.is_cell).sum() == 10
        assert len(np.unique(truth.cell_identity)) == len(truth.cell_identity)
        assert abs(np.abs(truth.session_deformation).max() - 4.0) < 0.05
        displacement = np.stack([ndimage.map_coordinates(truth.session_deformation[axis], truth.centroids.T.astype(np.float64), order=1) for axis in range(2)], axis=1)
        shared_positions.append(dict(zip(truth.cell_identity.tolist(), zip(truth.centroids - displacement, truth.centroids, truth.is_cell, truth.is_red))))
    for first, second in zip(shared_positions[:-1], shared_positions[1:]):
        common = [identity for identity in first if identity in second and first[identity][2]]
        assert len(common) == 40 - round(0.2 * 40)  # turnover: 8 of 40 somata replaced per session
        mapped_error = [np.hypot(*(first[i][0] - second[i][0])) for i in common]
        raw_distance = [np.hypot(*(first[i][1] - second[i][1])) for i in common]
        assert np.max(mapped_error) < 0.3 and np.median(raw_distance) > 1.0
        assert all(first[i][2:] == second[i][2:] for i in common)  # identity keeps soma/red labels
    assert len({session.parameters.seed for session in sessions}) == 3
    paths = write_sessions(parameters.model_copy(update={"frame_height": 64, "frame_width": 64, "cell_count": 10, "non_cell_count": 2}), tmp_path, session_count=2)
    assert [path.name for path in paths] == ["session_000", "session_001"]
    assert all(len(list(path.glob("recording_*.tif"))) == 3 and (path / "ground_truth.npz").exists() for path in paths)


def test_ground_truth_round_trip(two_plane_two_channel: simulate.SimulatedRecording, tmp_path: Path) -> None:
    truth = two_plane_two_channel.truth
    loaded = load_ground_truth(save_ground_truth(truth, tmp_path / "truth.npz"))
    for name, value in truth._asdict().items():
        restored = getattr(loaded, name)
        if isinstance(value, np.ndarray):
            assert restored.dtype == value.dtype, name
            np.testing.assert_array_equal(restored, value, err_msg=name)
        else:
            assert type(restored) is type(value) and restored == value, name
    assert loaded.parameters == truth.parameters
    with np.load(tmp_path / "truth.npz", allow_pickle=False) as archive:
        assert set(archive.files) == set(simulate.GroundTruth._fields)


def test_one_photon_glow_defeats_plain_cross_correlation_until_high_passed() -> None:
    parameters = SimulationParameters(frame_height=128, frame_width=128, frame_count=120, cell_count=30, non_cell_count=8, one_photon=True, rigid_shift_px=6.0, nonrigid_shift_px=0.0, seed=0)
    recording = simulate_recording(parameters)
    truth, frames = recording.truth, recording.movie[0, 0].astype(np.float32)
    reference = render_frames(parameters, truth, plane=0, frames=range(0, 120, 10), motion=False, noise=False)[0].mean(axis=0)
    assert np.abs(truth.sensor_background[0, 0]).mean() > 2 * parameters.baseline_photons  # part of the glow does not move

    def rms_error(prefilter: Callable[[np.ndarray], np.ndarray]) -> float:
        sampled = np.arange(0, 120, 3)
        estimated = np.array([_shift_between(prefilter(reference), prefilter(frames[t])) for t in sampled])
        error = estimated - truth.rigid_offsets[0, sampled]
        error -= np.median(error, axis=0)
        return float(np.sqrt(np.mean(np.sum(error**2, axis=1))))

    raw, high_passed = rms_error(lambda image: image), rms_error(lambda image: image - ndimage.uniform_filter(image, 21))
    assert raw > 0.5 and raw > 3 * high_passed
