"""Graph builder of the ingest phase: movie frames (TIFF pages, HDF5/NWB/Zarr frames) → ``plane_k/raw/channel_c`` Zarr arrays."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cindra_dask.config import configuration_to_yaml
from cindra_dask.io.tiff import IngestPlan, read_plane_frames
from cindra_dask.runner.plans import Compute, StepPlan
from cindra_dask.store import INPUT_FILE_KINDS, RecordingStore, frames_path, input_file_attributes

if TYPE_CHECKING:
    from cindra_dask.runner.context import RecordingContext


def _read_chunk(plan: IngestPlan, *, plane_index: int, channel: int, block_info: dict | None = None) -> np.ndarray:
    """Dask block function: decode the pages (frames) of one output chunk with the plan's reader."""
    frame_start, frame_stop = block_info[None]["array-location"][0]
    return read_plane_frames(plan, plane=plan.virtual_planes[plane_index], channel=channel, frame_start=frame_start, frame_stop=frame_stop)


def ingest_graph(plan: IngestPlan, store: RecordingStore) -> list[Any]:
    """Create the raw arrays and return one delayed write per (plane, channel).

    Chunking: one Dask task per Zarr chunk of ``plan.chunk_frames`` frames; a task decodes only
    its own pages (TIFF: O(1) each through the recorded IFD offsets; HDF5: one strided selection
    per file), so a task's memory is one chunk regardless of file sizes. Tasks never share a Zarr chunk. The plan (file list and page
    offsets) is one graph node shared by every task.

    Returns
    -------
    list of ``dask.delayed`` writes (nothing is computed here).
    """
    import dask
    import dask.array as da

    plan_node = dask.delayed(plan, pure=True)
    frame_count = plan.frames_per_plane
    writes = []
    for plane in plan.virtual_planes:
        shape = (frame_count, plane.row_stop - plane.row_start, plan.frame_width)
        time_chunks = da.core.normalize_chunks((plan.chunk_frames,), (frame_count,))[0]
        for channel in range(plan.channel_number):
            target = store.create_array(
                frames_path(plane.index, channel),
                shape=shape,
                dtype=np.dtype(plan.dtype),
                chunks=(plan.chunk_frames, shape[1], shape[2]),
                attributes={"physical_plane": plane.physical_plane, "row_start": plane.row_start, "row_stop": plane.row_stop, "y_offset": plane.y_offset, "x_offset": plane.x_offset},
            )
            frames = da.map_blocks(
                _read_chunk,
                plan_node,
                plane_index=plane.index,
                channel=channel,
                chunks=(time_chunks, (shape[1],), (shape[2],)),
                dtype=np.dtype(plan.dtype),
                meta=np.empty((0, 0, 0), dtype=np.dtype(plan.dtype)),
                name=f"ingest-plane{plane.index}-channel{channel}-{dask.base.tokenize(plan, store.path)}",
            )
            writes.append(da.store(frames, target, lock=False, compute=False))
    return writes


def input_attributes(context: RecordingContext) -> dict[str, Any]:
    """Root attributes naming the input: ``input_format`` and its files' ``<kind>_directory``,
    ``<kind>_files`` and, for array files, ``<kind>_dataset`` (kind by `INPUT_FILE_KINDS`: ``tiff``
    for TIFF and Bruker, ``hdf5`` for HDF5 and NWB, ``zarr``); the other kinds' keys are None (set
    where a store re-ingested from another kind holds them, so it lists only its current files)."""
    plan = context.plan
    kind = input_file_attributes(plan.reader.input_format)
    attributes: dict[str, Any] = {"input_format": plan.reader.input_format}
    for other in sorted(set(INPUT_FILE_KINDS.values())):
        listed = other == kind
        attributes[f"{other}_directory"] = str(context.tiff_directory) if listed else None
        attributes[f"{other}_files"] = [Path(info.path).name for info in plan.files] if listed else None
        if other != "tiff":
            attributes[f"{other}_dataset"] = plan.files[0].dataset if listed else None
    return attributes


def plan_ingest_step(context: RecordingContext, *, plane: None = None) -> StepPlan:
    """Plan of the ingest step: stale planes and ``combined/`` dropped, the root attributes describing the
    recording (acquisition and its source, configuration YAML, input files (`input_attributes`), planes, user bad frames),
    then `ingest_graph`."""
    store = context.store
    for stale in [*store.path.glob("plane_*"), store.path / "combined"]:
        if stale.exists():
            store.delete(stale.name)
    existing = store.attributes()
    inputs = {name: value for name, value in input_attributes(context).items() if value is not None or name in existing}
    record = context.acquisition_record
    store.update_attributes(
        acquisition=context.acquisition.model_dump(mode="json"),
        **({"acquisition_source": record.attributes()} if record is not None else {}),
        configuration=configuration_to_yaml(context.configuration),
        **inputs,
        frames_per_plane=context.plan.frames_per_plane,
        planes=[plane._asdict() for plane in context.plan.virtual_planes],
        bad_frame_indices=context.bad_frame_indices.tolist(),
    )
    yield Compute(ingest_graph(context.plan, store), "ingest")
