"""The combine phase: every processed plane's results in one plane-tiled view under ``combined/``.

As cindra's combination (reference §3.8): planes are placed on a canvas (a grid of full frames, or
MROI regions at their own coordinates, or a grid of MROI canvases per z-plane); detection images are
pasted into canvases; ROIs are moved to canvas coordinates with their ``plane_index``; per-ROI arrays
and traces are concatenated along the ROI axis in plane order, every plane trimmed to the shortest
plane's frame count. Planes without a complete extraction (flyback planes) keep their place on the
canvas but contribute no ROIs, traces or images.

Traces are concatenated as a Dask graph (read, trim, rechunk to ``(roi_chunk, T)``, write); images
and ROI arrays are small and handled on the client, with the canvas functions of `cindra_dask.canvas`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from cindra_dask.canvas import canvas_shape, combine_rois, paste_images, plane_tiles
from cindra_dask.extraction.graph import trace_roi_chunk
from cindra_dask.runner.plans import Compute, StepPlan
from cindra_dask.store import COMBINED, DETECTION, EXTRACTION, ROI_ARRAYS, ROIS, TRACE_DIMENSIONS, RecordingStore, stage_path

if TYPE_CHECKING:
    from cindra_dask.runner.context import RecordingContext

DETECTION_IMAGES = ("mean_image", "enhanced_mean_image", "maximum_projection", "correlation_map")
PER_PIXEL_ROI_ARRAYS = ("soma_mask", "overlap_mask")
"""ROI arrays with one entry per mask pixel (like ``ypix``), concatenated as the masks are."""
ROI_AXIS_ARRAYS = ("neuropil_coefficient", "estimated_tau_s", "cell_classification", "cell_colocalization")
"""(n,) and (n, 2) extraction arrays concatenated along the ROI axis."""


def _shared_names(store: RecordingStore, groups: Sequence[str]) -> list[str]:
    """Array names present in every one of ``groups`` (sorted)."""
    names = [{path.rsplit("/", 1)[1] for path in store.array_paths() if path.rsplit("/", 1)[0] == group} for group in groups]
    return sorted(set.intersection(*names)) if names else []


def plan_combine_step(context: RecordingContext, *, plane: None = None) -> StepPlan:
    """Plan of the combine step: writes ``combined/{detection, rois, extraction}`` and the canvas geometry.

    ``combined/detection/*`` (H, W) f4 canvases; ``combined/rois/`` ragged masks in canvas coordinates
    with ``plane_index`` (n,) i4, ``centroids`` moved to the canvas, every per-ROI array; and
    ``combined/extraction/*`` traces (N, T_min) f4 with chunks (roi_chunk, T_min) plus (N,) and (N, 2) arrays.
    Attributes of ``combined/``: ``combined_height``, ``combined_width``, ``frame_count`` (T_min),
    ``plane_frame_counts``, ``plane_y_offsets``, ``plane_x_offsets``, ``plane_heights``,
    ``plane_widths``, ``included_planes``, ``tau``, ``sampling_rate``.

    Chunking: traces are read per source chunk, trimmed, concatenated and rechunked to
    ``(roi_chunk, T_min)`` (`cindra_dask.extraction.graph.trace_roi_chunk`, as for every trace
    array) before the write; one task per output chunk.
    """
    import dask.array as da
    from cindra_dask.runner.context import processed_planes

    store, configuration = context.store, context.configuration
    attributes = store.attributes()
    planes = attributes["planes"]
    tiles = plane_tiles(planes, frame_width=context.plan.frame_width)
    shape = canvas_shape(tiles)
    included = [plane for plane in processed_planes(context) if (record := store.phase_record(f"extraction/plane_{plane}")) is not None and record.complete]
    included_tiles = [tiles[plane] for plane in included]
    if (store.path / COMBINED).exists():
        store.delete(COMBINED)
    frame_counts = [store.array(f"plane_{plane}/raw/channel_0").shape[0] for plane in range(len(planes))]
    frame_count = min(frame_counts[plane] for plane in included) if included else 0

    detection_groups = [stage_path(plane, DETECTION) for plane in included]
    for name in _shared_names(store, detection_groups):
        image = paste_images([store.read(f"{group}/{name}") for group in detection_groups], included_tiles, shape=shape)
        store.write_array(f"{COMBINED}/{DETECTION}/{name}", image)

    roi_groups = [stage_path(plane, ROIS) for plane in included]
    plane_rois = [store.read_rois(group) for group in roi_groups]
    per_roi: dict[str, np.ndarray] = {"plane_index": np.concatenate([np.full(rois.count, plane, np.int32) for rois, plane in zip(plane_rois, included)]) if included else np.zeros(0, np.int32)}
    for name in _shared_names(store, roi_groups):
        if name in ROI_ARRAYS or name in PER_PIXEL_ROI_ARRAYS:
            continue
        values = [store.read(f"{group}/{name}") for group in roi_groups]
        if name == "centroids":
            values = [value + np.array([tile.y_offset, tile.x_offset], value.dtype) for value, tile in zip(values, included_tiles)]
        per_roi[name] = np.concatenate(values)
    combined_rois = combine_rois(plane_rois, included_tiles)
    store.write_rois(f"{COMBINED}/{ROIS}", combined_rois, **per_roi)
    for name in _shared_names(store, roi_groups):
        if name in PER_PIXEL_ROI_ARRAYS:
            store.write_array(f"{COMBINED}/{ROIS}/{name}", np.concatenate([store.read(f"{group}/{name}") for group in roi_groups]))

    extraction_groups = [stage_path(plane, EXTRACTION) for plane in included]
    roi_count = combined_rois.count
    roi_chunk = trace_roi_chunk(frame_count=frame_count, roi_count=roi_count, configuration=configuration)
    writes = []
    for name in _shared_names(store, extraction_groups):
        sources = [store.array(f"{group}/{name}") for group in extraction_groups]
        if name in ROI_AXIS_ARRAYS:
            store.write_array(f"{COMBINED}/{EXTRACTION}/{name}", np.concatenate([source[...] for source in sources]))
        elif all(source.ndim == 2 and source.shape[1] == frame_counts[plane] for source, plane in zip(sources, included)):
            traces = da.concatenate([da.from_zarr(source)[:, :frame_count] for source in sources]).rechunk((roi_chunk, frame_count))
            target = store.create_array(f"{COMBINED}/{EXTRACTION}/{name}", shape=traces.shape, dtype=traces.dtype, chunks=(roi_chunk, max(frame_count, 1)), dimension_names=TRACE_DIMENSIONS)  # any trace extraction writes
            if roi_count and frame_count:
                writes.append(da.store(traces, target, lock=False, compute=False))
    yield Compute(writes, "combine")
    store.update_group_attributes(
        COMBINED,
        {
            "combined_height": shape[0],
            "combined_width": shape[1],
            "frame_count": frame_count,
            "plane_frame_counts": frame_counts,
            "plane_y_offsets": [tile.y_offset for tile in tiles],
            "plane_x_offsets": [tile.x_offset for tile in tiles],
            "plane_heights": [tile.height for tile in tiles],
            "plane_widths": [tile.width for tile in tiles],
            "included_planes": included,
            "tau": configuration.main.tau,
            "sampling_rate": context.acquisition.plane_frame_rate_hz,
        }
    )
