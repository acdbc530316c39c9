"""One plane's ROIs from its binned movie (cindra §3.3–3.4): the detection step's two task bodies.

`detect_plane`: optional block-PCA denoising, sparse detection on the valid crop, ROI coordinates
moved back to full-frame pixels, removal of ROIs smaller than a fraction of the expected cell area,
optional shape-only preclassification, ROI statistics and overlap removal. Over tiles
(`cindra_dask.detection.tiles`) the same in three bodies: `tile_scale_peaks` and `detect_tile` per
tile, `finish_plane_detection` on the merged ROIs.
`add_anatomical_rois`: somata of the mean image (`cindra_dask.detection.anatomy`) merged with the
activity ROIs, statistics and overlap removal redone on the union; every ROI flagged by its
`DetectionSource`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cindra_dask.detection.anatomy import DetectionSource, merge_anatomical_rois, soma_candidates
from cindra_dask.detection.classify import CellClassifier, cell_probability
from cindra_dask.detection.denoise import pca_denoise
from cindra_dask.detection.sparsery import ScalePeaks, SparseDetection, detect_rois, region_scale_peaks
from cindra_dask.detection.stats import RoiStatistics, curate_rois, roi_statistics
from cindra_dask.rois import RaggedRois


class DetectionOptions(NamedTuple):
    """Options of `detect_plane` and `add_anatomical_rois`: the configuration's ``roi_detection``
    (`cindra_dask.config.roi_detection_options` maps its fields to these names).

    Attributes
    ----------
    temporal_highpass_window_frames, spatial_highpass_window_px, threshold_scaling, maximum_iterations,
    residual_motion_window_px : see `cindra_dask.detection.sparsery.detect_rois`.
    maximum_overlap, crop_to_soma : see `cindra_dask.detection.stats.curate_rois`.
    minimum_area_fraction : ROIs of fewer pixels than this fraction of π·(d/2)² (d: the detected
        diameter, or the soma diameter for anatomical candidates) are removed; 0 keeps every ROI.
    denoise_block_shape_px : block-PCA denoise with these (height, width) blocks first; None: no denoising.
    preclassification_threshold : > 0 removes ROIs whose shape-only cell probability is not above it.
    anatomical_diameter_px : expected soma diameter, px; 0 uses the activity detection's diameter.
    anatomical_maximum_elongation : see `cindra_dask.detection.anatomy.soma_candidates` (``maximum_elongation``).
    anatomical_match_fraction, anatomical_contrast_fraction : see
        `cindra_dask.detection.anatomy.merge_anatomical_rois` (``match_fraction``, ``contrast_fraction``).
    """

    temporal_highpass_window_frames: int
    spatial_highpass_window_px: int
    threshold_scaling: float
    maximum_iterations: int
    residual_motion_window_px: int
    maximum_overlap: float
    crop_to_soma: bool
    minimum_area_fraction: float
    denoise_block_shape_px: tuple[int, int] | None
    preclassification_threshold: float
    anatomical_diameter_px: int
    anatomical_maximum_elongation: float
    anatomical_match_fraction: float
    anatomical_contrast_fraction: float


class PlaneDetection(NamedTuple):
    """ROIs found in one plane, in full-frame coordinates, detection order.

    Attributes
    ----------
    rois : ragged masks; ``lam`` in binned-movie intensity units.
    centroids : (n, 2) int32 (y, x) px.
    footprints : (n,) int8 pyramid scale of each ROI's seed.
    statistics : `RoiStatistics` of the survivors of overlap removal.
    diameter_px : estimated cell diameter (3·2^scale px).
    binned_frame_count : bins the detection ran on.
    exhausted : True when detection stopped below its threshold (not at the iteration limit).
    detection_source : (n,) int8 `DetectionSource` code of each ROI (all ACTIVITY without anatomical detection).
    """

    rois: RaggedRois
    centroids: np.ndarray
    footprints: np.ndarray
    statistics: RoiStatistics
    diameter_px: int
    binned_frame_count: int
    exhausted: bool
    detection_source: np.ndarray


def _shift_rois(rois: RaggedRois, *, origin_px: tuple[int, int]) -> RaggedRois:
    """The same masks moved by (+dy, +dx) = ``origin_px``."""
    return RaggedRois(rois.pixel_offsets, (rois.ypix + origin_px[0]).astype(np.int32), (rois.xpix + origin_px[1]).astype(np.int32), rois.lam)


def detect_plane(
    binned: np.ndarray,
    *,
    crop_origin_px: tuple[int, int],
    frame_shape: tuple[int, int],
    options: DetectionOptions,
    shape_classifier: CellClassifier | None,
) -> PlaneDetection:
    """Sparse detection, preclassification and curation of one plane's binned movie (one task).

    Parameters
    ----------
    binned : (n_bins, vh, vw) float32 C-contiguous binned movie of the valid crop; **overwritten**.
    crop_origin_px : (y, x) of the crop's top-left pixel in the full frame.
    frame_shape : (Ly, Lx) full frame, px.
    options : detection options (``anatomical_*`` unused here).
    shape_classifier : classifier on `cindra_dask.detection.classify.SHAPE_FEATURE_NAMES`, used when
        ``options.preclassification_threshold`` > 0 (None: no preclassification).

    Returns
    -------
    PlaneDetection in full-frame coordinates.
    """
    detection = detect_tile(binned, scale=None, options=options)
    return finish_plane_detection(detection, binned_frame_count=binned.shape[0], crop_origin_px=crop_origin_px, frame_shape=frame_shape, options=options, shape_classifier=shape_classifier)


def _denoise_in_place(binned: np.ndarray, *, options: DetectionOptions) -> None:
    """Block-PCA denoise ``binned`` in place where ``options.denoise_block_shape_px`` is set."""
    if options.denoise_block_shape_px is not None:
        pca_denoise(binned, block_shape_px=options.denoise_block_shape_px, overwrite_frames=True)


def tile_scale_peaks(binned: np.ndarray, *, region: tuple[int, int, int, int], options: DetectionOptions) -> ScalePeaks:
    """`cindra_dask.detection.sparsery.region_scale_peaks` of a (tile of a) binned movie, denoised first
    where ``options`` say (one task per tile). ``binned`` (n_bins, h, w) float32 C-contiguous is **overwritten**."""
    _denoise_in_place(binned, options=options)
    return region_scale_peaks(
        binned,
        region=region,
        temporal_highpass_window_frames=options.temporal_highpass_window_frames,
        spatial_highpass_window_px=options.spatial_highpass_window_px,
        threshold_scaling=options.threshold_scaling,
        residual_motion_window_px=options.residual_motion_window_px,
    )


def detect_tile(binned: np.ndarray, *, scale: int | None, options: DetectionOptions) -> SparseDetection:
    """Optional block-PCA denoising, then sparse detection (`detect_rois`) of a (tile of a) binned movie
    at ``scale`` (None: its own estimate). ``binned`` (n_bins, h, w) float32 C-contiguous is **overwritten**."""
    _denoise_in_place(binned, options=options)
    return detect_rois(
        binned,
        temporal_highpass_window_frames=options.temporal_highpass_window_frames,
        spatial_highpass_window_px=options.spatial_highpass_window_px,
        threshold_scaling=options.threshold_scaling,
        maximum_iterations=options.maximum_iterations,
        residual_motion_window_px=options.residual_motion_window_px,
        overwrite_frames=True,
        scale=scale,
    )


def finish_plane_detection(
    detection: SparseDetection,
    *,
    binned_frame_count: int,
    crop_origin_px: tuple[int, int],
    frame_shape: tuple[int, int],
    options: DetectionOptions,
    shape_classifier: CellClassifier | None,
) -> PlaneDetection:
    """`detect_plane` after sparse detection: ROIs of the valid crop (whole, or merged from tiles:
    `cindra_dask.detection.tiles.merge_tiles`) moved to full-frame pixels, small ones removed,
    preclassified, curated. ``binned_frame_count``: bins the detection ran on; the rest as `detect_plane`."""
    rois = _shift_rois(detection.rois, origin_px=crop_origin_px)
    centroids = (detection.centroids + np.asarray(crop_origin_px, np.int32)).astype(np.int32)
    footprints = detection.footprints
    minimum_pixels = options.minimum_area_fraction * np.pi * (detection.diameter_px / 2.0) ** 2
    large_enough = np.flatnonzero(np.diff(rois.pixel_offsets) >= minimum_pixels)
    if large_enough.size < rois.count:
        rois, centroids, footprints = rois.select(large_enough), centroids[large_enough], footprints[large_enough]
    if options.preclassification_threshold > 0 and shape_classifier is not None and rois.count:
        shapes = roi_statistics(rois, frame_shape=frame_shape, diameter_px=detection.diameter_px, centroids=centroids, crop_to_soma=options.crop_to_soma)
        probability = cell_probability(shapes._asdict(), classifier=shape_classifier)
        kept = np.flatnonzero(probability > options.preclassification_threshold)
        rois, centroids, footprints = rois.select(kept), centroids[kept], footprints[kept]
    curated = curate_rois(
        rois, frame_shape=frame_shape, diameter_px=detection.diameter_px, centroids=centroids, crop_to_soma=options.crop_to_soma, maximum_overlap=options.maximum_overlap
    )
    return PlaneDetection(
        rois=curated.rois,
        centroids=curated.centroids,
        footprints=footprints[curated.kept_indices].astype(np.int8),
        statistics=curated.statistics,
        diameter_px=int(detection.diameter_px),
        binned_frame_count=int(binned_frame_count),
        exhausted=bool(detection.exhausted),
        detection_source=np.full(curated.rois.count, DetectionSource.ACTIVITY, np.int8),
    )


def add_anatomical_rois(
    detection: PlaneDetection,
    mean_image: np.ndarray,
    *,
    valid_y_range: tuple[int, int],
    valid_x_range: tuple[int, int],
    options: DetectionOptions,
) -> PlaneDetection:
    """Merge the somata of the mean image into one plane's activity detection (one small task).

    Parameters
    ----------
    detection : `detect_plane`'s result (full-frame coordinates).
    mean_image : (Ly, Lx) float32 full-frame mean image of the binned movie.
    valid_y_range, valid_x_range : [start, stop) of the valid crop; somata are searched inside it.
    options : detection options (``anatomical_*``, ``minimum_area_fraction``; ``crop_to_soma`` and
        ``maximum_overlap`` for the curation rerun on the union).

    Returns
    -------
    PlaneDetection: the activity ROIs (ACTIVITY or BOTH) then the added somata (ANATOMY), curated
    together with the activity's diameter; an added soma's footprint is the pyramid scale nearest its diameter.
    """
    frame_shape = mean_image.shape
    diameter_px = options.anatomical_diameter_px if options.anatomical_diameter_px > 0 else detection.diameter_px
    crop = mean_image[slice(*valid_y_range), slice(*valid_x_range)]
    candidates = soma_candidates(crop, diameter_px=diameter_px, minimum_area_fraction=options.minimum_area_fraction, maximum_elongation=options.anatomical_maximum_elongation)
    origin = (valid_y_range[0], valid_x_range[0])
    candidates = candidates._replace(rois=_shift_rois(candidates.rois, origin_px=origin), centroids=(candidates.centroids + np.asarray(origin, np.int32)).astype(np.int32))
    merged = merge_anatomical_rois(
        detection.rois,
        detection.centroids,
        candidates,
        frame_shape=frame_shape,
        match_fraction=options.anatomical_match_fraction,
        contrast_fraction=options.anatomical_contrast_fraction,
    )
    soma_scale = max(0, int(round(np.log2(diameter_px / 3.0))))
    footprints = np.concatenate([detection.footprints, np.full(merged.added_indices.size, soma_scale, np.int8)])
    curated = curate_rois(
        merged.rois, frame_shape=frame_shape, diameter_px=detection.diameter_px, centroids=merged.centroids, crop_to_soma=options.crop_to_soma, maximum_overlap=options.maximum_overlap
    )
    return detection._replace(
        rois=curated.rois,
        centroids=curated.centroids,
        footprints=footprints[curated.kept_indices].astype(np.int8),
        statistics=curated.statistics,
        detection_source=merged.detection_source[curated.kept_indices],
    )
