"""Graph builder of the detection step: registered frames → ``plane_k/detection/*`` and ``plane_k/rois/*``.

Per plane (cindra §3.3–3.4):

1. Temporal binning: the functional channel's registered frames, cropped to the registration's valid
   ranges, rechunked along time so that every chunk holds whole bins, binned chunk by chunk
   (``map_blocks``; bad frames excluded, see `cindra_dask.detection.binning`).
2. Detection images: running sums of the binned chunks (tree-reduced) give the mean image, the maximum
   projection and the local correlation image of the binned movie; the enhanced mean image follows
   from the mean image and the detected cell diameter. All are embedded into full frames.
3. Sparse detection in one task on the gathered binned movie (optionally block-PCA denoised first),
   or with ``roi_detection.tile_size`` over overlapping spatial tiles, one task each
   (`cindra_dask.detection.tiles`); ROI coordinates moved back to full-frame pixels, optional
   shape-only preclassification, ROI statistics and overlap removal (`cindra_dask.detection.plane.detect_plane`).
4. With ``roi_detection.anatomical``: somata of the mean image (`cindra_dask.detection.anatomy`)
   merged with the activity ROIs in one more small task, statistics and overlap removal redone on the
   union; every ROI is flagged by its `DetectionSource` (`cindra_dask.detection.plane.add_anatomical_rois`).

Only the images and the ROIs (small) come back to the client, which writes them.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from cindra_dask.chunking import bin_aligned_chunks
from cindra_dask.config import roi_detection_options
from cindra_dask.detection.anatomy import DetectionSource
from cindra_dask.detection.binning import bin_chunk, bin_size_frames, bins_per_chunk, concatenate_bins
from cindra_dask.detection.classify import SHAPE_FEATURE_NAMES, CellClassifier, fit_classifier, load_training_set
from cindra_dask.detection.images import DetectionImages, combine_image_sums, full_frame_images, image_sums
from cindra_dask.detection.plane import DetectionOptions, PlaneDetection, add_anatomical_rois, detect_plane, detect_tile, finish_plane_detection, tile_scale_peaks
from cindra_dask.detection.sparsery import scale_of_peaks
from cindra_dask.detection.tiles import DetectionTile, detection_tiles, merge_tiles, tile_halo_px
from cindra_dask.errors import InputError, OutputError
from cindra_dask.runner.plans import Compute, StepPlan
from cindra_dask.store import DETECTION, REGISTERED, REGISTRATION, ROIS, RecordingStore, frames_path, stage_path

if TYPE_CHECKING:
    from cindra_dask.runner.context import RecordingContext

RAGGED_STATISTICS = ("soma_mask", "overlap_mask")
"""Statistics with one entry per ROI pixel (stored ragged, like ``ypix``), not one per ROI."""


# ---------------------------------------------------------------------------------------------
# graph builders (lazy)
# ---------------------------------------------------------------------------------------------


def binned_movie(frames: Any, good_frames: np.ndarray, *, bin_size: int) -> Any:
    """Lazy temporal binning of a (T, vh, vw) Dask array.

    Chunking: ``frames`` is first rechunked to `cindra_dask.chunking.bin_aligned_chunks` along time
    (whole frames per chunk), then one task per chunk bins it; output chunks are (bins of that chunk,
    vh, vw) float32, their lengths known in advance from ``good_frames`` (a chunk may yield 0 bins).

    Parameters
    ----------
    frames : dask.array (T, vh, vw), any real dtype.
    good_frames : (T,) bool, False for bad frames.
    bin_size : frames per bin.

    Returns
    -------
    dask.array (n_bins, vh, vw) float32, equal to `cindra_dask.detection.binning.bin_frames` of the whole array.
    """
    import dask.array as da

    good = np.asarray(good_frames, bool)
    if good.shape != frames.shape[:1]:
        raise ValueError(f"good_frames has shape {good.shape}, frames have {frames.shape[0]} frames")
    aligned = bin_aligned_chunks(frames.chunks[0], bin_size=bin_size)
    frames = frames.rechunk({0: aligned, 1: -1, 2: -1})
    good_blocks = da.from_array(good.reshape(-1, 1, 1), chunks=(aligned, 1, 1))
    return da.map_blocks(
        bin_chunk,
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


def anatomical_plane_detection(detection: Any, images: Any, *, valid_y_range: tuple[int, int], valid_x_range: tuple[int, int], options: DetectionOptions) -> Any:
    """Delayed `PlaneDetection` with the mean image's somata merged in (`add_anatomical_rois`).

    Chunking: one task on the (Ly, Lx) mean image and the plane's ROIs (small).
    """
    import dask

    return dask.delayed(add_anatomical_rois, pure=True)(detection, images.mean_image, valid_y_range=valid_y_range, valid_x_range=valid_x_range, options=options)


def _tile_movie(binned: Any, tile: DetectionTile, *, purpose: str) -> Any:
    """Delayed new (n_bins, h, w) float32 array of the binned movie's ``tile.padded`` region; ``purpose``
    keeps the copies of the two passes apart (each task overwrites its own)."""
    import dask
    from dask.base import tokenize

    y0, y1, x0, x1 = tile.padded
    blocks = list(binned[:, y0:y1, x0:x1].to_delayed().ravel())
    return dask.delayed(concatenate_bins, pure=True)(blocks, dask_key_name=f"detection-tile-bins-{purpose}-{tokenize(binned.name, tile)}")


def plane_detection(
    binned: Any, *, crop_origin_px: tuple[int, int], frame_shape: tuple[int, int], options: DetectionOptions, shape_classifier: CellClassifier | None, tile_size_px: int
) -> Any:
    """Delayed `PlaneDetection` of a binned movie: `detect_plane` on the whole field or, where the field is
    larger than ``tile_size_px`` (> 0), over tiles (`cindra_dask.detection.tiles`).

    Chunking: whole field, one task concatenates the binned chunks into a new array (the whole binned
    movie, n_bins·vh·vw float32); the detection task then works in place on it (peak ≈ one binned
    movie plus sparse detection's maps). Tiled, per tile and pass one task concatenates the tile's
    padded region of every binned chunk, one task (`tile_scale_peaks`, then `detect_tile` at the
    field's scale) works in place on it (peak ≈ one padded tile of the binned movie plus its maps);
    `scale_of_peaks`, `merge_tiles` and `finish_plane_detection` are small tasks on peaks and ROIs.
    """
    import dask

    field_shape = tuple(binned.shape[1:])
    if tile_size_px == 0 or max(field_shape) <= tile_size_px:
        movie = dask.delayed(concatenate_bins, pure=True)(list(binned.to_delayed().ravel()))
        return dask.delayed(detect_plane, pure=True)(movie, crop_origin_px=crop_origin_px, frame_shape=frame_shape, options=options, shape_classifier=shape_classifier)
    halo_px = tile_halo_px(spatial_highpass_window_px=options.spatial_highpass_window_px, residual_motion_window_px=options.residual_motion_window_px)
    tiles = detection_tiles(field_shape=field_shape, tile_size_px=tile_size_px, halo_px=halo_px)
    peaks = [dask.delayed(tile_scale_peaks, pure=True)(_tile_movie(binned, tile, purpose="scale"), region=tile.core_in_padded, options=options) for tile in tiles]
    scale = dask.delayed(scale_of_peaks, pure=True)(peaks)
    detections = [dask.delayed(detect_tile, pure=True)(_tile_movie(binned, tile, purpose="detection"), scale=scale, options=options) for tile in tiles]
    merged = dask.delayed(merge_tiles, pure=True)(tiles, detections, field_shape=field_shape)
    return dask.delayed(finish_plane_detection, pure=True)(
        merged, binned_frame_count=binned.shape[0], crop_origin_px=crop_origin_px, frame_shape=frame_shape, options=options, shape_classifier=shape_classifier
    )


# ---------------------------------------------------------------------------------------------
# the step
# ---------------------------------------------------------------------------------------------


class RegistrationOutputs(NamedTuple):
    """What detection needs from registration: good frames and the valid crop."""

    good_frames: np.ndarray
    valid_y_range: tuple[int, int]
    valid_x_range: tuple[int, int]


def read_registration_outputs(store: RecordingStore, *, plane: int, frame_shape: tuple[int, int], user_bad_frames: np.ndarray) -> RegistrationOutputs:
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
    return RegistrationOutputs(~bad, ranges[0], ranges[1])


def write_detection_outputs(store: RecordingStore, *, plane: int, images: DetectionImages, detection: PlaneDetection, attributes: dict[str, Any]) -> None:
    """Detection images, ROIs with centroids and every statistic, and the ROI group's attributes."""
    detection_group = stage_path(plane, DETECTION)
    for name, image in images._asdict().items():
        store.write_array(f"{detection_group}/{name}", image)
    rois_group = stage_path(plane, ROIS)
    statistics = detection.statistics._asdict()
    per_roi = {name: value for name, value in statistics.items() if name not in RAGGED_STATISTICS}
    store.write_rois(rois_group, detection.rois, centroids=detection.centroids, footprint=detection.footprints, detection_source=detection.detection_source, **per_roi)
    for name in RAGGED_STATISTICS:
        store.write_array(f"{rois_group}/{name}", statistics[name])
    store.update_group_attributes(rois_group, attributes)


class FunctionalCrop(NamedTuple):
    """A plane's functional channel as the source-extraction steps read it.

    Attributes
    ----------
    channel : the functional channel (0 or 1).
    frame_shape : (Ly, Lx) full frame, px.
    registration : good frames and valid crop.
    frames : (T, vh, vw) lazy registered frames of the valid crop (all frames).
    bin_size : frames per temporal bin; binned : (n_bins, vh, vw) lazy binned good frames (`binned_movie`).
    """

    channel: int
    frame_shape: tuple[int, int]
    registration: RegistrationOutputs
    frames: Any
    bin_size: int
    binned: Any


def read_functional_crop(context: RecordingContext, *, plane: int, step: str) -> FunctionalCrop:
    """The functional channel's registered frames in the valid crop, lazily, and their temporal bins; refuses a
    plane without a complete bin of good frames (``step`` names who needs it in the message)."""
    import dask.array as da

    configuration, store = context.configuration, context.store
    channel = 0 if configuration.main.first_channel_functional else 1
    registered = store.array(frames_path(plane, channel, kind=REGISTERED))
    frame_count, height, width = registered.shape
    registration = read_registration_outputs(store, plane=plane, frame_shape=(height, width), user_bad_frames=context.bad_frame_indices)
    bin_size = bin_size_frames(frame_count=frame_count, tau_s=configuration.main.tau, frame_rate_hz=context.acquisition.plane_frame_rate_hz,
                               maximum_binned_frames=configuration.roi_detection.maximum_binned_frames,
                               maximum_bin_duration_s=configuration.roi_detection.maximum_bin_duration)
    (y_start, y_stop), (x_start, x_stop) = registration.valid_y_range, registration.valid_x_range
    frames = da.from_zarr(registered)[:, y_start:y_stop, x_start:x_stop]
    binned = binned_movie(frames, registration.good_frames, bin_size=bin_size)
    if binned.shape[0] == 0:
        raise InputError(
            f"{store.path}: plane {plane} has no complete temporal bin of good frames ({frame_count} frames, {int(registration.good_frames.sum())} good, bin size {bin_size}); "
            f"{step} needs a longer recording or fewer bad frames"
        )
    return FunctionalCrop(channel, (height, width), registration, frames, bin_size, binned)


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
    the binned movie (``maximum_binned_frames`` caps its length), or two per spatial tile holding its
    padded region (`plane_detection`); anatomical detection, when on, is one more task on the mean
    image and the ROIs.
    """
    configuration = context.configuration
    settings = configuration.roi_detection
    store = context.store
    crop = read_functional_crop(context, plane=plane, step="detection")
    registration, binned, bin_size, channel = crop.registration, crop.binned, crop.bin_size, crop.channel
    (y_start, _), (x_start, _) = registration.valid_y_range, registration.valid_x_range
    height, width = crop.frame_shape
    options = roi_detection_options(configuration)
    shape_classifier = None
    if options.preclassification_threshold > 0:
        shape_classifier = fit_classifier(load_training_set(configuration.main.custom_classifier_path, feature_names=SHAPE_FEATURE_NAMES))
    detection = plane_detection(binned, crop_origin_px=(y_start, x_start), frame_shape=(height, width), options=options, shape_classifier=shape_classifier, tile_size_px=settings.tile_size)
    images = detection_images(binned_image_sums(binned), detection.diameter_px, valid_y_range=registration.valid_y_range, valid_x_range=registration.valid_x_range, frame_shape=(height, width))
    if settings.anatomical:
        detection = anatomical_plane_detection(detection, images, valid_y_range=registration.valid_y_range, valid_x_range=registration.valid_x_range, options=options)
    images_result, detection_result = yield Compute([images, detection], f"detection (plane {plane})")
    write_detection_outputs(
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
