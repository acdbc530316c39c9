"""Multi-recording kernels on small planted inputs: selection, field algebra, demons, mask warping,
tile assignment, clustering with its confidence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cindra_dask.multirecording.demons import (
    bspline_basis,
    compose_fields,
    group_deformation,
    invert_field,
    normalize_contrast,
    register_pair,
    resample_field,
    warp_image,
)
from cindra_dask.multirecording.projection import assign_to_tiles, project_templates, warp_rois
from cindra_dask.multirecording.select import SelectionLimits, channel_limits, region_borders, select_rois
from cindra_dask.multirecording.tracking import UNTRACKED, track_rois
from cindra_dask.rois import RaggedRois

SHAPE = (96, 112)
TRACKING_DEFAULTS = {"threshold": 0.75, "mask_prevalence_percent": 50.0, "pixel_prevalence_percent": 50.0, "step_px": 200, "bin_margin_px": 50, "maximum_distance_px": 20.0, "minimum_size_px": 25}


def disk(center: tuple[float, float], radius_px: float, shape: tuple[int, int] = SHAPE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ypix, xpix, lam) of a disk."""
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
    inside = (rows - center[0]) ** 2 + (columns - center[1]) ** 2 <= radius_px**2
    return rows[inside], columns[inside], np.ones(int(inside.sum()), np.float32)


def smooth_field(shape: tuple[int, int], *, amplitude_px: float, seed: int) -> np.ndarray:
    """(2, H, W) float32 smooth random displacement with a translation, largest |component| = amplitude."""
    rng = np.random.default_rng(seed)
    field = np.stack([ndimage.zoom(rng.standard_normal((3, 3)), (shape[0] / 3, shape[1] / 3), order=3, mode="nearest")[: shape[0], : shape[1]] for _ in range(2)])
    field += rng.uniform(-1, 1, (2, 1, 1))
    return (field * amplitude_px / np.abs(field).max()).astype(np.float32)


def textured_image(shape: tuple[int, int], *, seed: int) -> np.ndarray:
    """Blobs of cell size on a smooth background: something demons can lock on to."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape)
    for _ in range(shape[0] * shape[1] // 150):
        row, column = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
        image += rng.uniform(0.5, 1.5) * np.exp(-((rows - row) ** 2 + (columns - column) ** 2) / (2 * rng.uniform(2, 4) ** 2))
    return (image + ndimage.gaussian_filter(rng.standard_normal(shape), 12) * 2).astype(np.float32)


# --------------------------------------------------------------------------------------- selection


def test_selection_size_and_mroi_margin() -> None:
    pixel_count = np.array([100, 1000, 50, 1001, 80])
    centroids = np.array([[10, 10], [20, 200], [30, 30], [40, 40], [50, 131]])
    limits = SelectionLimits(probability_threshold=0.85, maximum_size_px=1000, mroi_region_margin_px=30)
    assert select_rois(pixel_count, centroids, limits=limits, region_borders_px=np.zeros(0)).tolist() == [0, 1, 2, 4]
    borders = region_borders((612.0, 100.0, 356.0))
    assert borders.tolist() == [0.0, 256.0, 512.0]
    # |x − b| > 30 for every border: x = 10 (0: too close), 200 (kept), 30 (not > 30), 131 (kept: 125 from 256)
    assert select_rois(pixel_count, centroids, limits=limits, region_borders_px=borders).tolist() == [1, 4]
    assert region_borders((5.0,)).size == 0


def test_channel_2_limits_inherit_unless_set() -> None:
    first = SelectionLimits(0.85, 1000, 30)
    assert channel_limits(first, channel=0, probability_threshold_channel_2=0.5, maximum_size_channel_2_px=None, mroi_region_margin_channel_2_px=None) == first
    second = channel_limits(first, channel=1, probability_threshold_channel_2=0.5, maximum_size_channel_2_px=None, mroi_region_margin_channel_2_px=10)
    assert second == SelectionLimits(0.5, 1000, 10)
    with pytest.raises(ValueError, match="channel"):
        channel_limits(first, channel=2, probability_threshold_channel_2=None, maximum_size_channel_2_px=None, mroi_region_margin_channel_2_px=None)


# --------------------------------------------------------------------------------------- fields


def test_bspline_basis_is_a_partition_of_unity() -> None:
    for spacing in (7.5, 16.0, 200.0):
        basis = bspline_basis(50, grid_spacing_px=spacing)
        assert basis.shape == (50, int(49 / spacing) + 4)
        np.testing.assert_allclose(basis.sum(axis=1), 1.0, atol=1e-12)


def test_field_inverse_composition_and_resampling() -> None:
    field = smooth_field(SHAPE, amplitude_px=3.0, seed=1)
    inverse = invert_field(field)
    margin = (slice(None), slice(8, -8), slice(8, -8))
    # moving by the inverse, then by the field, is the identity
    assert np.abs(compose_fields(field, inverse)[margin]).max() < 0.02
    assert np.abs(compose_fields(inverse, field)[margin]).max() < 0.02
    # warping by the field and back returns the image
    image = textured_image(SHAPE, seed=2)
    there_and_back = warp_image(warp_image(image, field, order=3), inverse, order=3)
    assert np.abs(there_and_back - image)[8:-8, 8:-8].max() < 0.05 * np.ptp(image)
    # a constant field survives resampling across subsampling factors, rescaled to the target's pixels
    constant = np.full((2, 24, 28), 1.5, np.float32)
    np.testing.assert_allclose(resample_field(constant, factor_from=4, factor_to=1, shape_to=SHAPE), 6.0, atol=1e-5)


def test_normalize_contrast_ignores_invalid_border() -> None:
    image = textured_image(SHAPE, seed=3)
    valid = np.zeros(SHAPE, bool)
    valid[6:-5, 4:-7] = True
    cropped = np.where(valid, image, 0.0)
    normalized = normalize_contrast(cropped, sigma_px=3.0, valid=valid)
    assert np.all(normalized[~valid] == 0)
    assert abs(normalized[valid].mean()) < 1e-5 and abs(normalized[valid].std() - 1) < 1e-4
    # the crop leaves no edge: inside, the result matches normalising the uncropped image away from the border
    reference = normalize_contrast(image, sigma_px=3.0)
    inner = (slice(20, -20), slice(20, -20))
    assert np.corrcoef(normalized[inner].ravel(), reference[inner].ravel())[0, 1] > 0.97


def test_register_pair_recovers_a_planted_deformation() -> None:
    """Two views of one scene, the second seen through a smooth field of up to 4 px: error < 0.1 px RMS."""
    scene = textured_image(SHAPE, seed=4)
    truth = smooth_field(SHAPE, amplitude_px=4.0, seed=5)
    # second(p) = scene(p − truth(p))-like: first(p) = second(p + u(p)) with u = the inverse of −truth
    second = warp_image(scene, -truth, order=3)
    first_to_second = invert_field(-truth)
    pair = register_pair(normalize_contrast(scene, sigma_px=3.0), normalize_contrast(second, sigma_px=3.0), speed_factor=3.0, final_grid_sampling_px=16.0, grid_sampling_factor=1.0, scale_sampling=30)
    inner = (slice(None), slice(12, -12), slice(12, -12))
    rms = float(np.sqrt(np.mean(np.sum((pair.first_to_second - first_to_second)[inner] ** 2, axis=0))))
    assert rms < 0.1, rms
    # the reverse map is its inverse
    assert np.abs(compose_fields(pair.second_to_first, pair.first_to_second)[inner]).max() < 0.1


def test_group_deformation_averages_pairwise_maps() -> None:
    shift = np.zeros((2, *SHAPE), np.float32)
    shift[0] = 3.0
    group = group_deformation([shift, 2 * shift], recording_count=3)
    np.testing.assert_allclose(group.backward[0], 3.0, atol=1e-6)
    np.testing.assert_allclose(group.forward[0], -3.0, atol=1e-4)
    with pytest.raises(ValueError, match="pairwise fields"):
        group_deformation([shift], recording_count=3)


# --------------------------------------------------------------------------------------- masks


def test_warp_rois_moves_masks_with_the_field() -> None:
    rois = RaggedRois.from_masks([disk((30, 40), 5), disk((60, 70), 4), disk((2, 2), 3)])
    identity = warp_rois(rois, sampling_field=np.zeros((2, *SHAPE), np.float32), source_shape=SHAPE)
    for index in range(rois.count):
        np.testing.assert_array_equal(np.sort(identity.roi(index)[0] * SHAPE[1] + identity.roi(index)[1]), np.sort(rois.roi(index)[0] * SHAPE[1] + rois.roi(index)[1]))
    # output pixel p samples p + (−3, +2): masks move by (+3, −2); the corner disk partly leaves the frame
    field = np.zeros((2, *SHAPE), np.float32)
    field[0], field[1] = -3.0, 2.0
    moved = warp_rois(rois, sampling_field=field, source_shape=SHAPE)
    ypix, xpix, lam = moved.roi(0)
    assert ypix.mean() == pytest.approx(33.0) and xpix.mean() == pytest.approx(38.0) and lam.size == rois.pixel_counts()[0]
    assert 0 < moved.pixel_counts()[2] < rois.pixel_counts()[2]


def test_assign_to_tiles_keeps_each_roi_in_one_plane() -> None:
    rois = RaggedRois.from_masks([disk((20, 30), 4), disk((20, 54), 6), disk((90, 100), 2)])
    assignment = assign_to_tiles(rois, tile_origins_px=np.array([[0, 0], [0, 56]]), tile_shapes_px=np.array([[64, 56], [64, 56]]))
    assert assignment.tile.tolist() == [0, 0, -1]  # the second straddles the border, most of it in tile 0
    assert assignment.rois.roi(1)[1].max() == 55 and assignment.rois.pixel_counts()[2] == 0


def test_project_templates_back_into_a_recording() -> None:
    templates = RaggedRois.from_masks([disk((30, 40), 6), disk((70, 90), 6)])
    backward = np.zeros((2, *SHAPE), np.float32)
    backward[1] = 5.0  # recording pixel r shows common point r + (0, 5): templates appear 5 px to the left
    projected = project_templates(templates, backward_field=backward, tile_origins_px=np.array([[0, 0]]), tile_shapes_px=np.array([SHAPE]), diameter_px=12)
    assert projected.tile.tolist() == [0, 0]
    assert projected.centroids.tolist() == [[30, 35], [70, 85]]
    assert np.all(projected.radius_px > 4)


# --------------------------------------------------------------------------------------- tracking


def test_tracking_links_the_same_cell_and_never_two_rois_of_one_recording() -> None:
    cells = [(20, 20), (20, 60), (60, 30), (60, 80)]
    recordings = [
        RaggedRois.from_masks([disk(cells[0], 6), disk(cells[1], 6), disk(cells[2], 6)]),
        RaggedRois.from_masks([disk((cells[0][0] + 1, cells[0][1]), 6), disk(cells[1], 6), disk(cells[3], 6), disk((cells[0][0] - 1, cells[0][1] + 1), 6)]),
        RaggedRois.from_masks([disk(cells[0], 6), disk((cells[3][0], cells[3][1] + 1), 6)]),
    ]
    tracking = track_rois(recordings, frame_shape=SHAPE, **TRACKING_DEFAULTS)
    first, second, third = tracking.track_ids
    assert first[0] == third[0] != UNTRACKED and first[1] == second[1] != UNTRACKED
    assert second[2] == third[1] != UNTRACKED
    # two ROIs of recording 2 overlap cell 0: only one of them joins its track
    assert (second[[0, 3]] == first[0]).sum() == 1
    # cell 2 appears in one recording of three (< 50 %): untracked
    assert first[2] == UNTRACKED
    assert tracking.templates.count == 3 and sorted(tracking.recording_count.tolist()) == [2, 2, 3]


def test_tracking_prevalence_and_template_pixels() -> None:
    recordings = [RaggedRois.from_masks([disk((40, 40), 6)]), RaggedRois.from_masks([disk((40, 42), 6)]), RaggedRois.from_masks([disk((40, 44), 6)])]
    tracking = track_rois(recordings, frame_shape=SHAPE, **{**TRACKING_DEFAULTS, "pixel_prevalence_percent": 100.0})
    assert tracking.templates.count == 1
    ypix, xpix, _ = tracking.templates.roi(0)
    assert xpix.min() >= 44 - 6 and xpix.max() <= 40 + 6  # only the pixels all three hold
    strict = track_rois(recordings[:1] + [RaggedRois.empty(), RaggedRois.empty()], frame_shape=SHAPE, **TRACKING_DEFAULTS)
    assert strict.templates.count == 0 and strict.track_ids[0].tolist() == [UNTRACKED]


def test_confidence_is_high_for_isolated_cells_and_low_for_contested_ones() -> None:
    isolated = [RaggedRois.from_masks([disk((40, 40), 6)]), RaggedRois.from_masks([disk((40, 41), 6)])]
    clean = track_rois(isolated, frame_shape=SHAPE, **TRACKING_DEFAULTS)
    # recording 2 also holds a rival ROI overlapping the first recording's mask almost as well as its member
    contested = [isolated[0], RaggedRois.from_masks([disk((40, 41), 6), disk((40, 38), 6)])]
    rival = track_rois(contested, frame_shape=SHAPE, **{**TRACKING_DEFAULTS, "minimum_size_px": 1})
    assert clean.confidence[0] > 0.7
    tracked = rival.track_ids[0][0]
    assert tracked != UNTRACKED and rival.confidence[tracked] < clean.confidence[0] - 0.3
    lone = track_rois([isolated[0], RaggedRois.empty()], frame_shape=SHAPE, **TRACKING_DEFAULTS)
    assert lone.templates.count == 1 and lone.confidence[0] == 0.0  # 1 of 2 recordings passes 50 %, no cross-recording evidence


def test_deformation_graph_equals_the_kernels_called_directly() -> None:
    """Graph vs kernels: three recordings, three pair tasks, each recording's fields from its two pairs."""
    import dask

    from cindra_dask.config import DiffeomorphicRegistrationSettings
    from cindra_dask.multirecording.graph import deformation_graph

    scene = textured_image((64, 72), seed=6)
    images = [warp_image(scene, smooth_field((64, 72), amplitude_px=1.5, seed=seed), order=3) for seed in (7, 8, 9)]
    valid = [np.ones((64, 72), bool)] * 3
    settings = DiffeomorphicRegistrationSettings(scale_sampling=4)
    groups = dask.compute(*deformation_graph(images, valid_masks=valid, contrast_sigmas_px=[3.0] * 3, settings=settings), scheduler="sync")
    normalized = [normalize_contrast(image, sigma_px=3.0, valid=mask) for image, mask in zip(images, valid)]
    options = {"speed_factor": settings.speed_factor, "final_grid_sampling_px": settings.final_grid_sampling, "grid_sampling_factor": settings.grid_sampling_factor, "scale_sampling": 4}
    pairs = {(first, second): register_pair(normalized[first], normalized[second], first_valid=valid[first], second_valid=valid[second], **options) for first, second in ((0, 1), (0, 2), (1, 2))}
    expected = group_deformation([pairs[(0, 1)].second_to_first, pairs[(1, 2)].first_to_second], recording_count=3)
    np.testing.assert_array_equal(groups[1].backward, expected.backward)
    np.testing.assert_array_equal(groups[1].forward, expected.forward)
