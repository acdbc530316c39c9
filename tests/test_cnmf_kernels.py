"""CNMF kernels on tiny planted fields: recovery of footprints and activity, merging, evaluation."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from scipy.stats import norm

from cindra_dask.cnmf.evaluation import acceptance_margin, acceptance_probability, event_exceptionality_snr, half_sample_mode, peak_frames, significant_frames, spatial_consistency
from cindra_dask.cnmf.initialization import gaussian_kernel, greedy_components
from cindra_dask.cnmf.merging import merge_components, rank_one_merge
from cindra_dask.cnmf.patch import fit_patch
from cindra_dask.cnmf.updates import correlate_frames, project_frames, update_spatial, update_temporal


class PlantedField(NamedTuple):
    frames: np.ndarray  # (T, h, w) float32
    footprints: np.ndarray  # (n, h*w)
    calcium: np.ndarray  # (n, T)


def planted_field(*, seed: int, centers: list[tuple[float, float]], shape: tuple[int, int] = (48, 48), frame_count: int = 800, sigma_px: float = 2.5, noise: float = 0.3) -> PlantedField:
    """Gaussian somata with AR(1) calcium (decay 0.9 per frame, Poisson spikes at 3 % of frames), a
    rank-1 smooth background with slow fluctuations, and white noise."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    footprints = np.stack([np.exp(-((rows - y) ** 2 + (columns - x) ** 2) / (2 * sigma_px**2)).ravel() for y, x in centers])
    spikes = rng.poisson(0.03, size=(len(centers), frame_count)).astype(np.float64)
    calcium = np.zeros_like(spikes)
    for t in range(frame_count):
        calcium[:, t] = (0.9 * calcium[:, t - 1] if t else 0.0) + spikes[:, t]
    background_image = (1.0 + 0.5 * np.sin(rows / 9.0) * np.cos(columns / 13.0)).ravel()
    background_course = 2.0 + 0.2 * np.sin(np.arange(frame_count) / 60.0)
    movie = calcium.T @ footprints + np.outer(background_course, background_image) + noise * rng.standard_normal((frame_count, shape[0] * shape[1]))
    return PlantedField(movie.reshape(frame_count, *shape).astype(np.float32), footprints, calcium)


def _pearson(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.corrcoef(first, second)[0, 1])


def _best_matches(field: PlantedField, spatial: np.ndarray, temporal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each planted source, the spatial and temporal r of the component whose footprint correlates best with it."""
    spatial_r = np.array([[_pearson(truth, found) for found in spatial.reshape(len(spatial), -1)] for truth in field.footprints])
    best = spatial_r.argmax(axis=1)
    return spatial_r[np.arange(len(best)), best], np.array([_pearson(field.calcium[index], temporal[best[index]]) for index in range(len(best))])


SEPARATED = [(10.0, 10.0), (10.0, 36.0), (24.0, 24.0), (37.0, 11.0), (36.0, 37.0)]


@pytest.fixture(scope="module")
def separated_field() -> PlantedField:
    return planted_field(seed=1, centers=SEPARATED)


def test_gaussian_kernel_has_unit_norm_and_its_width() -> None:
    kernel = gaussian_kernel(sigma_px=2.0, size_px=10)
    assert kernel.shape == (11,) and float(kernel @ kernel) == pytest.approx(1.0, rel=1e-6)
    assert kernel[5 + 2] / kernel[5] == pytest.approx(np.exp(-0.5), rel=1e-6)


def test_greedy_initialisation_seeds_every_planted_soma_at_its_centre(separated_field: PlantedField) -> None:
    initial = greedy_components(separated_field.frames, component_count=5, gaussian_sigma_px=(2.5, 2.5), gaussian_size_px=(11, 11), refinement_iterations=5, background_count=1)
    found = sorted(map(tuple, initial.centers_px.tolist()))
    distances = [min(np.hypot(y - cy, x - cx) for y, x in found) for cy, cx in SEPARATED]
    assert max(distances) <= 1.0
    np.testing.assert_allclose(np.linalg.norm(initial.spatial.reshape(5, -1), axis=1), 1.0, rtol=1e-4)
    assert initial.background_spatial.shape == (1, 48, 48) and initial.background_temporal.min() >= 0


def test_patch_fit_recovers_planted_footprints_and_activity(separated_field: PlantedField) -> None:
    fit = fit_patch(separated_field.frames, component_count=5, gaussian_sigma_px=(2.5, 2.5), gaussian_size_px=(11, 11), background_count=1,
                    merge_threshold=0.8, refinement_rounds=5, support_dilation_px=3, initialization_iterations=5)
    spatial_r, temporal_r = _best_matches(separated_field, fit.spatial, fit.temporal)
    assert spatial_r.min() >= 0.9 and temporal_r.min() >= 0.9, (spatial_r, temporal_r)
    assert len(set(np.argmax([[_pearson(t, f) for f in fit.spatial.reshape(len(fit.spatial), -1)] for t in separated_field.footprints], axis=1))) == 5


def test_hals_from_chunked_statistics_equals_the_whole_movie(separated_field: PlantedField) -> None:
    frames = separated_field.frames
    initial = greedy_components(frames, component_count=5, gaussian_sigma_px=(2.5, 2.5), gaussian_size_px=(11, 11), refinement_iterations=5, background_count=1)
    spatial = np.vstack([initial.spatial.reshape(5, -1), initial.background_spatial.reshape(1, -1)]).astype(np.float64)
    temporal = np.vstack([initial.temporal, initial.background_temporal]).astype(np.float64)
    chunks = [slice(0, 333), slice(333, 700), slice(700, 800)]
    projection = np.hstack([project_frames(frames[chunk], spatial) for chunk in chunks])
    correlation = sum(correlate_frames(frames[chunk], temporal[:, chunk]) for chunk in chunks)
    whole = frames.reshape(len(frames), -1).astype(np.float64)
    np.testing.assert_allclose(projection, spatial @ whole.T, rtol=1e-9)
    np.testing.assert_allclose(correlation, temporal @ whole, rtol=1e-9)
    updated = update_temporal(data_projection=projection, spatial_gram=spatial @ spatial.T, temporal=temporal, iterations=3)
    assert updated.min() >= 0
    before = np.linalg.norm(whole - temporal.T @ spatial)
    assert np.linalg.norm(whole - updated.T @ spatial) < before
    support = np.ones_like(spatial, bool)
    reshaped = update_spatial(data_correlation=updated @ whole, temporal_gram=updated @ updated.T, spatial=spatial, support=support, iterations=3)
    assert np.linalg.norm(whole - updated.T @ reshaped) < np.linalg.norm(whole - updated.T @ spatial)


def test_spatial_update_never_leaves_the_support() -> None:
    rng = np.random.default_rng(3)
    data = rng.random((200, 30))
    temporal = rng.random((2, 200))
    support = np.zeros((2, 30), bool)
    support[0, :10], support[1, 15:] = True, True
    footprints = update_spatial(data_correlation=temporal @ data, temporal_gram=temporal @ temporal.T, spatial=rng.random((2, 30)), support=support, iterations=4)
    assert np.all(footprints[~support] == 0) and np.all(footprints >= 0) and footprints[support].max() > 0


def test_merging_joins_a_split_cell_and_keeps_two_neighbours_apart() -> None:
    rng = np.random.default_rng(4)
    field = planted_field(seed=5, centers=[(12.0, 12.0), (12.0, 17.0)], shape=(24, 30), frame_count=600)
    left, right = field.footprints
    columns = np.arange(left.size) % 30
    share = np.clip((13 - columns) / 2.0, 0.0, 1.0)  # 1 up to column 11, ½ at column 12, 0 from 13
    halves = np.stack([left * share, left * (1.0 - share)])  # a split cell: two parts overlapping on two columns, summing to it
    cell_trace = field.calcium[0] + 0.05 * rng.standard_normal(600)
    spatial = np.vstack([halves, right[None]])
    temporal = np.vstack([cell_trace, cell_trace + 0.05 * rng.standard_normal(600), field.calcium[1]])
    merged = merge_components(spatial=spatial, temporal=temporal, correlation_threshold=0.8)
    assert merged.merged_group_count == 1 and merged.spatial.shape[0] == 2
    assert merged.source_group[0] == merged.source_group[1] != merged.source_group[2]
    joined = merged.source_group[0]
    merged_spatial = merged.spatial.toarray()
    assert _pearson(merged_spatial[joined], left) >= 0.98 and _pearson(merged.temporal[joined], field.calcium[0]) >= 0.98
    assert np.linalg.norm(merged_spatial[joined]) == pytest.approx(1.0)
    np.testing.assert_array_equal(merged_spatial[merged.source_group[2]], right)
    assert abs(_pearson(field.calcium[0], field.calcium[1])) < 0.8  # the neighbours overlap but do not correlate


def test_rank_one_merge_of_a_rank_one_sum_is_exact() -> None:
    rng = np.random.default_rng(6)
    footprint, trace = rng.random(40), rng.random(90)
    parts = np.stack([footprint * (np.arange(40) < 25), footprint * (np.arange(40) >= 25)])
    merged_footprint, merged_trace = rank_one_merge(parts, np.stack([trace, trace]))
    assert np.linalg.norm(merged_footprint) == pytest.approx(1.0)
    np.testing.assert_allclose(np.outer(merged_footprint, merged_trace), np.outer(footprint, trace), rtol=1e-9)
    signed = trace - trace.mean()  # a trace with its residual share is signed, and stays so
    np.testing.assert_allclose(np.outer(*rank_one_merge(parts, np.stack([signed, signed]))), np.outer(footprint, signed), rtol=1e-9, atol=1e-12)


def test_half_sample_mode_finds_the_densest_value() -> None:
    rng = np.random.default_rng(7)
    sample = np.concatenate([rng.normal(2.0, 0.1, 2000), rng.exponential(5.0, 600) + 2.0])
    assert half_sample_mode(sample) == pytest.approx(2.0, abs=0.05)
    assert half_sample_mode(np.array([1.0, 2.0, 2.1])) == pytest.approx(2.05)


def test_event_exceptionality_snr_of_noise_and_of_a_planted_event() -> None:
    rng = np.random.default_rng(8)
    noise = rng.standard_normal((200, 2000))
    event = noise[:1].copy()
    event[0, 1000:1010] += 12.0  # ten frames at 12 σ = 4 units of 3σ
    snr_noise = event_exceptionality_snr(noise, event_frames=10)
    snr_event = event_exceptionality_snr(event, event_frames=10)[0]
    assert np.median(snr_noise) < 1.0 and snr_event == pytest.approx(-norm.ppf(norm.sf(4.0)), rel=0.15)


def test_spatial_consistency_and_peak_selection() -> None:
    trace = np.zeros(100)
    trace[[20, 50, 80]] = [3.0, 5.0, 1.0]
    assert peak_frames(trace).tolist() == [50, 20]  # 1.0 is below 30 % of the range
    spatial = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    other = np.zeros(100)
    other[50] = 4.0
    frames = significant_frames(spatial=spatial, temporal=np.vstack([trace, other]))
    assert frames[0].tolist() == list(range(17, 30))
    footprint = np.array([0.0, 1.0, 2.0, 3.0])
    assert spatial_consistency(footprint=footprint, mean_frame=np.array([9.0, 2.0, 4.0, 6.0])) == pytest.approx(1.0)
    assert spatial_consistency(footprint=np.array([0.0, 1.0, 1.0]), mean_frame=np.ones(3)) == 0.0


def test_acceptance_follows_caiman_rules_and_the_probability_is_monotone() -> None:
    rules = {"min_SNR": 2.5, "rval_thr": 0.8, "SNR_lowest": 0.5, "rval_lowest": -1.0}
    snr = np.array([3.0, 1.0, 3.0, 0.2, 2.5, 2.4999, 0.5, 4.5])
    r_values = np.array([0.1, 0.9, -0.9, 0.9, np.nan, 0.0, -1.0, 1.0])
    margin = acceptance_margin(snr, r_values, **rules)
    assert (margin >= 0).tolist() == [True, True, True, False, True, False, False, True]
    probability = acceptance_probability(margin)
    assert probability[4] == 0.5 and probability[5] < 0.5  # the boundary is exact
    assert probability[6] == pytest.approx(1 / (1 + np.exp(4.0)))  # both at their lowest bounds: margin -1
    assert probability[7] == pytest.approx(1 / (1 + np.exp(-4.0)))  # one SNR unit (min_SNR - SNR_lowest) inside
    grid_snr, grid_r = np.meshgrid(np.linspace(0, 6, 61), np.linspace(-1, 1, 41), indexing="ij")
    grid = acceptance_probability(acceptance_margin(grid_snr.ravel(), grid_r.ravel(), **rules)).reshape(grid_snr.shape)
    assert np.all(np.diff(grid, axis=0) >= 0) and np.all(np.diff(grid, axis=1) >= 0)
    assert np.array_equal(grid >= 0.5, acceptance_margin(grid_snr.ravel(), grid_r.ravel(), **rules).reshape(grid_snr.shape) >= 0)


# ------------------------------------------------------------------------------------------------
# The field graph (patches, merge, field-wide refit), driven without a cluster
# ------------------------------------------------------------------------------------------------


def _run_field(frames: np.ndarray, **overrides: object):
    import dask

    from cindra_dask.cnmf.graph import field_components
    from cindra_dask.config import SourceExtractionSettings

    plan = field_components(frames, crop_px=((0, frames.shape[1]), (0, frames.shape[2])), chunk_frames=150, settings=SourceExtractionSettings(**{"method": "cnmf", **overrides}), event_frames=10, label="test")
    request = next(plan)
    try:
        while True:
            request = plan.send(list(dask.compute(*request.graphs, scheduler="synchronous")))
    except StopIteration as stop:
        return stop.value


def _frames_as_given(frames: np.ndarray) -> np.ndarray:
    return frames


def test_every_patch_reads_its_own_frames() -> None:
    """Patch tasks get exactly the crop's patch frames, from read tasks that serve that patch alone (no chunk shared between patches)."""
    import dask

    from cindra_dask.cnmf.graph import patch_fits

    movie = np.random.default_rng(3).normal(size=(50, 40, 44)).astype(np.float32)
    crop, origins = ((2, 38), (3, 41)), [(0, 0), (0, 14), (16, 0), (16, 14)]  # 36 x 38 crop, 22-px patches (the last ones shorter)
    fits = patch_fits(movie, crop_px=crop, chunk_frames=15, origins_px=origins, patch_px=22, fit=_frames_as_given, options={})
    field = movie[:, 2:38, 3:41]
    for (y, x), patch in zip(origins, dask.compute(*fits, scheduler="synchronous")):
        np.testing.assert_array_equal(patch, field[:, y : y + 22, x : x + 22])
    reads = [{key for key in fit.__dask_graph__() if isinstance(key, tuple) and str(key[0]).startswith("cnmf-patch")} for fit in fits]
    assert all(len(keys) >= 4 for keys in reads)  # 4 chunks of 15 frames
    assert all(not reads[first] & reads[second] for first in range(4) for second in range(first + 1, 4))


def test_field_of_one_patch_equals_the_patch_kernel(separated_field: PlantedField) -> None:
    options = {"K": 5, "gSig": (2.5, 2.5), "gSiz": (11, 11), "rf": 24, "stride": 6}
    field = _run_field(separated_field.frames, **options)
    patch = fit_patch(separated_field.frames, component_count=5, gaussian_sigma_px=(2.5, 2.5), gaussian_size_px=(11, 11), background_count=1,
                      merge_threshold=0.8, refinement_rounds=5, support_dilation_px=3, initialization_iterations=5)
    assert field.patch_count == 1 and field.merged_group_count == 0
    np.testing.assert_allclose(field.spatial.toarray(), patch.spatial.reshape(5, -1), rtol=1e-5, atol=1e-7)
    for refitted, fitted in zip(field.temporal, patch.temporal):
        assert _pearson(refitted, fitted) >= 0.999


def test_overlapping_patches_give_one_component_per_planted_cell(separated_field: PlantedField) -> None:
    field = _run_field(separated_field.frames, K=3, gSig=(2.5, 2.5), gSiz=(11, 11), rf=14, stride=8)
    assert field.patch_count == 4 and field.merged_group_count >= 1  # 28-px patches at 0 and 20 on each axis
    accepted = np.flatnonzero(field.accepted)
    spatial_r, temporal_r = _best_matches(separated_field, field.spatial[accepted].toarray(), field.temporal[accepted])
    assert spatial_r.min() >= 0.9 and temporal_r.min() >= 0.9, (spatial_r, temporal_r)
    assert accepted.size == len(SEPARATED)
