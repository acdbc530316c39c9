"""The phase runner behind the CLI and notebooks: preflight, phases in order, resume by hash.

Single recording: ``ingest`` → ``process`` → ``combine``. Multi-recording: ``discover`` →
``extract``. A phase whose record in the store is complete with the same configuration hash is
skipped; a phase's hash chains the hash of the phase before it, so a change reruns that phase and
every phase after it. ``force`` (or cindra's ``repeat_*`` flags) reruns regardless.

Nothing is written before :func:`preflight` has checked the configuration, the inputs and the
output location; the store is locked for the whole run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from cindra_dask.chunking import frames_per_chunk
from cindra_dask.config import (
    AcquisitionParameters,
    Configuration,
    SingleRecordingConfiguration,
    configuration_to_yaml,
    load_acquisition_parameters,
    section_hash,
)
from cindra_dask.errors import CindraError, ConfigurationError, InputError, OutputError
from cindra_dask.io.tiff import IngestPlan, build_ingest_plan, discover_tiffs, find_acquisition_file, inspect_tiff
from cindra_dask.store import RecordingStore, store_path

SINGLE_RECORDING_PHASES = ("ingest", "process", "combine")
MULTI_RECORDING_PHASES = ("discover", "extract")
BAD_FRAMES_FILE_NAME = "bad_frames.npy"
TASK_MEMORY_FACTOR = 8
"""A registration task holds about this many float32 copies of its chunk (frames, FFTs, warps)."""


class RecordingContext(NamedTuple):
    """What preflight established about one recording; every phase receives it.

    Attributes
    ----------
    configuration : the validated configuration.
    acquisition : the acquisition parameters in force.
    tiff_directory : folder holding the TIFFs.
    plan : the ingest plan (files, page layout, chunking).
    store : the output store (may not exist yet).
    bad_frame_indices : (k,) int64 user-marked bad frames from ``bad_frames.npy`` (may be empty).
    """

    configuration: SingleRecordingConfiguration
    acquisition: AcquisitionParameters
    tiff_directory: Path
    plan: IngestPlan
    store: RecordingStore
    bad_frame_indices: np.ndarray


class PhaseOutcome(NamedTuple):
    """What happened to one step (``ingest``, ``registration/plane_0``, ...) in a run."""

    name: str
    state: str  # "ran" or "skipped"
    duration_s: float


class RunReport(NamedTuple):
    """Summary of a run: where the results are and what each phase did."""

    store_path: Path
    outcomes: tuple[PhaseOutcome, ...]


# ---------------------------------------------------------------------------------------------
# preflight
# ---------------------------------------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_output(configuration: SingleRecordingConfiguration, store: RecordingStore, *, raw_bytes: int) -> list[str]:
    problems = []
    existing = _nearest_existing(store.path.parent)
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
        problems.append(f"file_io.output_path: {free / 2**30:.1f} GiB free on {existing} but ingest needs up to {raw_bytes / 2**30:.1f} GiB (uncompressed estimate); free space or choose another output_path")
    elif free < 2 * raw_bytes:
        warnings.warn(f"{existing}: {free / 2**30:.1f} GiB free; the raw plus registered movies may need up to {2 * raw_bytes / 2**30:.1f} GiB", stacklevel=3)
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


def preflight(configuration: SingleRecordingConfiguration) -> RecordingContext:
    """Check configuration, inputs and output before anything is written.

    Raises a :class:`CindraError` listing every problem found (one line each).
    """
    file_io = configuration.file_io
    problems: list[str] = []
    if file_io.data_path is None:
        problems.append("file_io.data_path: not set; give the folder holding the TIFFs and cindra_parameters.json")
    if file_io.output_path is None:
        problems.append("file_io.output_path: not set; give the folder that receives the results")
    if problems:
        raise ConfigurationError(*problems)
    data_path = Path(file_io.data_path).expanduser()
    if not data_path.is_dir():
        raise InputError(f"file_io.data_path: {data_path} is not an existing directory; point it at the folder holding the TIFFs")
    if configuration.acquisition is not None:
        acquisition, tiff_directory = configuration.acquisition, data_path
    else:
        parameters_file = find_acquisition_file(data_path)
        acquisition, tiff_directory = load_acquisition_parameters(parameters_file), parameters_file.parent
    if configuration.main.two_channels != (acquisition.channel_number == 2):
        problems.append(f"main.two_channels is {configuration.main.two_channels} but the acquisition has channel_number {acquisition.channel_number}; make them agree")
    for plane in configuration.main.ignored_flyback_planes:
        if not 0 <= plane < acquisition.virtual_plane_count:
            problems.append(f"main.ignored_flyback_planes: plane {plane} does not exist (planes 0..{acquisition.virtual_plane_count - 1})")
    file_infos = []
    for path in discover_tiffs(tiff_directory, ignored_file_names=file_io.ignored_file_names):
        try:
            file_infos.append(inspect_tiff(path))
        except InputError as error:
            problems.extend(error.problems)
    if problems:
        raise InputError(*problems)
    height, width = file_infos[0].page_shape
    chunk_frames = min(configuration.registration.batch_size, frames_per_chunk(frame_height=height, frame_width=width, max_chunk_bytes=configuration.runtime.max_chunk_bytes))
    plan = build_ingest_plan(file_infos, acquisition, chunk_frames=chunk_frames)
    recording_name = file_io.recording_name or tiff_directory.name
    store = RecordingStore(store_path(Path(file_io.output_path).expanduser(), recording_name))
    raw_bytes = plan.frames_per_plane * plan.channel_number * sum((plane.row_stop - plane.row_start) * width for plane in plan.virtual_planes) * np.dtype(plan.dtype).itemsize
    problems.extend(_check_output(configuration, store, raw_bytes=raw_bytes))
    problems.extend(_check_worker_memory(configuration))
    bad_frames_path = data_path / BAD_FRAMES_FILE_NAME
    bad_frame_indices = np.zeros(0, np.int64)
    if bad_frames_path.exists():
        try:
            bad_frame_indices = _read_bad_frames(bad_frames_path, frame_count=plan.frames_per_plane)
        except InputError as error:
            problems.extend(error.problems)
    if problems:
        raise CindraError(*problems)
    if plan.frames_per_plane < 50:
        warnings.warn(f"{tiff_directory}: only {plan.frames_per_plane} frames per plane; registration and detection need at least 50 (200+ recommended)", stacklevel=2)
    return RecordingContext(configuration, acquisition, tiff_directory, plan, store, bad_frame_indices)


# ---------------------------------------------------------------------------------------------
# phases
# ---------------------------------------------------------------------------------------------


def _hashable(configuration: Configuration, sections: tuple[str, ...]) -> dict[str, Any]:
    """Sections' values without the force flags (``repeat_*``), which must not change a hash."""
    dumped = configuration.model_dump(mode="json")
    return {name: {key: value for key, value in (dumped.get(name) or {}).items() if not key.startswith("repeat_")} for name in sections}


def ingest_hash(context: RecordingContext) -> str:
    """Identity of the ingest: acquisition, input files (names, sizes, times) and chunking."""
    files = [(Path(info.path).name, os.stat(info.path).st_size, os.stat(info.path).st_mtime_ns) for info in context.plan.files]
    return section_hash(context.configuration, (), extra={"acquisition": context.acquisition.model_dump(mode="json"), "files": files, "chunk_frames": context.plan.chunk_frames})


def _compute(client: Any, graphs: Sequence[Any], *, label: str, show_progress: bool) -> list[Any]:
    """Run Dask collections on the cluster as one graph, with a progress bar; results in input order.

    The collections are wrapped together in one ``Delayed`` list, so work they share (the masks
    and the trace pass every extraction output reads) has the same keys and runs once. Wrapping each
    collection separately re-optimises each one and renames its fused tasks: measured, extraction
    then built its masks and read the movie once per output (6×). One list also keeps the input
    order (dask 2026.8 returns mixed Array/Delayed results grouped by type).
    """
    import dask

    if not graphs:
        return []
    future = client.compute(dask.delayed(list, pure=True)(list(graphs)))
    if show_progress:
        from distributed import progress

        print(f"{label}:", file=sys.stderr)
        progress(future, notebook=False, scheduler=client.scheduler.address)  # this client's scheduler, not the process's default client
        print(file=sys.stderr)
    return future.result()


def run_ingest(context: RecordingContext, client: Any, *, plane: int | None, show_progress: bool) -> None:
    """Ingest phase: TIFF pages → ``plane_k/raw/channel_c``; root attrs describe the recording."""
    from cindra_dask.io.ingest import ingest_graph

    store = context.store
    for stale in [*store.path.glob("plane_*"), store.path / "combined"]:
        if stale.exists():
            store.delete(stale.name)
    store.update_attributes(
        acquisition=context.acquisition.model_dump(mode="json"),
        configuration=configuration_to_yaml(context.configuration),
        tiff_directory=str(context.tiff_directory),
        tiff_files=[Path(info.path).name for info in context.plan.files],
        frames_per_plane=context.plan.frames_per_plane,
        planes=[plane._asdict() for plane in context.plan.virtual_planes],
        bad_frame_indices=context.bad_frame_indices.tolist(),
    )
    _compute(client, ingest_graph(context.plan, store), label="ingest", show_progress=show_progress)


class Step(NamedTuple):
    """A resumable unit of the single-recording pipeline (one record in the store per plane if per-plane).

    Attributes
    ----------
    name : step name; its record key is ``name`` or ``name/plane_k``.
    phase : the phase it belongs to (``ingest``, ``process``, ``combine``).
    sections : configuration sections its hash covers (chained with the step before it).
    per_plane : runs once per processed plane.
    run : ``run(context, client, *, plane, show_progress)``.
    force_flag : a ``section.field`` boolean that forces a rerun (cindra's ``repeat_*``).
    """

    name: str
    phase: str
    sections: tuple[str, ...]
    per_plane: bool
    run: Callable[..., None]
    force_flag: str | None

    def key(self, plane: int | None) -> str:
        """Record key of this step (for ``plane`` when per-plane)."""
        return f"{self.name}/plane_{plane}" if self.per_plane else self.name


def run_registration(context: RecordingContext, client: Any, *, plane: int, show_progress: bool) -> None:
    """Registration step (see `cindra_dask.registration.graph.run_registration_step`)."""
    from cindra_dask.registration.graph import run_registration_step

    run_registration_step(context, client, plane=plane, show_progress=show_progress)


def run_detection(context: RecordingContext, client: Any, *, plane: int, show_progress: bool) -> None:
    """Detection step (see `cindra_dask.detection.graph.run_detection_step`)."""
    from cindra_dask.detection.graph import run_detection_step

    run_detection_step(context, client, plane=plane, show_progress=show_progress)


def run_extraction(context: RecordingContext, client: Any, *, plane: int, show_progress: bool) -> None:
    """Extraction step (see `cindra_dask.extraction.graph.run_extraction_step`)."""
    from cindra_dask.extraction.graph import run_extraction_step

    run_extraction_step(context, client, plane=plane, show_progress=show_progress)


def run_combine(context: RecordingContext, client: Any, *, plane: None, show_progress: bool) -> None:
    """Combine step (see `cindra_dask.combine.run_combine`)."""
    from cindra_dask import combine

    combine.run_combine(context, client, show_progress=show_progress)


SINGLE_RECORDING_STEPS = (
    Step("ingest", "ingest", (), False, run_ingest, "file_io.repeat_binarization"),
    Step("registration", "process", ("main", "registration", "one_photon_registration", "nonrigid_registration"), True, run_registration, "registration.repeat_registration"),
    Step("detection", "process", ("main", "roi_detection", "nonrigid_registration"), True, run_detection, None),
    Step("extraction", "process", ("main", "signal_extraction", "spike_deconvolution"), True, run_extraction, None),
    Step("combine", "combine", (), False, run_combine, None),
)

DETECTION_DEPENDENT_STEPS = ("detection", "extraction")
"""Steps ``roi_detection.enabled = False`` skips (cindra: "skips detection and extraction for the plane")."""


def _flag(configuration: Configuration, dotted: str | None) -> bool:
    if dotted is None:
        return False
    section, field = dotted.split(".")
    return bool(getattr(getattr(configuration, section), field))


class _LazyClient:
    """Starts the configured cluster only when a step first needs it; a given client's workers get the
    allocator tuning then (`cindra_dask.cluster.tune_workers`; `cluster_client` does it for its own)."""

    def __init__(self, configuration: Configuration, client: Any | None) -> None:
        self._configuration = configuration
        self._client = client
        self._stack: Any = None
        self._ready = False

    def get(self) -> Any:
        if not self._ready:
            import contextlib

            from cindra_dask.cluster import cluster_client, tune_workers

            if self._client is None:
                self._stack = contextlib.ExitStack()
                self._client = self._stack.enter_context(cluster_client(self._configuration.cluster))
            else:
                tune_workers(self._client)
            self._ready = True
        return self._client

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()


def processed_planes(context: RecordingContext) -> list[int]:
    """Virtual planes that are registered and processed (flyback planes excluded)."""
    ignored = set(context.configuration.main.ignored_flyback_planes)
    return [plane.index for plane in context.plan.virtual_planes if plane.index not in ignored]


def step_hashes(context: RecordingContext) -> dict[str, str]:
    """Every step's hash: ingest's, then chained per plane, and combine's over all planes."""
    configuration = context.configuration
    hashes = {"ingest": ingest_hash(context)}
    plane_tails = []
    for plane in processed_planes(context):
        previous = hashes["ingest"]
        for step in SINGLE_RECORDING_STEPS:
            if step.per_plane:
                previous = section_hash(configuration, (), extra={"previous": previous, **_hashable(configuration, step.sections)})
                hashes[step.key(plane)] = previous
        plane_tails.append(previous)
    hashes["combine"] = section_hash(configuration, (), extra={"previous": plane_tails})
    return hashes


def _check_phase_names(phases: Sequence[str] | None) -> None:
    """Unknown phases are errors (before anything else is looked at)."""
    unknown = [name for name in phases or () if name not in SINGLE_RECORDING_PHASES]
    if unknown:
        raise ConfigurationError(f"--phase {', '.join(unknown)}: unknown phase; single-recording phases are {', '.join(SINGLE_RECORDING_PHASES)}")


def _units(context: RecordingContext, phases: Sequence[str] | None, target_plane: int | None) -> list[tuple[Step, int | None]]:
    """(step, plane) pairs to consider, in execution order."""
    phase_names = SINGLE_RECORDING_PHASES
    units: list[tuple[Step, int | None]] = []
    planes = [plane for plane in processed_planes(context) if target_plane is None or plane == target_plane]
    for phase in phase_names:
        if phases and phase not in phases:
            continue
        steps = [step for step in SINGLE_RECORDING_STEPS if step.phase == phase]
        if steps[0].per_plane:
            if not context.configuration.roi_detection.enabled:
                print("roi_detection.enabled is false: detection and extraction skipped (registration only)", file=sys.stderr)
                steps = [step for step in steps if step.name not in DETECTION_DEPENDENT_STEPS]
            units += [(step, plane) for plane in planes for step in steps]
        elif phase == "combine" and target_plane is not None:
            print("phase 'combine': skipped because --target-plane limits the run to one plane", file=sys.stderr)
        else:
            units += [(step, None) for step in steps]
    return units


def _downstream_keys(step: Step, plane: int | None, context: RecordingContext) -> list[str]:
    """Record keys whose outputs depend on ``step`` (itself included)."""
    if step.name == "ingest":
        return [key for key in step_hashes(context)]
    position = [candidate.name for candidate in SINGLE_RECORDING_STEPS].index(step.name)
    return [later.key(plane) for later in SINGLE_RECORDING_STEPS[position:] if later.per_plane] + ["combine"]


def run_single_recording(
    configuration: SingleRecordingConfiguration,
    *,
    client: Any | None = None,
    phases: Sequence[str] | None = None,
    target_plane: int | None = None,
    force: bool = False,
    show_progress: bool | None = None,
) -> RunReport:
    """Run the single-recording steps in order, skipping complete ones whose hash matches.

    Parameters
    ----------
    configuration : validated configuration.
    client : a ``distributed.Client``; None starts the cluster of ``configuration.cluster``.
    phases : subset of ``ingest``, ``process``, ``combine`` (None: all, in order).
    target_plane : restrict the per-plane ``process`` steps to this plane (``ingest`` always
        converts every plane, as cindra's binarization does; ``combine`` is skipped).
    force : rerun the selected steps even if complete.
    show_progress : progress bars (default ``runtime.display_progress_bars``).
    """
    _check_phase_names(phases)
    context = preflight(configuration)
    plane_count = len(context.plan.virtual_planes)
    if target_plane is not None and not 0 <= target_plane < plane_count:
        raise ConfigurationError(f"--target-plane {target_plane}: the recording has planes 0..{plane_count - 1}")
    units = _units(context, phases, target_plane)
    show = configuration.runtime.display_progress_bars if show_progress is None else show_progress
    store = context.store
    outcomes: list[PhaseOutcome] = []
    lazy_client = _LazyClient(configuration, client)
    with store.locked():
        try:
            hashes = step_hashes(context)
            for step, plane in units:
                key = step.key(plane)
                record = store.phase_record(key) if store.exists else None
                if not (force or _flag(configuration, step.force_flag)) and record is not None and record.complete and record.config_hash == hashes[key]:
                    print(f"step '{key}': complete (hash {hashes[key]}), skipped", file=sys.stderr)
                    outcomes.append(PhaseOutcome(key, "skipped", 0.0))
                    continue
                for stale in _downstream_keys(step, plane, context):
                    store.forget_phase(stale)
                started = store.mark_phase_started(key, config_hash=hashes[key])
                step.run(context, lazy_client.get(), plane=plane, show_progress=show)
                record = store.mark_phase_complete(key, config_hash=hashes[key], started=started)
                print(f"step '{key}': done in {record.duration_s:.1f} s", file=sys.stderr)
                outcomes.append(PhaseOutcome(key, "ran", float(record.duration_s or 0.0)))
            _refresh_manifest(store, ran=any(outcome.state == "ran" for outcome in outcomes))
        finally:
            lazy_client.close()
    return RunReport(store.path, tuple(outcomes))


def _refresh_manifest(store: RecordingStore, *, ran: bool) -> None:
    """Rewrite ``datapackage.json`` (arrays, checksums, configuration, timings) after a run that wrote something."""
    from cindra_dask.manifest import manifest_path, write_manifest

    if store.exists and (ran or not manifest_path(store).is_file()):
        write_manifest(store)


# ---------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------


def store_status(path: Path | str) -> list[str]:
    """Human-readable lines: each step's state, hash and timing, each plane's configured vs estimated
    indicator tau (`cindra_dask.manifest.indicator_tau_line`), then every array's shape."""
    from cindra_dask import manifest

    store = RecordingStore(path)
    if not store.exists:
        raise OutputError(f"{path}: not a cindra-dask store (no zarr.json)")
    lines = [f"store: {store.path}"]
    holder = store.lock_holder()
    if holder:
        lines.append(f"lock: held by process {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}")
    records = store.phase_records()
    plane_indices = [plane["index"] for plane in store.attributes().get("planes", [])]
    per_plane = [step for step in SINGLE_RECORDING_STEPS if step.per_plane]
    keys = ["ingest", *(step.key(plane) for plane in plane_indices for step in per_plane), "combine"]
    for key in keys + sorted(set(records) - set(keys)):
        record = records.get(key)
        if record is None:
            lines.append(f"step {key:<24} not run")
        elif record.complete:
            lines.append(f"step {key:<24} complete    hash {record.config_hash}  {record.duration_s:.1f} s  finished {record.finished}")
        else:
            lines.append(f"step {key:<24} INCOMPLETE  hash {record.config_hash}  started {record.started} (interrupted or running; a rerun redoes it)")
    for plane in manifest.plane_indices(store):
        if (line := manifest.indicator_tau_line(store, plane)) is not None:
            lines.append(f"plane {plane} {line}")
    for array_path in store.array_paths():
        metadata = json.loads((store.path / array_path / "zarr.json").read_text())
        lines.append(f"  {array_path:<40} shape {tuple(metadata['shape'])}  {metadata['data_type']}  chunks {tuple(metadata['chunk_grid']['configuration']['chunk_shape'])}")
    return lines
