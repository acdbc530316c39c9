"""What a store holds, as lines for people: its lock, each step's state, hash and timing, ROIs and cells, the indicator tau, every array."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cindra_dask.errors import OutputError
from cindra_dask.runner.single import SINGLE_RECORDING_STEPS
from cindra_dask.store import EXTRACTION, ROIS, RecordingStore, array_shape, lock_is_stale, plane_indices, plane_path, stage_path


class RoiCounts(NamedTuple):
    """ROIs a plane's detection found and how many the classifier calls cells (None: not run yet)."""

    rois: int | None
    cells: int | None


def plane_roi_counts(store: RecordingStore, plane: int) -> RoiCounts:
    """`RoiCounts` of a plane from ``rois/pixel_offsets`` and ``extraction/cell_classification``."""
    offsets, classification = f"{stage_path(plane, ROIS)}/pixel_offsets", f"{stage_path(plane, EXTRACTION)}/cell_classification"
    rois = array_shape(store, offsets)[0] - 1 if offsets in store else None
    labels = store.read(classification) if classification in store else None
    cells = int(np.count_nonzero(labels[:, 0] > 0.5)) if labels is not None and labels.ndim == 2 else None
    return RoiCounts(rois, cells)


def lock_line(store: RecordingStore) -> str | None:
    """The store's lock for people: held by a live run, by a process that is gone (stale), or None."""
    holder = store.lock_holder()
    if holder is None:
        return None
    owner = f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
    if lock_is_stale(holder):
        return f"lock: STALE — held by {owner}, which is no longer running (a run that was killed); the next `cindra-dask run` replaces it, or delete {store.lock_path}"
    return f"lock: held by {owner} (a run in progress; wait for it, or delete {store.lock_path} if that run is gone)"


def indicator_tau_line(store: RecordingStore, plane: int) -> str | None:
    """The configured vs estimated indicator tau of a plane (`describe_indicator_tau`), from the
    attributes of ``plane_k/extraction/estimated_tau_s``; None when the plane has none."""
    from cindra_dask.extraction.decay import TAU_MISMATCH_FRACTION, describe_indicator_tau

    attributes = store.group_attributes(f"{plane_path(plane)}/{EXTRACTION}/estimated_tau_s")
    if "configured_tau_s" not in attributes:
        return None
    return describe_indicator_tau(
        configured_tau_s=float(attributes["configured_tau_s"]),
        estimated_tau_s=attributes.get("recording_tau_s"),
        cell_count=int(attributes.get("cell_count", 0)),
        mismatch_fraction=TAU_MISMATCH_FRACTION,
    )


def store_status(path: Path | str) -> list[str]:
    """Human-readable lines: the lock (`lock_line`), each step's state, hash and timing, each plane's ROI
    and cell counts and configured vs estimated indicator tau (`indicator_tau_line`), then every array's shape."""
    store = RecordingStore(path)
    if not store.exists:
        raise OutputError(f"{path}: not a cindra-dask store (no zarr.json)")
    lines = [f"store: {store.path}"]
    if (lock := lock_line(store)) is not None:
        lines.append(lock)
    records = store.phase_records()
    planes = [plane["index"] for plane in store.attributes().get("planes", [])]
    per_plane = [step for step in SINGLE_RECORDING_STEPS if step.per_plane]
    keys = ["ingest", *(step.key(plane) for plane in planes for step in per_plane), "combine"]
    for key in keys + sorted(set(records) - set(keys)):
        record = records.get(key)
        if record is None:
            lines.append(f"step {key:<24} not run")
        elif record.complete:
            lines.append(f"step {key:<24} complete    hash {record.config_hash}  {record.duration_s:.1f} s  finished {record.finished}")
        else:
            lines.append(f"step {key:<24} INCOMPLETE  hash {record.config_hash}  started {record.started} (interrupted or running; a rerun redoes it)")
    for plane in plane_indices(store):
        counts = plane_roi_counts(store, plane)
        if counts.rois is not None:
            lines.append(f"plane {plane}: {counts.rois} ROIs" + (f", {counts.cells} classified as cells" if counts.cells is not None else " (not classified yet)"))
        if (line := indicator_tau_line(store, plane)) is not None:
            lines.append(f"plane {plane} {line}")
    for array_path in store.array_paths():
        metadata = json.loads((store.path / array_path / "zarr.json").read_text())
        lines.append(f"  {array_path:<40} shape {tuple(metadata['shape'])}  {metadata['data_type']}  chunks {tuple(metadata['chunk_grid']['configuration']['chunk_shape'])}")
    for node_path in store.damaged_nodes():
        lines.append(f"  {node_path:<40} DAMAGED: zarr.json is not valid JSON; `cindra-dask run` with the same configuration rebuilds it")
    return lines
