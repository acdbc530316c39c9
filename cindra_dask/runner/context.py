"""What the runner establishes before anything is written: the checked configuration, inputs and output.

`preflight` reads the acquisition parameters (explicit, or the movie files' own metadata) and every movie file's header, plans the ingest, and checks the
output location (writable, unlocked, free space) and the worker memory against the chunk budget;
every problem is one line naming the field or file and what to do.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from cindra_dask.chunking import ingest_chunk_frames
from cindra_dask.config import ACQUISITION_FILE_NAME, AcquisitionParameters, Configuration, SingleRecordingConfiguration, load_acquisition_parameters, unset_fields
from cindra_dask.errors import CindraError, ConfigurationError, InputError, OutputError, nearest_existing_path
from cindra_dask.io.acquisition import CONFIGURATION, PARAMETERS_FILE, AcquisitionRecord, AcquisitionSource
from cindra_dask.io.inputs import inspect_inputs
from cindra_dask.io.tiff import IngestPlan, build_ingest_plan, crop_ingest_plan, find_acquisition_file
from cindra_dask.miniscope.spectral import band_problem
from cindra_dask.store import RecordingStore, store_path

BAD_FRAMES_FILE_NAME = "bad_frames.npy"
MINIMUM_FRAMES_PER_PLANE = 50
"""Fewest frames per plane the pipeline runs on (cindra's registration refuses fewer): below it, preflight refuses."""
RECOMMENDED_FRAMES_PER_PLANE = 200
"""Below this many frames per plane preflight warns (detection finds few cells)."""
TASK_MEMORY_FACTOR = 8
"""A registration task holds about this many float32 copies of its chunk (frames, FFTs, warps)."""


class RecordingContext(NamedTuple):
    """What preflight established about one recording; every phase receives it.

    Attributes
    ----------
    configuration : the validated configuration.
    acquisition : the acquisition parameters in force.
    tiff_directory : folder holding the movie files (of ``plan.reader.input_format``).
    plan : the ingest plan (files, page layout, chunking, reader).
    store : the output store (may not exist yet).
    bad_frame_indices : (k,) int64 user-marked bad frames from ``bad_frames.npy`` (may be empty).
    acquisition_record : where ``acquisition`` comes from, what the files' own metadata say and
        where they disagree (None only in contexts built by hand, e.g. in tests).
    notes : what preflight decided for the user (a setting left unset that followed the acquisition), one line each.
    """

    configuration: SingleRecordingConfiguration
    acquisition: AcquisitionParameters
    tiff_directory: Path
    plan: IngestPlan
    store: RecordingStore
    bad_frame_indices: np.ndarray
    acquisition_record: AcquisitionRecord | None = None
    notes: tuple[str, ...] = ()


def _check_output(configuration: SingleRecordingConfiguration, store: RecordingStore, *, raw_bytes: int) -> list[str]:
    from dask.utils import format_bytes

    problems = []
    existing = nearest_existing_path(store.path.parent)
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problems.append(f"file_io.output_path: {configuration.file_io.output_path} cannot be written ({existing} is not a writable directory); choose a writable output_path")
        return problems
    try:
        store.check_unlocked()
    except OutputError as error:
        problems.extend(error.problems)
    free = shutil.disk_usage(existing).free
    ingested = store.exists and (store.phase_record("ingest") or None) is not None
    if not ingested and free < raw_bytes:
        problems.append(f"file_io.output_path: {format_bytes(free)} free on {existing} but ingest needs up to {format_bytes(raw_bytes)} (uncompressed estimate); free space or choose another output_path")
    elif free < 2 * raw_bytes:
        warnings.warn(f"{existing}: {format_bytes(free)} free; the raw plus registered movies may need up to {format_bytes(2 * raw_bytes)}", stacklevel=3)
    return problems


def _check_worker_memory(configuration: Configuration) -> list[str]:
    from dask.utils import format_bytes, parse_bytes

    cluster = configuration.cluster
    if cluster.scheduler_address or cluster.jobqueue:
        return []
    import psutil

    from cindra_dask.cluster import local_worker_count

    if cluster.memory_limit_per_worker == "auto":
        limit = psutil.virtual_memory().total // local_worker_count(cluster)
    else:
        limit = parse_bytes(cluster.memory_limit_per_worker)
    need = TASK_MEMORY_FACTOR * configuration.runtime.max_chunk_bytes * cluster.threads_per_worker
    if need > limit:
        return [
            f"runtime.max_chunk_memory: tasks may need {format_bytes(need)} per worker ({TASK_MEMORY_FACTOR} × {configuration.runtime.max_chunk_memory} × {cluster.threads_per_worker} threads) "
            f"but a worker has {format_bytes(limit)}; lower runtime.max_chunk_memory or cluster.threads_per_worker, or raise cluster.memory_limit_per_worker"
        ]
    return []


def _read_bad_frames(path: Path, *, frame_count: int) -> np.ndarray:
    try:
        indices = np.load(path, allow_pickle=False)
    except Exception as error:
        raise InputError(f"{path}: cannot be read as a .npy array of frame indices ({error.__class__.__name__}); fix or remove it") from error
    indices = np.asarray(indices)
    if indices.dtype == bool:
        indices = np.flatnonzero(indices)
    if indices.ndim != 1 or indices.dtype.kind not in "iu":
        raise InputError(f"{path}: expected a 1-D integer array of frame indices (or a boolean mask), got {indices.dtype} with shape {indices.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= frame_count):
        raise InputError(f"{path}: frame indices must lie in [0, {frame_count}); found {indices.min()}..{indices.max()}")
    return indices.astype(np.int64)


def _explicit_acquisition(configuration: SingleRecordingConfiguration, data_path: Path) -> tuple[AcquisitionSource | None, Path]:
    """The configuration's acquisition section or ``cindra_parameters.json`` (None: neither), and the folder of the movie files."""
    if configuration.acquisition is not None:
        return AcquisitionSource(CONFIGURATION, None, configuration.acquisition, {}, ""), data_path
    parameters_file = find_acquisition_file(data_path)
    if parameters_file is None:
        return None, data_path
    return AcquisitionSource(PARAMETERS_FILE, parameters_file, load_acquisition_parameters(parameters_file), {}, ""), parameters_file.parent


def preflight(configuration: SingleRecordingConfiguration, *, phases: Sequence[str] | None = None) -> RecordingContext:
    """Check configuration, inputs and output before anything is written.

    Raises a :class:`CindraError` listing every problem found (one line each). ``phases`` are the
    phases about to run (None: all): fewer than `MINIMUM_FRAMES_PER_PLANE` frames per plane are
    refused unless only ``ingest`` runs (converting the movie files works on any length).
    """
    file_io = configuration.file_io
    problems = unset_fields(configuration)
    if problems:
        raise ConfigurationError(*problems)
    data_path = Path(file_io.data_path).expanduser()
    if not data_path.is_dir():
        raise InputError(f"file_io.data_path: {data_path} is not an existing directory; point it at the folder holding the movie files (TIFF or HDF5)")
    explicit, tiff_directory = _explicit_acquisition(configuration, data_path)
    if configuration.acquisition is not None:
        _warn_ignored_acquisition_files(configuration.acquisition, data_path)
    inputs = inspect_inputs(
        tiff_directory,
        input_format=file_io.input_format,
        hdf5_dataset=file_io.hdf5_dataset,
        nwb_series=file_io.nwb_series,
        zarr_array=file_io.zarr_array,
        ignored_file_names=file_io.ignored_file_names,
        explicit=explicit,
    )
    if inputs.problems:
        raise InputError(*inputs.problems)
    record = inputs.acquisition
    acquisition, source = record.parameters, record.used.describe()
    configuration, notes, channel_problems = _resolve_channels(configuration, acquisition, source=source)
    problems.extend(channel_problems)
    for plane in configuration.main.ignored_flyback_planes:
        if not 0 <= plane < acquisition.virtual_plane_count:
            problems.append(f"main.ignored_flyback_planes: plane {plane} does not exist (planes 0..{acquisition.virtual_plane_count - 1})")
    miniscope = configuration.miniscope_analysis
    band = band_problem(filter_cut_hz=tuple(miniscope.filter_cut), frame_rate_hz=acquisition.plane_frame_rate_hz) if miniscope.enabled and miniscope.filter_miniscope_data else None
    if band is not None:
        problems.append(f"miniscope_analysis.filter_cut: {band}; lower it or set miniscope_analysis.filter_miniscope_data: false")
    if problems:
        raise InputError(*problems)
    height, width = inputs.files[0].page_shape
    chunk_frames = ingest_chunk_frames(frame_height=height, frame_width=width, max_chunk_bytes=configuration.runtime.max_chunk_bytes, batch_size=configuration.registration.batch_size)
    plan = build_ingest_plan(inputs.files, acquisition, chunk_frames=chunk_frames, reader=inputs.reader, source=source)
    if file_io.crop_coords is not None:
        plan = crop_ingest_plan(plan, crop_coords=file_io.crop_coords)
    recording_name = file_io.recording_name or tiff_directory.name
    store = RecordingStore(store_path(Path(file_io.output_path).expanduser(), recording_name))
    raw_bytes = plan.frames_per_plane * plan.channel_number * sum((plane.row_stop - plane.row_start) * plan.frame_width for plane in plan.virtual_planes) * np.dtype(plan.dtype).itemsize
    problems.extend(_check_output(configuration, store, raw_bytes=raw_bytes))
    problems.extend(_check_worker_memory(configuration))
    bad_frames_path = data_path / BAD_FRAMES_FILE_NAME
    bad_frame_indices = np.zeros(0, np.int64)
    if bad_frames_path.exists():
        try:
            bad_frame_indices = _read_bad_frames(bad_frames_path, frame_count=plan.frames_per_plane)
        except InputError as error:
            problems.extend(error.problems)
    processing = phases is None or any(phase != "ingest" for phase in phases)
    if processing and plan.frames_per_plane < MINIMUM_FRAMES_PER_PLANE:
        problems.append(
            f"{tiff_directory}: {plan.frames_per_plane} frame{'s' if plan.frames_per_plane != 1 else ''} per plane "
            f"({int(plan.file_first_page[-1])} {plan.reader.label} {plan.reader.unit} / {plan.plane_number} plane{'s' if plan.plane_number != 1 else ''} / {plan.channel_number} channel{'s' if plan.channel_number != 1 else ''}); "
            f"registration and detection need at least {MINIMUM_FRAMES_PER_PLANE} (200+ recommended): record longer or add the missing {plan.reader.label} files"
        )
    if problems:
        raise CindraError(*problems)
    if store.path.resolve().is_relative_to(data_path.resolve()):
        warnings.warn(f"file_io.output_path: the store {store.path} is inside the data folder {data_path}; results mixed with raw data are easy to delete or copy by mistake, consider an output_path outside it", stacklevel=2)
    if processing and plan.frames_per_plane < RECOMMENDED_FRAMES_PER_PLANE:
        warnings.warn(f"{tiff_directory}: only {plan.frames_per_plane} frames per plane; detection finds few cells in fewer than {RECOMMENDED_FRAMES_PER_PLANE}", stacklevel=2)
    for disagreement in record.disagreements:
        warnings.warn(disagreement, stacklevel=2)
    return RecordingContext(configuration, acquisition, tiff_directory, plan, store, bad_frame_indices, record, notes)


def _resolve_channels(configuration: SingleRecordingConfiguration, acquisition: AcquisitionParameters, *, source: str) -> tuple[SingleRecordingConfiguration, tuple[str, ...], list[str]]:
    """The configuration with ``main.two_channels`` following the acquisition where it is not set
    (None), the note saying so for two channels, and the problems of settings that contradict it."""
    main, two_channels = configuration.main, acquisition.channel_number == 2
    notes: tuple[str, ...] = ()
    problems = []
    if main.two_channels is None:
        configuration = configuration.model_copy(update={"main": main.model_copy(update={"two_channels": two_channels})})
        if two_channels:
            notes = (
                f"main.two_channels: not set, so it follows {source} (channel_number 2): both channels are ingested and registered, "
                f"the first is functional{' and so is the second' if main.second_channel_functional else ', the second structural (main.second_channel_functional: true if it carries activity too)'}",
            )
    elif main.two_channels != two_channels:
        problems.append(f"main.two_channels is {str(main.two_channels).lower()} but {source} has channel_number {acquisition.channel_number}; remove the line to follow it, or make them agree")
    if main.second_channel_functional and not two_channels:
        problems.append(f"main.second_channel_functional is true but {source} has channel_number 1; set it to false or give the second channel")
    return configuration, notes, problems


def _warn_ignored_acquisition_files(acquisition: AcquisitionParameters, data_path: Path) -> None:
    """Warn about each ``cindra_parameters.json`` under ``data_path`` that the configuration's acquisition section overrides with other values."""
    import json

    given = acquisition.model_dump(mode="json")
    for path in sorted(data_path.rglob(ACQUISITION_FILE_NAME)):
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            recorded = None
        if not isinstance(recorded, dict):
            warnings.warn(f"acquisition: the configuration's acquisition section is used; {path} (unreadable) is ignored", stacklevel=3)
            continue
        differences = [f"{name} {given[name]!r} instead of {recorded[name]!r}" for name in given if name in recorded and recorded[name] != given[name]]
        if differences:
            warnings.warn(f"acquisition: the configuration's acquisition section replaces {path}: {'; '.join(differences)}", stacklevel=3)


def processed_planes(context: RecordingContext) -> list[int]:
    """Virtual planes that are registered and processed (flyback planes excluded)."""
    ignored = set(context.configuration.main.ignored_flyback_planes)
    return [plane.index for plane in context.plan.virtual_planes if plane.index not in ignored]
