"""Plans of the multi-recording pipeline (cindra §4): ``discover`` then ``extract`` (run by `cindra_dask.runner.multi`).

``discover`` (one run over all recordings)::

    each store's combined/: detection image, ROIs, cell probabilities ──gathered──► selection (client)
    images ──► contrast normalisation (N tasks) ──► symmetric demons per pair (N(N−1)/2 tasks)
           ──► forward/backward fields per recording (N tasks) ──► selected masks → common space (N tasks)
    deformed masks ──gathered──► clustering into tracked cells, kept with a confident member (client)
    ──► templates projected back (client)
    ──► each store: multi_recording/<dataset>/{rois, deformation_forward, deformation_backward, templates}

``extract`` (per recording): the templates' masks and neuropil masks, masked traces over the
registered frame chunks of each plane, neuropil subtraction, baseline and OASIS — the
single-recording extraction graph (`cindra_dask.extraction.graph`) with overlaps always allowed and
no classification, the recording's own ``tau`` and frame rate — written to
``multi_recording/<dataset>/extraction/``.

Resume: each store keeps the records ``multi_recording/<dataset>/discover`` and ``…/extract``. The
discover hash covers ``recording_io``, ``roi_selection``, ``diffeomorphic_registration`` and
``roi_tracking`` (without the ``repeat_*`` flags) plus every recording's path and the hash of its
completed combine phase (so reprocessing a recording redoes the tracking); the extract hash chains the discover hash with
``signal_extraction`` and ``spike_deconvolution``. A phase is skipped when every store holds a
complete record with its hash. Rerunning discover drops the dataset's old results first.

Inputs, as in cindra: each recording's combined results (``combined/``, written by the combine
phase): the plane-tiled detection image, ROIs in canvas coordinates, cell probabilities, ``tau``
and ``sampling_rate``. Every recording's canvas must have the same size. Templates live on the
canvas too; each is given to the plane (tile) holding most of its back-projected pixels, cropped to
it, and extracted from that plane's registered frames (trimmed to the combined frame count).
Memory on the client: N canvas images, the N recordings' ROIs and 2·N deformation fields
(2, H, W) float32; a pair task holds two images and a few fields of one image's size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np

from cindra_dask.config import (
    DiffeomorphicRegistrationSettings,
    MultiRecordingConfiguration,
    ReferenceImageType,
    hashable_sections,
    section_hash,
)
from cindra_dask.multirecording.demons import GroupDeformation, group_deformation, normalize_contrast, register_pair
from cindra_dask.multirecording.projection import ProjectedTemplates, project_templates, select_templates, template_diameter_px, warp_rois
from cindra_dask.multirecording.select import SelectionLimits, channel_limits, confident_tracks, select_rois
from cindra_dask.multirecording.tracking import Tracking, keep_tracks, track_rois
from cindra_dask.rois import RaggedRois
from cindra_dask.runner.plans import Compute, StepPlan
from cindra_dask.store import COMBINED, DETECTION, EXTRACTION, REGISTRATION, ROIS, frames_path, multi_recording_path, stage_path

if TYPE_CHECKING:
    from cindra_dask.runner.multi_context import MultiRecordingContext, RecordingSource

DISCOVER = "discover"
EXTRACT = "extract"
UPSTREAM_STEP = "combine"
"""Single-recording phase whose complete record (and outputs under ``combined/``) discover needs."""

IMAGE_ARRAYS = {
    ReferenceImageType.MEAN: "mean_image",
    ReferenceImageType.ENHANCED_MEAN: "enhanced_mean_image",
    ReferenceImageType.MAXIMUM_PROJECTION: "maximum_projection",
}
CONTRAST_SIGMA_DIAMETERS = 0.2
"""σ of `normalize_contrast` in cell diameters (the recording's detection ``diameter_px``)."""

TEMPLATES = "templates"
DEFORMATION_FORWARD = "deformation_forward"
DEFORMATION_BACKWARD = "deformation_backward"
TRACK_ID = "track_id"
TRACK_CONFIDENCE = "track_confidence"
TEMPLATE_TRACK_ID = "template_track_id"
SOURCE_ROI_INDEX = "source_roi_index"
RECORDING_COUNT = "recording_count"


class SelectedRois(NamedTuple):
    """One recording's ROIs that take part in tracking.

    Attributes
    ----------
    rois : the selected masks in the recording's space.
    source_index : (n,) int64 index of each in ``combined/rois``.
    centroids : (n, 2) int32 (y, x) px.
    confident : (n,) bool cell probability ≥ the channel's ``probability_threshold`` (a tracked
        cell needs one confident member, `cindra_dask.multirecording.select.confident_tracks`).
    """

    rois: RaggedRois
    source_index: np.ndarray
    centroids: np.ndarray
    confident: np.ndarray


# ---------------------------------------------------------------------------------------------
# hashes
# ---------------------------------------------------------------------------------------------


def discover_hash(context: MultiRecordingContext) -> str:
    """Identity of a discover run: its sections (without ``repeat_*``) and every recording's path and upstream hash."""
    sections = hashable_sections(context.configuration, ("recording_io", "roi_selection", "diffeomorphic_registration", "roi_tracking"))
    recordings = [(str(source.store.path.resolve()), source.upstream_hash) for source in context.recordings]
    return section_hash(context.configuration, (), extra={**sections, "recordings": recordings})


def extract_hash(context: MultiRecordingContext, *, previous: str) -> str:
    """Identity of the extract phase: the discover hash chained with the extraction sections."""
    return section_hash(context.configuration, (), extra={"previous": previous, **hashable_sections(context.configuration, ("signal_extraction", "spike_deconvolution"))})


def phase_key(dataset_name: str, phase: str) -> str:
    """Record key of a multi-recording phase in each store."""
    return f"{multi_recording_path(dataset_name)}/{phase}"


def phase_outputs(dataset_name: str, phase: str) -> tuple[str, ...]:
    """The groups a multi-recording phase writes in each store (DESIGN §3): ``discover`` the selected
    ROIs, both deformation fields and the templates; ``extract`` the template traces and ``templates/skewness``."""
    from cindra_dask.extraction.graph import SKEWNESS

    root = multi_recording_path(dataset_name)
    names = {DISCOVER: (ROIS, DEFORMATION_FORWARD, DEFORMATION_BACKWARD, TEMPLATES), EXTRACT: (EXTRACTION, f"{TEMPLATES}/{SKEWNESS}")}[phase]
    return tuple(f"{root}/{name}" for name in names)


# ---------------------------------------------------------------------------------------------
# discover
# ---------------------------------------------------------------------------------------------


def read_selected_rois(source: RecordingSource, configuration: MultiRecordingConfiguration) -> SelectedRois:
    """The recording's combined ROIs that pass ``roi_selection``'s size and MROI limits, and which are confident (channel limits from its functional channel)."""
    settings = configuration.roi_selection
    limits = channel_limits(
        SelectionLimits(settings.probability_threshold, settings.maximum_size, settings.mroi_region_margin),
        channel=source.functional_channel,
        probability_threshold_channel_2=settings.probability_threshold_channel_2,
        maximum_size_channel_2_px=settings.maximum_size_channel_2,
        mroi_region_margin_channel_2_px=settings.mroi_region_margin_channel_2,
    )
    store, rois_group = source.store, f"{COMBINED}/{ROIS}"
    centroids = store.read(f"{rois_group}/centroids")
    selected = select_rois(store.read(f"{rois_group}/pixel_count"), centroids, limits=limits, region_borders_px=source.region_borders_px)
    probability = store.read(f"{COMBINED}/{EXTRACTION}/cell_classification")[selected, 1]
    return SelectedRois(store.read_rois(rois_group).select(selected), selected, centroids[selected].astype(np.int32), probability >= limits.probability_threshold)


def canvas_valid_mask(source: RecordingSource) -> np.ndarray:
    """(H, W) bool canvas pixels inside an included plane's registration valid crop (``valid_y_range``, ``valid_x_range``)."""
    valid = np.zeros(source.frame_shape, bool)
    for tile in source.tiles:
        attributes = source.store.group_attributes(stage_path(tile.plane, REGISTRATION))
        top, bottom = attributes.get("valid_y_range", (0, tile.height))
        left, right = attributes.get("valid_x_range", (0, tile.width))
        valid[tile.y_offset + int(top) : tile.y_offset + int(bottom), tile.x_offset + int(left) : tile.x_offset + int(right)] = True
    return valid


def deformation_graph(
    images: Sequence[np.ndarray],
    *,
    valid_masks: Sequence[np.ndarray],
    contrast_sigmas_px: Sequence[float],
    settings: DiffeomorphicRegistrationSettings,
) -> list[Any]:
    """Delayed `GroupDeformation` of every recording (groupwise demons as independent pair tasks).

    Parameters
    ----------
    images : N (H, W) detection images of one shape.
    valid_masks : N (H, W) bool pixels with data (`canvas_valid_mask`).
    contrast_sigmas_px : N σ of each image's `normalize_contrast`, px.
    settings : the ``diffeomorphic_registration`` section.

    Chunking: one contrast task per image (images and masks enter the graph once each), one `register_pair`
    task per unordered pair (N(N−1)/2, independent: they spread over the workers), one
    `group_deformation` task per recording gathering its N − 1 pair fields.
    """
    import dask

    masks = [dask.delayed(np.asarray(valid, bool), pure=True) for valid in valid_masks]  # one key each, fetched once per worker
    normalized = [dask.delayed(normalize_contrast, pure=True)(np.asarray(image, np.float32), sigma_px=sigma, valid=mask) for image, mask, sigma in zip(images, masks, contrast_sigmas_px)]
    options = {
        "speed_factor": settings.speed_factor,
        "final_grid_sampling_px": settings.final_grid_sampling,
        "grid_sampling_factor": settings.grid_sampling_factor,
        "scale_sampling": settings.scale_sampling,
    }
    count = len(images)
    pairs = {
        (first, second): dask.delayed(register_pair, pure=True, nout=2)(normalized[first], normalized[second], first_valid=masks[first], second_valid=masks[second], **options)
        for first in range(count)
        for second in range(first + 1, count)
    }
    groups = []
    for recording in range(count):
        to_others = [pairs[(recording, other)][0] if recording < other else pairs[(other, recording)][1] for other in range(count) if other != recording]
        groups.append(dask.delayed(group_deformation, pure=True)(to_others, recording_count=count))
    return groups


def _deformed_rois(rois: RaggedRois, group: GroupDeformation, frame_shape: tuple[int, int]) -> RaggedRois:
    """Selected masks carried into the common space with the recording's forward field."""
    return warp_rois(rois, sampling_field=group.forward, source_shape=frame_shape)


def _write_discover(
    source: RecordingSource,
    *,
    dataset_name: str,
    recording_index: int,
    selected: SelectedRois,
    group: GroupDeformation,
    tracking: Tracking,
    templates: ProjectedTemplates,
    recordings: Sequence[RecordingSource],
) -> None:
    """One store's discover outputs (DESIGN §3) and the dataset group's attributes.

    Template rows are ordered by plane (so extraction reads contiguous blocks per plane);
    ``template_track_id`` maps each row to its track.
    """
    store, root = source.store, multi_recording_path(dataset_name)
    track_ids = tracking.track_ids[recording_index]
    confidence = np.zeros(track_ids.shape, np.float32)
    confidence[track_ids >= 0] = tracking.confidence[track_ids[track_ids >= 0]]
    store.write_rois(f"{root}/{ROIS}", selected.rois, **{TRACK_ID: track_ids, TRACK_CONFIDENCE: confidence, SOURCE_ROI_INDEX: selected.source_index, "centroids": selected.centroids})
    store.write_array(f"{root}/{DEFORMATION_FORWARD}", group.forward)
    store.write_array(f"{root}/{DEFORMATION_BACKWARD}", group.backward)
    order = np.argsort(templates.tile, kind="stable")
    ordered = select_templates(templates, order)
    planes = np.array([tile.plane for tile in source.tiles], np.int32)
    store.write_rois(
        f"{root}/{TEMPLATES}",
        ordered.rois,
        **{
            TEMPLATE_TRACK_ID: order.astype(np.int64),
            TRACK_CONFIDENCE: tracking.confidence[order],
            RECORDING_COUNT: tracking.recording_count[order],
            "plane_index": planes[ordered.tile],
            "centroids": ordered.centroids,
            "radius_px": ordered.radius_px,
        },
    )
    store.update_group_attributes(
        root,
        {
            "recording_names": [recording.name for recording in recordings],
            "recording_paths": [str(recording.store.path) for recording in recordings],
            "recording_index": recording_index,
            "template_diameter_px": templates.diameter_px,
        },
    )


def plan_discover(context: MultiRecordingContext) -> StepPlan:
    """Plan of the discover phase: selection, demons, tracking, back-projection; writes every store's dataset group.

    Returns the tracking (templates in the common space). Tracked cells without a confident member
    (`confident_tracks`) and tracked cells whose template lands in no plane of some recording are
    dropped (their ROIs become untracked).
    """
    import dask

    configuration = context.configuration
    recordings = context.recordings
    frame_shape = recordings[0].frame_shape
    image_name = IMAGE_ARRAYS[configuration.diffeomorphic_registration.image_type]
    selections = [read_selected_rois(source, configuration) for source in recordings]
    images = [source.store.read(f"{COMBINED}/{DETECTION}/{image_name}") for source in recordings]
    groups = deformation_graph(
        images,
        valid_masks=[canvas_valid_mask(source) for source in recordings],
        contrast_sigmas_px=[CONTRAST_SIGMA_DIAMETERS * source.diameter_px for source in recordings],
        settings=configuration.diffeomorphic_registration,
    )
    deformed = [dask.delayed(_deformed_rois, pure=True)(selection.rois, group, frame_shape) for selection, group in zip(selections, groups)]
    results = yield Compute([*groups, *deformed], f"discover ({len(recordings)} recordings)")
    group_results, deformed_results = results[: len(recordings)], results[len(recordings) :]
    settings = configuration.roi_tracking
    tracking = track_rois(
        deformed_results,
        frame_shape=frame_shape,
        threshold=settings.threshold,
        mask_prevalence_percent=settings.mask_prevalence,
        pixel_prevalence_percent=settings.pixel_prevalence,
        step_px=settings.step_sizes[0],
        bin_margin_px=settings.bin_size,
        maximum_distance_px=settings.maximum_distance,
        minimum_size_px=settings.minimum_size,
    )
    tracking = keep_tracks(tracking, confident_tracks(tracking.track_ids, [selection.confident for selection in selections], track_count=tracking.templates.count))
    diameter_px = template_diameter_px(tracking.templates)
    projected = [
        project_templates(
            tracking.templates,
            backward_field=group.backward,
            tile_origins_px=np.array([(tile.y_offset, tile.x_offset) for tile in source.tiles]),
            tile_shapes_px=np.array([(tile.height, tile.width) for tile in source.tiles]),
            diameter_px=diameter_px,
        )
        for group, source in zip(group_results, recordings)
    ]
    visible = np.logical_and.reduce([templates.tile >= 0 for templates in projected]) if tracking.templates.count else np.zeros(0, bool)
    if not visible.all():
        tracking = keep_tracks(tracking, visible)
        projected = [select_templates(templates, np.flatnonzero(visible)) for templates in projected]
    dataset_name = configuration.recording_io.dataset_name
    for index, source in enumerate(recordings):
        source.store.delete(multi_recording_path(dataset_name))
        _write_discover(source, dataset_name=dataset_name, recording_index=index, selected=selections[index], group=group_results[index], tracking=tracking, templates=projected[index], recordings=recordings)
    return tracking


# ---------------------------------------------------------------------------------------------
# extract
# ---------------------------------------------------------------------------------------------


def recording_extraction_writes(source: RecordingSource, configuration: MultiRecordingConfiguration) -> list[tuple[Any, Any]]:
    """(dask array, Zarr target) pairs of one recording's template extraction; targets are created here.

    Reads ``multi_recording/<dataset>/templates/*`` and, per plane holding templates, that plane's
    registered frames (trimmed to the combined frame count); creates
    ``…/extraction/{cell_fluorescence, neuropil_fluorescence, subtracted_fluorescence, spikes}`` (m, T)
    f4 chunks (roi_chunk, T), ``…/extraction/neuropil_coefficient`` (m,) f4 chunks (roi_chunk,) and
    ``…/templates/skewness`` (m,). Zero templates give (0, T) arrays;
    ``extract_spikes`` False leaves the subtracted fluorescence and spikes at zero.

    Chunking: per plane as `cindra_dask.extraction.graph.masked_traces` (one task per registered
    frame chunk, rechunked once to (roi_chunk, T)); the planes' blocks are concatenated along the
    template axis (rows are ordered by plane) and rechunked to (roi_chunk, T); then
    `deconvolution_graph` (one task per ROI chunk); roi_chunk from `trace_roi_chunk`
    (``runtime.max_chunk_memory``, ``signal_extraction.batch_size``).
    """
    import dask.array as da

    from cindra_dask.extraction.graph import (
        CELL_FLUORESCENCE,
        NEUROPIL_COEFFICIENT,
        NEUROPIL_FLUORESCENCE,
        SKEWNESS,
        SPIKES,
        SUBTRACTED_FLUORESCENCE,
        TRACE_DIMENSIONS,
        TRACE_DTYPE,
        deconvolution_graph,
        extraction_masks,
        masked_traces,
        trace_roi_chunk,
    )

    store, root = source.store, multi_recording_path(configuration.recording_io.dataset_name)
    templates_group = f"{root}/{TEMPLATES}"
    templates = store.read_rois(templates_group)
    plane_index = store.read(f"{templates_group}/plane_index")
    radii = store.read(f"{templates_group}/radius_px")
    frame_count, template_count = source.frame_count, templates.count
    roi_chunk = trace_roi_chunk(frame_count=frame_count, roi_count=template_count, configuration=configuration)
    names = (CELL_FLUORESCENCE, NEUROPIL_FLUORESCENCE, SUBTRACTED_FLUORESCENCE, SPIKES)
    targets = {name: store.create_array(f"{root}/{EXTRACTION}/{name}", shape=(template_count, frame_count), dtype=TRACE_DTYPE, chunks=(roi_chunk, max(1, frame_count)), dimension_names=TRACE_DIMENSIONS) for name in names}
    skewness_target = store.create_array(f"{templates_group}/{SKEWNESS}", shape=(template_count,), dtype=TRACE_DTYPE, chunks=(max(1, template_count),))
    coefficient_target = store.create_array(f"{root}/{EXTRACTION}/{NEUROPIL_COEFFICIENT}", shape=(template_count,), dtype=TRACE_DTYPE, chunks=(roi_chunk,), dimension_names=TRACE_DIMENSIONS[:1])
    if template_count == 0 or frame_count == 0:
        return []
    overlapping = configuration.signal_extraction.model_copy(update={"allow_overlap": True})
    blocks = []
    for tile in source.tiles:
        rows = np.flatnonzero(plane_index == tile.plane)
        if rows.size == 0:
            continue
        local = templates.select(rows)
        local = local._replace(ypix=(local.ypix - tile.y_offset).astype(np.int32), xpix=(local.xpix - tile.x_offset).astype(np.int32))
        frames = da.from_zarr(store.array(frames_path(tile.plane, source.functional_channel, kind="registered")))[:frame_count]
        masks = extraction_masks(local, frame_shape=(tile.height, tile.width), roi_radii_px=radii[rows], signal_extraction=overlapping)
        blocks.append(masked_traces(frames, masks, roi_count=rows.size, roi_chunk=min(roi_chunk, rows.size), max_chunk_bytes=configuration.runtime.max_chunk_bytes))
    traces = (blocks[0] if len(blocks) == 1 else da.concatenate(blocks, axis=1)).rechunk((1, roi_chunk, frame_count))
    deconvolution = deconvolution_graph(traces[0], traces[1], spike_deconvolution=configuration.spike_deconvolution, tau_s=source.tau_s, frame_rate_hz=source.frame_rate_hz)
    writes = [(traces[0], targets[CELL_FLUORESCENCE]), (traces[1], targets[NEUROPIL_FLUORESCENCE]), (deconvolution.neuropil_coefficient, coefficient_target)]
    writes.append((deconvolution.skewness.rechunk(max(1, template_count)), skewness_target))
    if deconvolution.spikes is not None:
        writes += [(deconvolution.subtracted_fluorescence, targets[SUBTRACTED_FLUORESCENCE]), (deconvolution.spikes, targets[SPIKES])]
    return writes


def plan_extract(context: MultiRecordingContext, *, recordings: Sequence[RecordingSource]) -> StepPlan:
    """Plan of the extract phase of ``recordings``: one ``da.store`` of every recording's traces."""
    import dask.array as da
    from dask import is_dask_collection

    writes = [write for source in recordings for write in recording_extraction_writes(source, context.configuration)]
    if writes:
        sources, targets = zip(*writes)
        stored = da.store(list(sources), list(targets), lock=False, compute=False)
        yield Compute([stored] if is_dask_collection(stored) else list(stored), f"extract ({len(recordings)} recordings)")
