"""The detection step's Dask graph against whole-array numpy and against planted ground truth.

Stores are written by hand as registration would leave them (``registered/channel_0``,
``registration/bad_frames``, valid ranges), since registration is not wired yet; the simulated
recordings have motion disabled. Classifier features need skewness, computed here by a dense
extraction with the extraction kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from cindra_dask.chunking import bin_aligned_chunks
from cindra_dask.config import AcquisitionParameters
from cindra_dask.detection.binning import bin_frames
from cindra_dask.detection.classify import FEATURE_NAMES, classify, load_classifier
from cindra_dask.extraction.baseline import neuropil_corrected_skewness
from cindra_dask.detection.graph import binned_movie, plan_detection_step
from cindra_dask.detection.images import enhanced_mean_image
from cindra_dask.errors import InputError
from cindra_dask.evaluate import match_rois
from cindra_dask.extraction.masks import build_extraction_masks
from cindra_dask.extraction.traces import extract_traces
from cindra_dask.pipeline import RecordingContext, run_plan
from cindra_dask.rois import RaggedRois
from cindra_dask.store import FRAME_DIMENSIONS, RecordingStore, frames_path, stage_path
from tests.conftest import detection_options, single_configuration

IMAGE_NAMES = ("mean_image", "enhanced_mean_image", "maximum_projection", "correlation_map")


def _registered_recording(
    directory: Path,
    movie: np.ndarray,
    *,
    chunk_frames: int,
    bad_frames: np.ndarray,
    valid_y_range: tuple[int, int],
    valid_x_range: tuple[int, int],
    frame_rate_hz: float,
    **sections: dict,
) -> RecordingContext:
    """A store holding what registration leaves for detection, and its context (no ingest plan)."""
    acquisition = AcquisitionParameters(frame_rate=frame_rate_hz, plane_number=1, channel_number=1)
    store = RecordingStore(directory / "recording.zarr")
    store.update_attributes(acquisition=acquisition.model_dump(mode="json"), frames_per_plane=movie.shape[0])
    registered = store.create_array(frames_path(0, 0, kind="registered"), shape=movie.shape, dtype=movie.dtype, chunks=(chunk_frames, *movie.shape[1:]), dimension_names=FRAME_DIMENSIONS)
    registered[...] = movie
    store.write_array(f"{stage_path(0, 'registration')}/bad_frames", np.asarray(bad_frames, bool))
    zarr.open_group(str(store.path / stage_path(0, "registration")), mode="r+").attrs.update(valid_y_range=list(valid_y_range), valid_x_range=list(valid_x_range), alignment_channel=0)
    configuration = single_configuration(directory, directory, **sections)
    return RecordingContext(configuration, acquisition, directory, None, store, np.zeros(0, np.int64))


def _local_correlation(movie: np.ndarray) -> np.ndarray:
    """Mean Pearson r of each pixel's trace with its (up to 8) in-frame neighbours; 0 for constant traces."""
    centered = movie - movie.mean(axis=0)
    deviation = np.sqrt((centered**2).mean(axis=0))
    standardized = np.divide(centered, deviation, out=np.zeros_like(centered), where=deviation > 0)
    height, width = movie.shape[1:]
    total, count = np.zeros((height, width)), np.zeros((height, width))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == dx == 0:
                continue
            rows, columns = slice(max(0, -dy), height - max(0, dy)), slice(max(0, -dx), width - max(0, dx))
            neighbours = (slice(max(0, dy), height + min(0, dy)), slice(max(0, dx), width + min(0, dx)))
            total[rows, columns] += (standardized[:, rows, columns] * standardized[:, neighbours[0], neighbours[1]]).mean(axis=0)
            count[rows, columns] += 1
    return total / count


# ------------------------------------------------------------------------------------------------
# Binning graph and detection images against numpy
# ------------------------------------------------------------------------------------------------


def test_binning_graph_equals_whole_array_binning_for_unaligned_chunks(client) -> None:
    import dask.array as da

    rng = np.random.default_rng(0)
    bin_size, frame_count = 4, 1003  # 250 complete bins, 3 trailing frames
    frames = rng.integers(-200, 3000, size=(frame_count, 9, 11)).astype(np.int16)
    good = rng.random(frame_count) > 0.2
    good[96:100] = False  # bin 24, first of the second aligned chunk: dropped
    good[192:196] = [False, False, True, False]  # bin 48 holds frame 194 alone (source chunk edge at 194)

    aligned = bin_aligned_chunks((97,) * 10 + (33,), bin_size=bin_size)
    assert aligned == (96,) * 10 + (43,)

    graph = binned_movie(da.from_array(frames, chunks=(97, 9, 11)), good, bin_size=bin_size)
    binned = client.compute(graph).result()
    whole = bin_frames(frames, bin_size=bin_size, good_frames=good)
    assert graph.shape == binned.shape == whole.frames.shape and len(graph.chunks[0]) == len(aligned)
    np.testing.assert_array_equal(binned, whole.frames)
    kept_bins = np.flatnonzero(good[:1000].reshape(250, 4).any(axis=1))
    assert 24 not in kept_bins and binned.shape[0] == kept_bins.size
    np.testing.assert_array_equal(binned[np.searchsorted(kept_bins, 48)], frames[194])
    reference = frames[:1000].reshape(250, 4, 9, 11).astype(np.float64)
    weights = good[:1000].reshape(250, 4, 1, 1)
    np.testing.assert_allclose(binned, ((reference * weights).sum(axis=1) / weights.sum(axis=1).clip(1))[kept_bins], rtol=1e-6)


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.integers(1, 300), min_size=1, max_size=20), bin_size=st.integers(1, 64))
def test_bin_aligned_chunks_never_split_a_bin(chunks: list[int], bin_size: int) -> None:
    aligned = bin_aligned_chunks(tuple(chunks), bin_size=bin_size)
    assert sum(aligned) == sum(chunks) and min(aligned) > 0
    assert all(length % bin_size == 0 for length in aligned[:-1])
    assert max(aligned) <= max(max(chunks), bin_size)
    assert max(aligned) >= bin_size or len(aligned) == 1


BLOB_CENTRES = np.array([(15, 14), (26, 33)])


def _nearest_distances(centroids: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(len(points),) distance (px) from each point to the nearest centroid."""
    return np.sqrt(((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=-1)).min(axis=1)


class _SmallStore(NamedTuple):
    """A small registered store after the detection step, with the movie it holds."""

    context: RecordingContext
    movie: np.ndarray
    good: np.ndarray
    crop: tuple[slice, slice]


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory, client) -> _SmallStore:
    """600 frames of 40×48 px (two active blobs on noise) in 97-frame chunks, cropped and with bad frames; step already run."""
    rng = np.random.default_rng(1)
    frame_count, height, width = 600, 40, 48
    rows, columns = np.mgrid[:height, :width]
    movie = rng.normal(400, 20, size=(frame_count, height, width))
    for centre, phase in zip(BLOB_CENTRES, (0, 7)):
        blob = np.exp(-((rows - centre[0]) ** 2 + (columns - centre[1]) ** 2) / (2 * 3.0**2))
        activity = np.zeros(frame_count)
        activity[phase::37] = 1.0
        activity = np.convolve(activity, np.exp(-np.arange(30) / 6.0))[:frame_count]
        movie += 300 * activity[:, None, None] * blob
    movie = movie.astype(np.int16)
    good = rng.random(frame_count) > 0.1
    movie[~good] = 4000  # bad frames are saturated; binning must ignore them
    context = _registered_recording(
        tmp_path_factory.mktemp("small"), movie, chunk_frames=97, bad_frames=~good, valid_y_range=(2, 38), valid_x_range=(3, 45), frame_rate_hz=10.0, main={"tau": 0.4}
    )
    run_plan(plan_detection_step(context, plane=0), client)
    return _SmallStore(context, movie, good, (slice(2, 38), slice(3, 45)))


def test_detection_images_equal_their_numpy_definitions(small_store: _SmallStore) -> None:
    store = small_store.context.store
    rois_attributes = dict(zarr.open_group(str(store.path / stage_path(0, "rois")), mode="r").attrs)
    assert rois_attributes["bin_size"] == 4  # round(0.4 s · 10 Hz)
    binned = bin_frames(small_store.movie[:, small_store.crop[0], small_store.crop[1]], bin_size=4, good_frames=small_store.good).frames.astype(np.float64)
    assert rois_attributes["binned_frame_count"] == binned.shape[0] == 150
    images = {name: store.read(f"{stage_path(0, 'detection')}/{name}") for name in IMAGE_NAMES}
    inside = np.zeros((40, 48), bool)
    inside[small_store.crop] = True
    for name in IMAGE_NAMES:
        assert images[name].dtype == np.float32 and images[name].shape == (40, 48)
    np.testing.assert_allclose(images["mean_image"][inside].reshape(36, 42), binned.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(images["maximum_projection"][inside].reshape(36, 42), binned.max(axis=0), rtol=1e-6)
    np.testing.assert_allclose(images["correlation_map"][inside].reshape(36, 42), _local_correlation(binned), atol=1e-5)
    assert images["maximum_projection"].max() < 4000  # no bad frame leaked in
    for name in ("mean_image", "maximum_projection", "correlation_map"):
        assert np.all(images[name][~inside] == 0)
    enhanced = enhanced_mean_image(binned.mean(axis=0).astype(np.float32), diameter_px=rois_attributes["diameter_px"])
    np.testing.assert_allclose(images["enhanced_mean_image"][inside].reshape(36, 42), enhanced, atol=1e-5)
    assert np.all(images["enhanced_mean_image"][~inside] == enhanced.min())
    correlation = images["correlation_map"][small_store.crop]
    assert correlation[13, 11] > 0.5 > 0.05 > abs(np.median(correlation))  # blob centre (15, 14) vs noise
    centroids = store.read(f"{stage_path(0, 'rois')}/centroids")
    assert centroids.shape == (2, 2) and _nearest_distances(centroids, BLOB_CENTRES).max() <= 3  # full-frame coordinates


def test_denoising_overwrites_a_private_copy_of_the_binned_movie(small_store: _SmallStore, client, tmp_path: Path) -> None:
    context = _registered_recording(
        tmp_path, small_store.movie, chunk_frames=97, bad_frames=~small_store.good, valid_y_range=(2, 38), valid_x_range=(3, 45), frame_rate_hz=10.0,
        main={"tau": 0.4}, roi_detection={"denoise": True},
    )
    run_plan(plan_detection_step(context, plane=0), client)
    for name in ("mean_image", "maximum_projection", "correlation_map"):  # streamed from the same binned chunks
        np.testing.assert_array_equal(context.store.read(f"{stage_path(0, 'detection')}/{name}"), small_store.context.store.read(f"{stage_path(0, 'detection')}/{name}"))
    assert _nearest_distances(context.store.read(f"{stage_path(0, 'rois')}/centroids"), BLOB_CENTRES).max() <= 3


def test_malformed_custom_classifier_stops_preclassification_naming_the_file(small_store: _SmallStore, client, tmp_path: Path) -> None:
    broken = tmp_path / "broken_classifier.npz"
    np.savez(broken, training_labels=np.ones(150), compactness=np.ones(150))
    context = small_store.context._replace(
        configuration=single_configuration(tmp_path, tmp_path, main={"tau": 0.4, "custom_classifier_path": str(broken)}, roi_detection={"preclassification_threshold": 0.5})
    )
    with pytest.raises(InputError, match="broken_classifier.npz.*normalized_pixel_count"):
        run_plan(plan_detection_step(context, plane=0), client)


# ------------------------------------------------------------------------------------------------
# Empty and pure-noise movies
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["empty", "noise"])
def test_movies_without_cells_give_zero_rois_and_a_warning(kind: str, client, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    movie = np.zeros((400, 64, 64), np.int16) if kind == "empty" else rng.poisson(100, size=(400, 64, 64)).astype(np.int16)
    context = _registered_recording(tmp_path, movie, chunk_frames=50, bad_frames=np.zeros(400, bool), valid_y_range=(0, 64), valid_x_range=(0, 64), frame_rate_hz=30.0)
    with pytest.warns(UserWarning, match="plane 0: detection found no ROIs"):
        run_plan(plan_detection_step(context, plane=0), client)
    store = context.store
    rois = store.read_rois(stage_path(0, "rois"))
    assert rois.count == 0 and rois.ypix.size == 0
    assert store.read(f"{stage_path(0, 'rois')}/centroids").shape == (0, 2)
    assert store.read(f"{stage_path(0, 'rois')}/compactness").shape == (0,)
    mean_image = store.read(f"{stage_path(0, 'detection')}/mean_image")
    np.testing.assert_allclose(mean_image.mean(), movie[:396].mean(), rtol=1e-4)


def test_recording_without_a_complete_bin_of_good_frames_is_refused(client, tmp_path: Path) -> None:
    movie = np.ones((30, 32, 32), np.int16)
    bad = np.zeros(30, bool)
    bad[:24] = True  # bins of 12 frames: two all-bad bins and a 6-frame remainder
    context = _registered_recording(tmp_path, movie, chunk_frames=10, bad_frames=bad, valid_y_range=(0, 32), valid_x_range=(0, 32), frame_rate_hz=30.0)
    with pytest.raises(InputError, match="plane 0 has no complete temporal bin of good frames"):
        run_plan(plan_detection_step(context, plane=0), client)


# ------------------------------------------------------------------------------------------------
# Simulated recordings: detection + classifier against planted somata
# ------------------------------------------------------------------------------------------------


class _Scored(NamedTuple):
    """Detection of one simulated recording scored after classification."""

    context: RecordingContext
    roi_count: int
    kept_count: int
    f1_before: float
    f1_after: float
    recall_after: float
    auc: float
    rois: RaggedRois
    true_active_cells: RaggedRois
    truth_is_cell: np.ndarray
    all_sources: RaggedRois

    def summary(self) -> str:
        """The scores, for assertion messages."""
        return f"{self.roi_count} ROIs, {self.kept_count} cells; F1 {self.f1_before:.3f} → {self.f1_after:.3f} (recall {self.recall_after:.3f}); AUC {self.auc:.3f}"


def _simulate_and_detect(directory: Path, client, *, seed: int, photon_scale: float) -> _Scored:
    """256² × 2000 frames, 120 somata + 30 dendrite-like sources, no motion; 20 frames shifted by 60 px and marked bad."""
    from cindra_dask.simulate import SimulationParameters, generate_ground_truth, render_frames, to_output_dtype

    defaults = SimulationParameters()
    parameters = SimulationParameters(
        frame_count=2000,
        baseline_photons=defaults.baseline_photons * photon_scale,
        neuropil_photons=defaults.neuropil_photons * photon_scale,
        rigid_shift_px=0.0,
        nonrigid_shift_px=0.0,
        file_count=1,
        seed=seed,
    )
    truth = generate_ground_truth(parameters)
    movie = to_output_dtype(render_frames(parameters, truth, plane=0, frames=np.arange(parameters.frame_count), motion=False)[0], parameters.dtype)
    bad = np.zeros(parameters.frame_count, bool)
    bad[np.random.default_rng(seed).choice(parameters.frame_count, 20, replace=False)] = True
    movie[bad] = np.roll(movie[bad], (60, 60), axis=(1, 2))  # far-shifted frames, as registration would flag
    context = _registered_recording(
        directory, movie, chunk_frames=97, bad_frames=bad, valid_y_range=(0, 256), valid_x_range=(3, 250), frame_rate_hz=parameters.frame_rate_hz, main={"tau": truth.tau_s}
    )
    run_plan(plan_detection_step(context, plane=0), client)

    store, group = context.store, stage_path(0, "rois")
    rois = store.read_rois(group)
    frame_shape = movie.shape[1:]
    masks = build_extraction_masks(
        rois, frame_shape=frame_shape, roi_radii_px=store.read(f"{group}/radius_px"), allow_overlap=False, extract_neuropil=True,
        cell_probability_percentile=50, inner_neuropil_border_radius_px=2, minimum_neuropil_pixels=350,
    )
    traces = extract_traces(movie[~bad], masks=masks)  # far-shifted frames would pull cells' skewness down
    features = {name: store.read(f"{group}/{name}") for name in FEATURE_NAMES[:2]}
    features["skewness"] = neuropil_corrected_skewness(traces.cell_fluorescence, traces.neuropil_fluorescence, neuropil_coefficient=0.7)
    classification = classify(features, classifier=load_classifier(None), threshold=0.5)
    kept = np.flatnonzero(classification[:, 0] == 1)

    active_cells = truth.rois().select(np.flatnonzero(truth.is_cell & truth.active))
    before = match_rois(rois, active_cells, frame_shape=frame_shape, iou_threshold=0.3)
    after = match_rois(rois.select(kept), active_cells, frame_shape=frame_shape, iou_threshold=0.3)
    sources = match_rois(rois, truth.rois(), frame_shape=frame_shape, iou_threshold=0.3)
    auc = roc_auc_score(truth.is_cell[sources.true_index], classification[sources.detected_index, 1])
    return _Scored(context, rois.count, kept.size, before.f1, after.f1, after.recall, float(auc), rois, active_cells, truth.is_cell, truth.rois())


@pytest.fixture(scope="session")
def default_noise(tmp_path_factory: pytest.TempPathFactory, client) -> _Scored:
    return _simulate_and_detect(tmp_path_factory.mktemp("default_noise"), client, seed=0, photon_scale=1.0)


@pytest.fixture(scope="session")
def doubled_noise(tmp_path_factory: pytest.TempPathFactory, client) -> _Scored:
    """Baseline and neuropil photons halved: shot-noise variance relative to the signal doubled."""
    return _simulate_and_detect(tmp_path_factory.mktemp("doubled_noise"), client, seed=1, photon_scale=0.5)


def test_detection_and_classifier_recover_active_somata(default_noise: _Scored) -> None:
    attributes = dict(zarr.open_group(str(default_noise.context.store.path / stage_path(0, "rois")), mode="r").attrs)
    assert attributes["diameter_px"] == 12 and attributes["bin_size"] == 30 and attributes["detection_exhausted"]
    assert default_noise.f1_after >= 0.95, default_noise.summary()  # measured 0.979 (0.867 before classification)
    assert default_noise.f1_after > default_noise.f1_before + 0.05  # the classifier removes dendrites and neuropil blobs
    assert default_noise.auc >= 0.95, default_noise.summary()  # measured 0.990
    rois = default_noise.rois
    assert rois.xpix.min() >= 3 and rois.xpix.max() < 250  # inside the valid crop, in full-frame coordinates


def test_detection_and_classifier_at_doubled_noise(doubled_noise: _Scored) -> None:
    assert doubled_noise.f1_after >= 0.85, doubled_noise.summary()  # measured 0.983
    assert doubled_noise.auc >= 0.95, doubled_noise.summary()  # measured 0.981


def test_preclassification_removes_dendrites_but_keeps_somata(default_noise: _Scored, client) -> None:
    context = default_noise.context
    configuration = context.configuration.model_copy(update={"roi_detection": context.configuration.roi_detection.model_copy(update={"preclassification_threshold": 0.5})})
    run_plan(plan_detection_step(context._replace(configuration=configuration), plane=0), client)
    rois = context.store.read_rois(stage_path(0, "rois"))
    frame_shape = (256, 256)
    assert rois.count < default_noise.roi_count
    assert match_rois(rois, default_noise.true_active_cells, frame_shape=frame_shape).recall >= 0.95
    sources = match_rois(rois, default_noise.all_sources, frame_shape=frame_shape)
    assert np.count_nonzero(~default_noise.truth_is_cell[sources.true_index]) <= 5  # of ~20 dendrites detected without it


def test_minimum_area_drops_specks_smaller_than_a_quarter_cell_and_keeps_somata() -> None:
    """Three 113-px somata and two flickering 2×2 specks (hot pixels on real data): cindra keeps the
    specks as 4-px ROIs; ``minimum_area_fraction`` 0.25 of π·(d/2)² (d = 6 px detected here) drops
    exactly them and leaves the somata unchanged."""
    from cindra_dask.detection.plane import detect_plane

    rng = np.random.default_rng(8)
    frame_count, height, width = 300, 64, 64
    rows, columns = np.mgrid[:height, :width]
    frames = rng.standard_normal((frame_count, height, width)).astype(np.float32)
    for centre_y, centre_x in ((20, 20), (44, 44), (20, 44)):
        disk = ((rows - centre_y) ** 2 + (columns - centre_x) ** 2 <= 36).astype(np.float32)
        frames += np.outer((rng.random(frame_count) < 0.05) * rng.uniform(3, 6, frame_count), disk).reshape(frame_count, height, width)
    for speck_y, speck_x in ((44, 16), (8, 56)):
        frames[:, speck_y : speck_y + 2, speck_x : speck_x + 2] += ((rng.random(frame_count) < 0.05) * rng.uniform(15, 25, frame_count))[:, None, None]
    options = detection_options()
    arguments = dict(crop_origin_px=(0, 0), frame_shape=(height, width), shape_classifier=None)
    everything = detect_plane(frames.copy(), options=options._replace(minimum_area_fraction=0.0), **arguments)
    filtered = detect_plane(frames.copy(), options=options._replace(minimum_area_fraction=0.25), **arguments)
    assert everything.diameter_px == 6
    assert sorted(np.diff(everything.rois.pixel_offsets).tolist()) == [4, 4, 113, 113, 113]
    assert np.diff(filtered.rois.pixel_offsets).tolist() == [113, 113, 113]
    np.testing.assert_array_equal(filtered.centroids, everything.centroids[:3])
    np.testing.assert_array_equal(filtered.rois.ypix, everything.rois.select(np.arange(3)).ypix)
