"""Tracked cells × recordings in one table: a Zarr group of traces plus a CSV of track ids.

``<output>/<dataset>_tracked.zarr`` (Zarr v3, Blosc-zstd)::

    track_id            (m,) i8     tracked cell ids (0 … m−1)
    track_confidence    (m,) f4     `cindra_dask.multirecording.tracking` confidence
    recording_count     (m,) i4     recordings in which the cell was detected and selected
    roi_index           (m, N) i8   per recording, the cell's ROI in ``combined/rois`` (−1: not detected there)
    traces/<recording>  (m, T_r) f4 the chosen trace of every tracked cell in recording r (rows = track ids)
    attrs: dataset_name, recording_names, recording_paths, trace_name

``<output>/<dataset>_tracks.csv``: one row per tracked cell — ``track_id``, ``track_confidence``,
``recording_count`` and one column per recording with its ``roi_index``.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cindra_dask.config import MultiRecordingConfiguration
from cindra_dask.errors import InputError
from cindra_dask.multirecording.graph import (
    DISCOVER,
    EXTRACT,
    RECORDING_COUNT,
    SOURCE_ROI_INDEX,
    TEMPLATE_TRACK_ID,
    TEMPLATES,
    TRACK_CONFIDENCE,
    TRACK_ID,
    phase_key,
)
from cindra_dask.runner.multi_context import recording_names
from cindra_dask.store import EXTRACTION, ROIS, RecordingStore, multi_recording_path

TRACE_NAMES = ("cell_fluorescence", "neuropil_fluorescence", "subtracted_fluorescence", "spikes")


class TrackedTracesExport(NamedTuple):
    """Where `export_tracked_traces` wrote the table.

    Attributes
    ----------
    zarr_path : the Zarr group (see the module docstring).
    csv_path : the CSV of track ids.
    track_count : m, tracked cells.
    """

    zarr_path: Path
    csv_path: Path
    track_count: int


class TrackedCells(NamedTuple):
    """The tracked cells of a dataset, one row per track id (m rows, N recordings), as `tracked_cells` reads them.

    Attributes
    ----------
    dataset_name : the tracking dataset.
    recording_names : N short names, in the configuration's order.
    recording_paths : the N recording stores.
    track_confidence : (m,) f4, `cindra_dask.multirecording.tracking` confidence.
    recording_count : (m,) i4, recordings in which the cell was detected and selected.
    roi_index : (m, N) i8, per recording, the cell's ROI in ``combined/rois`` (−1: not detected there).
    """

    dataset_name: str
    recording_names: list[str]
    recording_paths: list[Path]
    track_confidence: np.ndarray
    recording_count: np.ndarray
    roi_index: np.ndarray


def tracked_cells(configuration: MultiRecordingConfiguration) -> TrackedCells:
    """The `TrackedCells` of ``configuration``'s dataset, from every recording's ``multi_recording/<dataset>/``.

    Raises
    ------
    InputError : a recording without complete ``discover`` and ``extract``.
    """
    dataset_name = configuration.recording_io.dataset_name
    paths = [Path(path).expanduser() for path in configuration.recording_io.recording_directories]
    stores = [RecordingStore(path) for path in paths]
    root = multi_recording_path(dataset_name)
    missing = []
    for path, store in zip(paths, stores):
        for phase in (DISCOVER, EXTRACT):
            record = store.phase_record(phase_key(dataset_name, phase)) if store.exists else None
            if record is None or not record.complete:
                missing.append(f"{path}: no complete '{phase}' for dataset {dataset_name!r}; run `cindra-dask run` on the multi-recording configuration first")
    if missing:
        raise InputError(*missing)
    track_count = int(stores[0].read(f"{root}/{TEMPLATES}/{TEMPLATE_TRACK_ID}").size)
    confidence = np.zeros(track_count, np.float32)
    recording_count = np.zeros(track_count, np.int32)
    roi_index = np.full((track_count, len(stores)), -1, np.int64)
    for column, store in enumerate(stores):
        template_ids = store.read(f"{root}/{TEMPLATES}/{TEMPLATE_TRACK_ID}")
        confidence[template_ids] = store.read(f"{root}/{TEMPLATES}/{TRACK_CONFIDENCE}")
        recording_count[template_ids] = store.read(f"{root}/{TEMPLATES}/{RECORDING_COUNT}")
        track_ids = store.read(f"{root}/{ROIS}/{TRACK_ID}")
        tracked = track_ids >= 0
        roi_index[track_ids[tracked], column] = store.read(f"{root}/{ROIS}/{SOURCE_ROI_INDEX}")[tracked]
    return TrackedCells(dataset_name, recording_names(paths), paths, confidence, recording_count, roi_index)


def export_tracked_traces(configuration: MultiRecordingConfiguration, *, output_path: Path | str, trace_name: str = "subtracted_fluorescence") -> TrackedTracesExport:
    """Write every tracked cell's trace in every recording, and its ROI in each (`tracked_cells`), to one table.

    Parameters
    ----------
    configuration : the multi-recording configuration whose ``extract`` phase is complete.
    output_path : folder receiving ``<dataset>_tracked.zarr`` and ``<dataset>_tracks.csv`` (created).
    trace_name : one of ``cell_fluorescence``, ``neuropil_fluorescence``, ``subtracted_fluorescence``, ``spikes``.

    Raises
    ------
    InputError : an unknown ``trace_name``, or a recording without complete ``discover`` and ``extract``.
    """
    if trace_name not in TRACE_NAMES:
        raise InputError(f"trace_name: {trace_name!r} is not one of {', '.join(TRACE_NAMES)}")
    cells = tracked_cells(configuration)
    dataset_name, names, paths = cells.dataset_name, cells.recording_names, cells.recording_paths
    confidence, recording_count, roi_index = cells.track_confidence, cells.recording_count, cells.roi_index
    track_count = len(confidence)
    root = multi_recording_path(dataset_name)
    traces = {}
    for name, path in zip(names, paths):
        store = RecordingStore(path)
        template_ids = store.read(f"{root}/{TEMPLATES}/{TEMPLATE_TRACK_ID}")
        values = store.read(f"{root}/{EXTRACTION}/{trace_name}")
        ordered = np.empty_like(values)
        ordered[template_ids] = values
        traces[name] = ordered
    output = Path(output_path).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    zarr_path = output / f"{dataset_name}_tracked.zarr"
    shutil.rmtree(zarr_path, ignore_errors=True)  # a previous export of this dataset
    table = RecordingStore(zarr_path)
    table.write_array("track_id", np.arange(track_count, dtype=np.int64), dimension_names=("track",))
    table.write_array("track_confidence", confidence, dimension_names=("track",))
    table.write_array("recording_count", recording_count, dimension_names=("track",))
    table.write_array("roi_index", roi_index, dimension_names=("track", "recording"))
    for name, values in traces.items():
        target = table.create_array(f"traces/{name}", shape=values.shape, dtype=values.dtype, chunks=values.shape if values.size else (1, 1), dimension_names=("track", "t"))
        target[...] = values
    table.update_attributes(dataset_name=dataset_name, recording_names=names, recording_paths=[str(path) for path in paths], trace_name=trace_name)
    csv_path = output / f"{dataset_name}_tracks.csv"
    with open(csv_path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["track_id", "track_confidence", "recording_count", *names])
        for track in range(track_count):
            writer.writerow([track, f"{confidence[track]:.4f}", int(recording_count[track]), *(int(value) for value in roi_index[track])])
    return TrackedTracesExport(zarr_path, csv_path, track_count)
