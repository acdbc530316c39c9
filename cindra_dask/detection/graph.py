"""Graph builder of the detection step: registered frames → ``plane_k/detection/*`` and ``plane_k/rois/*``.

Per plane (cindra §3.3–3.4):

1. Temporal binning: the functional channel's registered frames, cropped to the registration's valid
   ranges, rechunked along time so that every chunk holds whole bins, binned chunk by chunk
   (``map_blocks``; bad frames excluded, see `cindra_dask.detection.binning`).
2. Detection images: running sums of the binned chunks (tree-reduced) give the mean image, the maximum
   projection and the local correlation image of the binned movie; the enhanced mean image follows
   from the mean image and the detected cell diameter. All are embedded into full frames.
3. Sparse detection in one task on the gathered binned movie (optionally block-PCA denoised first),
   ROI coordinates moved back to full-frame pixels, optional shape-only preclassification, ROI
   statistics and overlap removal.
4. With ``roi_detection.anatomical``: somata of the mean image (`cindra_dask.detection.anatomy`)
   merged with the activity ROIs in one more small task, statistics and overlap removal redone on the
   union; every ROI is flagged by its `DetectionSource`.

Only the images and the ROIs (small) come back to the client, which writes them.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from cindra_dask.chunking import chunk_starts, plan_frame_chunks
from cindra_dask.detection.anatomy import DetectionSource, merge_anatomical_rois, soma_candidates
from cindra_dask.detection.binning import bin_frames, bin_good_frame_counts, bin_size_frames
from cindra_dask.detection.classify import SHAPE_FEATURE_NAMES, CellClassifier, cell_probability, fit_classifier, load_training_set
from cindra_dask.detection.denoise import pca_denoise
from cindra_dask.detection.images import ImageSums, combine_image_sums, enhanced_mean_image, finalize_images, image_sums
from cindra_dask.detection.sparsery import detect_rois
from cindra_dask.detection.stats import RoiStatistics, curate_rois, roi_statistics
from cindra_dask.errors import InputError, OutputError
from cindra_dask.rois import RaggedRois
from cindra_dask.runner.plans import Compute, StepPlan
from cindra_dask.store import DETECTION, REGISTERED, REGISTRATION, ROIS, RecordingStore, frames_path, stage_path

if TYPE_CHECKING:
    from cindra_dask.runner.context import RecordingContext

IMAGE_DIMENSIONS = ("y", "x")
RAGGED_STATISTICS = ("soma_mask", "overlap_mask")
"""Statistics with one entry per ROI pixel (stored ragged, like ``ypix``), not one per ROI."""


class DetectionImages(NamedTuple):
    """Full-frame detection images, (Ly, Lx) float32 each.

    Attributes
    ----------
    mean_image : mean of the binned movie; 0 outside the valid crop.
    enhanced_mean_image : contrast-normalised mean image in [0, 1]; its interior minimum outside the crop.
    maximum_projection : maximum over time of the binned movie; 0 outside the crop.
    correlation_map : mean correlation of each pixel's binned trace with its 8 neighbours; 0 outside the crop.
    """

    mean_image: np.ndarray
    enhanced_mean_image: np.ndarray
    maximum_projection: np.ndarray
    correlation_map: np.ndarray


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


# ---------------------------------------------------------------------------------------------
# planning (pure)
# ---------------------------------------------------------------------------------------------


def bin_aligned_chunks(chunks: tuple[int, ...], *, bin_size: int) -> tuple[int, ...]:
    """Frame chunks for binning: regular chunks of a multiple of ``bin_size`` frames (≤ the largest input chunk, ≥ one bin).

    Every chunk boundary is a multiple of ``bin_size``, so no bin straddles two chunks; the last
    chunk may be shorter (its incomplete bin is the recording's last, dropped by binning anyway).
    """
    if bin_size <= 0:
        raise ValueError("bin_size must be > 0")
    frame_count = int(sum(chunks))
    chunk_frames = max(bin_size, (max(chunks) // bin_size) * bin_size)
    return plan_frame_chunks(frame_count, chunk_frames).chunks


def bins_per_chunk(good_frames: np.ndarray, chunks: tuple[int, ...], *, bin_size: int) -> tuple[int, ...]:
    """Bins each bin-aligned chunk yields (complete bins with at least one good frame)."""
    good = np.asarray(good_frames, bool)
    return tuple(int(np.count_nonzero(bin_good_frame_counts(good[start : start + length], bin_size=bin_size))) for start, length in zip(chunk_starts(chunks), chunks))


# ---------------------------------------------------------------------------------------------
# task functions (numpy in, numpy out)
# ---------------------------------------------------------------------------------------------


def _bin_block(frames: np.ndarray, good_frames: np.ndarray, *, bin_size: int) -> np.ndarray:
    """Dask block function: bins of one bin-aligned chunk; ``good_frames`` is (t, 1, 1) bool."""
    return bin_frames(frames, bin_size=bin_size, good_frames=good_frames[:, 0, 0]).frames


def _gather_bins(blocks: list[np.ndarray]) -> np.ndarray:
    """The binned movie as one new C-contiguous float32 array, used only by the detection task (which overwrites it)."""
    return np.concatenate(blocks, axis=0).astype(np.float32, copy=False)


def _shift_rois(rois: RaggedRois, *, origin_px: tuple[int, int]) -> RaggedRois:
    """The same masks moved by (+dy, +dx) = ``origin_px``."""
    return RaggedRois(rois.pixel_offsets, (rois.ypix + origin_px[0]).astype(np.int32), (rois.xpix + origin_px[1]).astype(np.int32), rois.lam)


def detect_plane(
    binned: np.ndarray,
    *,
    crop_origin_px: tuple[int, int],
    frame_shape: tuple[int, int],
    temporal_highpass_window_frames: int,
    spatial_highpass_window_px: int,
    threshold_scaling: float,
    maximum_iterations: int,
    maximum_overlap: float,
    crop_to_soma: bool,
    minimum_area_fraction: float,
    denoise_block_shape_px: tuple[int, int] | None = None,
    shape_classifier: CellClassifier | None = None,
    preclassification_threshold: float = 0.0,
) -> PlaneDetection:
    """Sparse detection, preclassification and curation of one plane's binned movie (one task).

    Parameters
    ----------
    binned : (n_bins, vh, vw) float32 C-contiguous binned movie of the valid crop; **overwritten**.
    crop_origin_px : (y, x) of the crop's top-left pixel in the full frame.
    frame_shape : (Ly, Lx) full frame, px.
    temporal_highpass_window_frames, spatial_highpass_window_px, threshold_scaling, maximum_iterations :
        see `cindra_dask.detection.sparsery.detect_rois`.
    maximum_overlap, crop_to_soma : see `cindra_dask.detection.stats.curate_rois`.
    minimum_area_fraction : ROIs of fewer pixels than this fraction of π·(diameter/2)² (diameter from
        the detected scale) are removed before curation; 0 keeps every ROI.
    denoise_block_shape_px : block-PCA denoise with these blocks first (None: no denoising).
    shape_classifier : classifier on `SHAPE_FEATURE_NAMES`; with ``preclassification_threshold`` > 0,
        ROIs whose probability is not above the threshold are removed before curation.
    preclassification_threshold : see above (0 disables).

    Returns
    -------
    PlaneDetection in full-frame coordinates.
    """
    if denoise_block_shape_px is not None:
        pca_denoise(binned, block_shape_px=denoise_block_shape_px, overwrite_frames=True)
    detection = detect_rois(
        binned,
        temporal_highpass_window_frames=temporal_highpass_window_frames,
        spatial_highpass_window_px=spatial_highpass_window_px,
        threshold_scaling=threshold_scaling,
        maximum_iterations=maximum_iterations,
        overwrite_frames=True,
    )
    rois = _shift_rois(detection.rois, origin_px=crop_origin_px)
    centroids = (detection.centroids + np.asarray(crop_origin_px, np.int32)).astype(np.int32)
    footprints = detection.footprints
    minimum_pixels = minimum_area_fraction * np.pi * (detection.diameter_px / 2.0) ** 2
    large_enough = np.flatnonzero(np.diff(rois.pixel_offsets) >= minimum_pixels)
    if large_enough.size < rois.count:
        rois, centroids, footprints = rois.select(large_enough), centroids[large_enough], footprints[large_enough]
    if preclassification_threshold > 0 and shape_classifier is not None and rois.count:
        shapes = roi_statistics(rois, frame_shape=frame_shape, diameter_px=detection.diameter_px, centroids=centroids, crop_to_soma=crop_to_soma)
        probability = cell_probability(shapes._asdict(), classifier=shape_classifier)
        kept = np.flatnonzero(probability > preclassification_threshold)
        rois, centroids, footprints = rois.select(kept), centroids[kept], footprints[kept]
    curated = curate_rois(rois, frame_shape=frame_shape, diameter_px=detection.diameter_px, centroids=centroids, crop_to_soma=crop_to_soma, maximum_overlap=maximum_overlap)
    return PlaneDetection(
        rois=curated.rois,
        centroids=curated.centroids,
        footprints=footprints[curated.kept_indices].astype(np.int8),
        statistics=curated.statistics,
        diameter_px=int(detection.diameter_px),
        binned_frame_count=int(binned.shape[0]),
        exhausted=bool(detection.exhausted),
        detection_source=np.full(curated.rois.count, DetectionSource.ACTIVITY, np.int8),
    )


def add_anatomical_rois(
    detection: PlaneDetection,
    mean_image: np.ndarray,
    *,
    valid_y_range: tuple[int, int],
    valid_x_range: tuple[int, int],
    anatomical_diameter_px: int,
    minimum_area_fraction: float,
    maximum_elongation: float,
    match_fraction: float,
    contrast_fraction: float,
    crop_to_soma: bool,
    maximum_overlap: float,
) -> PlaneDetection:
    """Merge the somata of the mean image into one plane's activity detection (one small task).

    Parameters
    ----------
    detection : `detect_plane`'s result (full-frame coordinates).
    mean_image : (Ly, Lx) float32 full-frame mean image of the binned movie.
    valid_y_range, valid_x_range : [start, stop) of the valid crop; somata are searched inside it.
    anatomical_diameter_px : expected soma diameter, px; 0 uses the activity detection's ``diameter_px``.
    minimum_area_fraction, maximum_elongation : see `cindra_dask.detection.anatomy.soma_candidates`.
    match_fraction, contrast_fraction : see `cindra_dask.detection.anatomy.merge_anatomical_rois`.
    crop_to_soma, maximum_overlap : see `cindra_dask.detection.stats.curate_rois` (rerun on the union).

    Returns
    -------
    PlaneDetection: the activity ROIs (ACTIVITY or BOTH) then the added somata (ANATOMY), curated
    together with the activity's diameter; an added soma's footprint is the pyramid scale nearest its diameter.
    """
    frame_shape = mean_image.shape
    diameter_px = anatomical_diameter_px if anatomical_diameter_px > 0 else detection.diameter_px
    crop = mean_image[slice(*valid_y_range), slice(*valid_x_range)]
    candidates = soma_candidates(crop, diameter_px=diameter_px, minimum_area_fraction=minimum_area_fraction, maximum_elongation=maximum_elongation)
    origin = (valid_y_range[0], valid_x_range[0])
    candidates = candidates._replace(rois=_shift_rois(candidates.rois, origin_px=origin), centroids=(candidates.centroids + np.asarray(origin, np.int32)).astype(np.int32))
    merged = merge_anatomical_rois(detection.rois, detection.centroids, candidates, frame_shape=frame_shape, match_fraction=match_fraction, contrast_fraction=contrast_fraction)
    soma_scale = max(0, int(round(np.log2(diameter_px / 3.0))))
    footprints = np.concatenate([detection.footprints, np.full(merged.added_indices.size, soma_scale, np.int8)])
    curated = curate_rois(merged.rois, frame_shape=frame_shape, diameter_px=detection.diameter_px, centroids=merged.centroids, crop_to_soma=crop_to_soma, maximum_overlap=maximum_overlap)
    return detection._replace(
        rois=curated.rois,
        centroids=curated.centroids,
        footprints=footprints[curated.kept_indices].astype(np.int8),
        statistics=curated.statistics,
        detection_source=merged.detection_source[curated.kept_indices],
    )


def full_frame_images(sums: ImageSums, *, diameter_px: float, valid_y_range: tuple[int, int], valid_x_range: tuple[int, int], frame_shape: tuple[int, int]) -> DetectionImages:
    """Finalise the binned movie's running sums into full-frame detection images.

    Parameters
    ----------
    sums : running sums over the binned movie of the valid crop.
    diameter_px : detected cell diameter (sets the enhanced mean's filter width).
    valid_y_range, valid_x_range : [start, stop) of the crop in the full frame.
    frame_shape : (Ly, Lx).
    """
    images = finalize_images(sums)
    enhanced = enhanced_mean_image(images.mean_image, diameter_px=diameter_px)
    crop = (slice(*valid_y_range), slice(*valid_x_range))

    def embed(image: np.ndarray, fill: float) -> np.ndarray:
        frame = np.full(frame_shape, fill, np.float32)
        frame[crop] = image
        return frame

    return DetectionImages(
        mean_image=embed(images.mean_image, 0.0),
        enhanced_mean_image=embed(enhanced, float(enhanced.min())),
        maximum_projection=embed(images.maximum_projection, 0.0),
        correlation_map=embed(images.local_correlation, 0.0),
    )


# ---------------------------------------------------------------------------------------------
# graph builders (lazy)
# ---------------------------------------------------------------------------------------------


def binned_movie(frames: Any, good_frames: np.ndarray, *, bin_size: int) -> Any:
    """Lazy temporal binning of a (T, vh, vw) Dask array.

    Chunking: ``frames`` is first rechunked to `bin_aligned_chunks` along time (whole frames per
    chunk), then one task per chunk bins it; output chunks are (bins of that chunk, vh, vw) float32,
    their lengths known in advance from ``good_frames`` (a chunk may yield 0 bins).

    Parameters
    ----------
    frames : dask.array (T, vh, vw), any real dtype.
    good_frames : (T,) bool, False for bad frames.
    bin_size : frames per bin.

    Returns
    -------
    dask.array (n_bins, vh, vw) float32, equal to ``bin_frames(frames, ...).frames`` of the whole array.
    """
    import dask.array as da

    good = np.asarray(good_frames, bool)
    if good.shape != frames.shape[:1]:
        raise ValueError(f"good_frames has shape {good.shape}, frames have {frames.shape[0]} frames")
    aligned = bin_aligned_chunks(frames.chunks[0], bin_size=bin_size)
    frames = frames.rechunk({0: aligned, 1: -1, 2: -1})
    good_blocks = da.from_array(good.reshape(-1, 1, 1), chunks=(aligned, 1, 1))
    return da.map_blocks(
        _bin_block,
        frames,
        good_blocks,
        bin_size=bin_size,
        chunks=(bins_per_chunk(good, aligned, bin_size=bin_size), frames.chunks[1], frames.chunks[2]),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )


def binned_image_sums(binned: Any) -> Any:
    """Delayed `ImageSums` of a binned movie.

    Chunking: one `image_sums` task per binned chunk, then a binary tree of `combine_image_sums`
    (depth log2 of the chunk count); each task holds one chunk or two (H, W)-sized sums.
    """
    import dask

    parts = [dask.delayed(image_sums, pure=True)(block) for block in binned.to_delayed().ravel()]
    combine = dask.delayed(combine_image_sums, pure=True)
    while len(parts) > 1:
        parts = [combine(parts[index], parts[index + 1]) if index + 1 < len(parts) else parts[index] for index in range(0, len(parts), 2)]
    return parts[0]


def detection_images(sums: Any, diameter_px: Any, *, valid_y_range: tuple[int, int], valid_x_range: tuple[int, int], frame_shape: tuple[int, int]) -> Any:
    """Delayed `DetectionImages` from delayed sums and a (delayed) diameter.

    Chunking: one small task on (H, W) images.
    """
    import dask

    return dask.delayed(full_frame_images, pure=True)(sums, diameter_px=diameter_px, valid_y_range=valid_y_range, valid_x_range=valid_x_range, frame_shape=frame_shape)


def anatomical_plane_detection(detection: Any, images: Any, **options: Any) -> Any:
    """Delayed `PlaneDetection` with the mean image's somata merged in (`add_anatomical_rois`).

    Chunking: one task on the (Ly, Lx) mean image and the plane's ROIs (small).
    """
    import dask

    return dask.delayed(add_anatomical_rois, pure=True)(detection, images.mean_image, **options)


def plane_detection(binned: Any, **options: Any) -> Any:
    """Delayed `PlaneDetection` of a binned movie.

    Chunking: one task concatenates the binned chunks into a new array (the whole binned movie,
    n_bins·vh·vw float32); the detection task then works in place on it (peak ≈ one binned movie
    plus sparse detection's maps). ``options`` are the keyword arguments of `detect_plane`.
    """
    import dask

    movie = dask.delayed(_gather_bins, pure=True)(list(binned.to_delayed().ravel()))
    return dask.delayed(detect_plane, pure=True)(movie, **options)


# ---------------------------------------------------------------------------------------------
# the step
# ---------------------------------------------------------------------------------------------


class _RegistrationOutputs(NamedTuple):
    """What detection needs from registration: good frames and the valid crop."""

    good_frames: np.ndarray
    valid_y_range: tuple[int, int]
    valid_x_range: tuple[int, int]


def _read_registration_outputs(store: RecordingStore, *, plane: int, frame_shape: tuple[int, int], user_bad_frames: np.ndarray) -> _RegistrationOutputs:
    """Bad frames (registration's plus the user's) and the valid ranges, checked against the frame."""
    group_path = stage_path(plane, REGISTRATION)
    bad = store.read(f"{group_path}/bad_frames").astype(bool)
    bad[np.asarray(user_bad_frames, np.int64)] = True
    attributes = store.group_attributes(group_path)
    ranges = []
    for name, size in (("valid_y_range", frame_shape[0]), ("valid_x_range", frame_shape[1])):
        if name not in attributes:
            raise OutputError(f"{store.path}: {group_path} has no attribute {name!r}; run registration first")
        start, stop = (int(value) for value in attributes[name])
        if not 0 <= start < stop <= size:
            raise OutputError(f"{store.path}: {group_path} attribute {name} = [{start}, {stop}) is not a non-empty range inside [0, {size}); rerun registration")
        ranges.append((start, stop))
    return _RegistrationOutputs(~bad, ranges[0], ranges[1])


def _write_outputs(store: RecordingStore, *, plane: int, images: DetectionImages, detection: PlaneDetection, attributes: dict[str, Any]) -> None:
    """Detection images, ROIs with centroids and every statistic, and the ROI group's attributes."""
    detection_group = stage_path(plane, DETECTION)
    for name, image in images._asdict().items():
        store.write_array(f"{detection_group}/{name}", image, dimension_names=IMAGE_DIMENSIONS)
    rois_group = stage_path(plane, ROIS)
    statistics = detection.statistics._asdict()
    per_roi = {name: value for name, value in statistics.items() if name not in RAGGED_STATISTICS}
    store.write_rois(rois_group, detection.rois, centroids=detection.centroids, footprint=detection.footprints, detection_source=detection.detection_source, **per_roi)
    for name in RAGGED_STATISTICS:
        store.write_array(f"{rois_group}/{name}", statistics[name])
    store.update_group_attributes(rois_group, attributes)


def plan_detection_step(context: RecordingContext, *, plane: int) -> StepPlan:
    """Plan of the detection step of one plane: binning, detection images, sparse detection, ROI statistics.

    Reads ``plane_k/registered/channel_c`` (c: the functional channel), ``plane_k/registration/bad_frames``
    (plus the user's ``bad_frames.npy``) and the registration's valid ranges; writes
    ``plane_k/detection/{mean_image, enhanced_mean_image, maximum_projection, correlation_map}`` and
    ``plane_k/rois/*`` (ragged masks, ``centroids``, ``footprint``, ``detection_source``, one (n,) array per
    statistic, ragged ``soma_mask``/``overlap_mask``; attributes ``diameter_px``, ``bin_size``, ``binned_frame_count``,
    ``functional_channel``, ``detection_exhausted``). Zero ROIs write empty arrays and warn.

    Chunking: binning follows the registered array's Zarr chunks rounded down to whole bins
    (`binned_movie`); the image sums reduce the binned chunks as a tree; detection is one task holding
    the binned movie (``maximum_binned_frames`` caps its length); anatomical detection, when on, is one
    more task on the mean image and the ROIs.
    """
    import dask.array as da

    configuration = context.configuration
    settings = configuration.roi_detection
    store = context.store
    channel = 0 if configuration.main.first_channel_functional else 1
    registered = store.array(frames_path(plane, channel, kind=REGISTERED))
    frame_count, height, width = registered.shape
    registration = _read_registration_outputs(store, plane=plane, frame_shape=(height, width), user_bad_frames=context.bad_frame_indices)
    bin_size = bin_size_frames(frame_count=frame_count, tau_s=configuration.main.tau, frame_rate_hz=context.acquisition.plane_frame_rate_hz, maximum_binned_frames=settings.maximum_binned_frames)
    (y_start, y_stop), (x_start, x_stop) = registration.valid_y_range, registration.valid_x_range
    frames = da.from_zarr(registered)[:, y_start:y_stop, x_start:x_stop]
    binned = binned_movie(frames, registration.good_frames, bin_size=bin_size)
    if binned.shape[0] == 0:
        raise InputError(
            f"{store.path}: plane {plane} has no complete temporal bin of good frames ({frame_count} frames, {int(registration.good_frames.sum())} good, bin size {bin_size}); "
            "detection needs a longer recording or fewer bad frames"
        )
    shape_classifier = None
    if settings.preclassification_threshold > 0:
        shape_classifier = fit_classifier(load_training_set(configuration.main.custom_classifier_path, feature_names=SHAPE_FEATURE_NAMES))
    detection = plane_detection(
        binned,
        crop_origin_px=(y_start, x_start),
        frame_shape=(height, width),
        temporal_highpass_window_frames=settings.temporal_highpass_window,
        spatial_highpass_window_px=settings.spatial_highpass_window,
        threshold_scaling=settings.threshold_scaling,
        maximum_iterations=settings.maximum_iterations,
        maximum_overlap=settings.maximum_overlap,
        crop_to_soma=settings.crop_to_soma,
        minimum_area_fraction=settings.minimum_area_fraction,
        denoise_block_shape_px=tuple(max(1, side // 2) for side in configuration.nonrigid_registration.block_size) if settings.denoise else None,
        shape_classifier=shape_classifier,
        preclassification_threshold=settings.preclassification_threshold,
    )
    images = detection_images(binned_image_sums(binned), detection.diameter_px, valid_y_range=registration.valid_y_range, valid_x_range=registration.valid_x_range, frame_shape=(height, width))
    if settings.anatomical:
        detection = anatomical_plane_detection(
            detection,
            images,
            valid_y_range=registration.valid_y_range,
            valid_x_range=registration.valid_x_range,
            anatomical_diameter_px=settings.anatomical_diameter_px,
            minimum_area_fraction=settings.minimum_area_fraction,
            maximum_elongation=settings.anatomical_maximum_elongation,
            match_fraction=settings.anatomical_match_fraction,
            contrast_fraction=settings.anatomical_threshold,
            crop_to_soma=settings.crop_to_soma,
            maximum_overlap=settings.maximum_overlap,
        )
    images_result, detection_result = yield Compute([images, detection], f"detection (plane {plane})")
    _write_outputs(
        store,
        plane=plane,
        images=images_result,
        detection=detection_result,
        attributes={
            "diameter_px": detection_result.diameter_px,
            "bin_size": bin_size,
            "binned_frame_count": detection_result.binned_frame_count,
            "functional_channel": channel,
            "detection_exhausted": detection_result.exhausted,
        },
    )
    if settings.anatomical and detection_result.rois.count and not np.any(detection_result.detection_source == DetectionSource.BOTH):
        warnings.warn(f"{store.path}: plane {plane}: no soma of the mean image coincides with an activity ROI, so anatomical detection has no contrast reference and added no ROIs", stacklevel=2)
    if detection_result.rois.count == 0:
        warnings.warn(f"{store.path}: plane {plane}: detection found no ROIs (no supra-threshold activity in {detection_result.binned_frame_count} bins); wrote empty ROI arrays", stacklevel=2)
