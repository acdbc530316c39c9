"""What the multi-recording runner establishes before anything is written: the dataset's recordings.

`preflight_multi_recording` checks the configuration and that every listed store holds complete
combined results (images, ROIs, classification, registered frames, acquisition) of one canvas
size, and is not locked; every problem is one line naming the field and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from cindra_dask.canvas import PlaneTile
from cindra_dask.config import AcquisitionParameters, MultiRecordingConfiguration, unset_fields
from cindra_dask.errors import ConfigurationError, InputError, OutputError
from cindra_dask.multirecording.graph import IMAGE_ARRAYS, UPSTREAM_STEP
from cindra_dask.multirecording.select import region_borders
from cindra_dask.store import COMBINED, DETECTION, EXTRACTION, ROIS, RecordingStore, frames_path, stage_path


class RecordingSource(NamedTuple):
    """What preflight established about one recording of a dataset.

    Attributes
    ----------
    name : short unique name (the store's name, with parent folders when needed to tell them apart).
    store : its store.
    frame_shape : (H, W) px of the combined canvas.
    frame_count : frames of the combined traces (the shortest plane's).
    tiles : the included planes' places on the canvas (`cindra_dask.canvas.PlaneTile`).
    functional_channel : 0-based channel that detection used (its ROIs are tracked).
    frame_rate_hz : per-plane sampling rate.
    tau_s : the recording's indicator decay (``main.tau``).
    diameter_px : detection's cell diameter (median over planes).
    region_borders_px : (k,) MROI region borders (empty without MROI).
    upstream_hash : hash of the recording's completed combine phase.
    """

    name: str
    store: RecordingStore
    frame_shape: tuple[int, int]
    frame_count: int
    tiles: tuple[PlaneTile, ...]
    functional_channel: int
    frame_rate_hz: float
    tau_s: float
    diameter_px: float
    region_borders_px: np.ndarray
    upstream_hash: str


class MultiRecordingContext(NamedTuple):
    """The validated configuration and its recordings (the first is the main one)."""

    configuration: MultiRecordingConfiguration
    recordings: tuple[RecordingSource, ...]


def recording_names(paths: Sequence[Path]) -> list[str]:
    """Shortest unique names: the store names (``.zarr`` dropped), with as many parent folders as needed."""
    parts = [Path(path).absolute().with_suffix("").parts for path in paths]
    for depth in range(1, max(len(part) for part in parts) + 1):
        names = ["/".join(part[-depth:]) for part in parts]
        if len(set(names)) == len(names):
            return names
    return [str(Path(path).absolute()) for path in paths]


def _inspect_recording(path: Path, *, field: str, name: str, image_name: str) -> tuple[RecordingSource | None, list[str]]:
    """One recording's source, or the problems that keep it out (each naming the field and what to do)."""
    store = RecordingStore(path)
    if not store.exists:
        return None, [f"{field}: {path} is not a cindra-dask store (no zarr.json); give a <name>.zarr folder written by `cindra-dask run`"]
    record = store.phase_record(UPSTREAM_STEP)
    if record is None or not record.complete:
        return None, [f"{field}: {path}: the recording has no complete '{UPSTREAM_STEP}' phase; finish `cindra-dask run` on it (ingest, process, combine) first"]
    combined = store.group_attributes(COMBINED)
    planes = [int(plane) for plane in combined.get("included_planes", [])]
    if not planes:
        return None, [f"{field}: {path}: no plane of the recording has detected ROIs (combined/ includes none); check its detection settings and rerun `cindra-dask run`"]
    plane_attributes = [store.group_attributes(stage_path(plane, ROIS)) for plane in planes]
    channel = int(plane_attributes[0].get("functional_channel", 0))
    required = [
        f"{COMBINED}/{DETECTION}/{image_name}",
        f"{COMBINED}/{EXTRACTION}/cell_classification",
        *(f"{COMBINED}/{ROIS}/{name}" for name in ("pixel_offsets", "pixel_count", "centroids")),
        *(frames_path(plane, channel, kind="registered") for plane in planes),
    ]
    problems = [f"{field}: {path}: array {array_path} is missing; rerun `cindra-dask run` on the recording" for array_path in required if array_path not in store]
    if "acquisition" not in store.attributes():
        problems.append(f"{field}: {path}: the store's attributes lack 'acquisition'; rerun `cindra-dask run` on the recording")
    if problems:
        return None, problems
    try:
        store.check_unlocked()
    except OutputError as error:
        return None, list(error.problems)
    acquisition = AcquisitionParameters.model_validate(store.attributes()["acquisition"])
    tiles = tuple(
        PlaneTile(plane, int(combined["plane_y_offsets"][plane]), int(combined["plane_x_offsets"][plane]), int(combined["plane_heights"][plane]), int(combined["plane_widths"][plane]))
        for plane in planes
    )
    source = RecordingSource(
        name=name,
        store=store,
        frame_shape=(int(combined["combined_height"]), int(combined["combined_width"])),
        frame_count=int(combined["frame_count"]),
        tiles=tiles,
        functional_channel=channel,
        frame_rate_hz=float(combined["sampling_rate"]),
        tau_s=float(combined["tau"]),
        diameter_px=float(np.median([float(attributes.get("diameter_px", 0.0)) for attributes in plane_attributes])),
        region_borders_px=region_borders(acquisition.roi_x_coordinates) if acquisition.is_mroi else np.zeros(0),
        upstream_hash=record.config_hash,
    )
    if source.diameter_px <= 0:
        return None, [f"{field}: {path}: the planes' ROI groups lack the detection attribute 'diameter_px'; rerun the process phase on the recording"]
    return source, []


def preflight_multi_recording(configuration: MultiRecordingConfiguration) -> MultiRecordingContext:
    """Check the configuration and every recording before anything is written.

    Raises
    ------
    ConfigurationError : missing dataset name, fewer than two or repeated recordings.
    InputError : a recording that is not a store with complete combined results, or canvases that differ in size.
    """
    recording_io = configuration.recording_io
    paths = [Path(path).expanduser() for path in recording_io.recording_directories]
    problems = unset_fields(configuration)
    resolved = [path.resolve() for path in paths]
    repeated = sorted({str(path) for path in resolved if resolved.count(path) > 1})
    if repeated:
        problems.append(f"recording_io.recording_directories: {', '.join(repeated)} listed more than once; list each recording once")
    if problems:
        raise ConfigurationError(*problems)
    image_name = IMAGE_ARRAYS[configuration.diffeomorphic_registration.image_type]
    sources: list[RecordingSource] = []
    for index, (path, name) in enumerate(zip(paths, recording_names(paths))):
        source, found = _inspect_recording(path, field=f"recording_io.recording_directories[{index}]", name=name, image_name=image_name)
        problems += found
        if source is not None:
            sources.append(source)
    if problems:
        raise InputError(*problems)
    shapes = {source.frame_shape for source in sources}
    if len(shapes) > 1:
        listing = ", ".join(f"{source.name} {source.frame_shape[0]}×{source.frame_shape[1]}" for source in sources)
        raise InputError(f"recording_io.recording_directories: the recordings' combined fields of view differ in size ({listing}); track only recordings of one field of view, frame size and plane layout")
    return MultiRecordingContext(configuration, tuple(sources))
