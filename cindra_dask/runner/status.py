"""What a store holds, as `StoreState` and as lines for people (its lock, each step's state, hash and timing, ROIs and cells,
the indicator tau, every array), and its `StoreSummary` (counts and, on simulated data, accuracy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from cindra_dask.errors import CindraError, OutputError
from cindra_dask.runner.single import SINGLE_RECORDING_STEPS, Step, method_steps
from cindra_dask.store import EXTRACTION, ROIS, RecordingStore, SubmittedRunRecord, array_shape, lock_is_stale, open_existing_store, plane_indices, plane_path, stage_path


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


class StepState(NamedTuple):
    """One step of a store: its record key, ``state`` ("not run", "complete" or "incomplete") and, when run, its record's hash and times."""

    key: str
    state: str
    config_hash: str | None
    started: str | None
    finished: str | None
    duration_s: float | None


class PlaneState(NamedTuple):
    """One plane of a store: its `RoiCounts` and the `indicator_tau_line` (None: none yet)."""

    plane: int
    counts: RoiCounts
    indicator_tau: str | None


class ArrayState(NamedTuple):
    """One array of a store, from its ``zarr.json``."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]


class StoreState(NamedTuple):
    """What `store_state` read: the lock (`lock_line`), the submitted runs (`cindra_dask.runner.submit`), every step, every plane, every array and the damaged nodes."""

    path: Path
    lock: str | None
    runs: tuple[SubmittedRunRecord, ...]
    steps: tuple[StepState, ...]
    planes: tuple[PlaneState, ...]
    arrays: tuple[ArrayState, ...]
    damaged_nodes: tuple[str, ...]


def recorded_method_steps(store: RecordingStore) -> tuple[Step, ...]:
    """The single-recording steps of the ``source_extraction.method`` in the store's recorded configuration
    (`cindra_dask.runner.single.method_steps`; the default method's when none is recorded, every step when it cannot be read)."""
    try:
        return method_steps(store.recorded_configuration())
    except CindraError:
        return SINGLE_RECORDING_STEPS


def store_state(path: Path | str) -> StoreState:
    """The `StoreState` of the store at ``path``: the single-recording steps of its recorded method in order
    (per plane, `recorded_method_steps`), then any other record."""
    store = RecordingStore(path)
    if not store.exists:
        raise OutputError(f"{path}: not a cindra-dask store (no zarr.json)")
    records = store.phase_records()
    planes = [plane["index"] for plane in store.attributes().get("planes", [])]
    per_plane = [step for step in recorded_method_steps(store) if step.per_plane]
    keys = ["ingest", *(step.key(plane) for plane in planes for step in per_plane), "combine"]
    steps = []
    for key in keys + sorted(set(records) - set(keys)):
        record = records.get(key)
        if record is None:
            steps.append(StepState(key, "not run", None, None, None, None))
        else:
            steps.append(StepState(key, "complete" if record.complete else "incomplete", record.config_hash, record.started, record.finished, record.duration_s))
    arrays = []
    for array_path in store.array_paths():
        try:
            metadata = json.loads((store.path / array_path / "zarr.json").read_text())
        except FileNotFoundError:  # removed since it was listed (a running step rewriting its outputs)
            continue
        arrays.append(ArrayState(array_path, tuple(metadata["shape"]), str(metadata["data_type"]), tuple(metadata["chunk_grid"]["configuration"]["chunk_shape"])))
    plane_states = tuple(PlaneState(plane, plane_roi_counts(store, plane), indicator_tau_line(store, plane)) for plane in plane_indices(store))
    return StoreState(store.path, lock_line(store), tuple(store.run_records()), tuple(steps), plane_states, tuple(arrays), tuple(store.damaged_nodes()))


def store_status(path: Path | str) -> list[str]:
    """Human-readable lines of `store_state`: the lock, the submitted runs (`run_line`), each step's state, hash and
    timing, each plane's ROI and cell counts and configured vs estimated indicator tau, then every array's shape;
    only the runs while a submitted run has not yet written the store."""
    store = RecordingStore(path)
    if not store.exists and store.run_records():  # submitted; its run has not written the store yet
        return [f"store: {store.path} (not written yet)", *(run_line(record, steps=()) for record in store.run_records())]
    state = store_state(path)
    lines = [f"store: {state.path}"]
    if state.lock is not None:
        lines.append(state.lock)
    lines.extend(run_line(record, steps=state.steps) for record in state.runs)
    for step in state.steps:
        if step.state == "not run":
            lines.append(f"step {step.key:<24} not run")
        elif step.state == "complete":
            lines.append(f"step {step.key:<24} complete    hash {step.config_hash}  {step.duration_s:.1f} s  finished {step.finished}")
        else:
            lines.append(f"step {step.key:<24} INCOMPLETE  hash {step.config_hash}  started {step.started} (interrupted or running; a rerun redoes it)")
    for plane in state.planes:
        counts = plane.counts
        if counts.rois is not None:
            lines.append(f"plane {plane.plane}: {counts.rois} ROIs" + (f", {counts.cells} classified as cells" if counts.cells is not None else " (not classified yet)"))
        if plane.indicator_tau is not None:
            lines.append(f"plane {plane.plane} {plane.indicator_tau}")
    for array in state.arrays:
        lines.append(f"  {array.path:<40} shape {array.shape}  {array.dtype}  chunks {array.chunks}")
    for node_path in state.damaged_nodes:
        lines.append(f"  {node_path:<40} DAMAGED: zarr.json is not valid JSON; `cindra-dask run` with the same configuration rebuilds it")
    return lines


def run_line(record: SubmittedRunRecord, *, steps: Sequence[StepState]) -> str:
    """A submitted run for people: its state and, while it runs, how many of ``steps`` are complete and
    which is in progress; a "running" run whose worker process is gone (same host) has stopped."""
    head = f"run {record.run_id} (submitted {record.submitted} to {record.scheduler_address})"
    if record.state == "submitted":
        return f"{head}: waiting for a worker to start it"
    if record.state == "failed":
        return f"{head}: FAILED at {record.finished}: {record.error}; finished steps are kept: fix it and submit again to resume"
    if record.state == "complete":
        ran = sum(line.endswith(": ran") for line in record.outcomes)
        return f"{head}: complete at {record.finished} ({ran} steps ran, {len(record.outcomes) - ran} skipped)"
    done = sum(step.state == "complete" for step in steps)
    worker = f"process {record.pid} on {record.host}"
    if lock_is_stale({"pid": record.pid, "host": record.host}):
        return f"{head}: STOPPED — its {worker} ended before the run did (worker killed or cluster closed); {done} of {len(steps)} steps complete; submit again to resume"
    current = [step.key for step in steps if step.state == "incomplete"]
    now = f", now '{current[-1]}'" if current else ""
    return f"{head}: running in {worker} since {record.started}: {done} of {len(steps)} steps complete{now}"


class StoreSummary(NamedTuple):
    """What `store_summary` found: frames per plane, each plane's `RoiCounts`, and, given the simulator's
    ground truth, each classified plane's accuracy (plane → `cindra_dask.evaluate.RecordingScores`)."""

    path: Path
    frames_per_plane: int | None
    counts: dict[int, RoiCounts]
    ground_truth: Path | None
    scores: dict[int, Any]


def recorded_ground_truth(path: Path | str) -> Path | None:
    """The simulator's ``ground_truth.npz`` in ``file_io.data_path`` of the store's recorded configuration; None when there is none."""
    from cindra_dask.simulate.files import GROUND_TRUTH_FILE_NAME

    data_path = open_existing_store(path).recorded_configuration().file_io.data_path
    truth_path = Path(data_path).expanduser() / GROUND_TRUTH_FILE_NAME if data_path is not None else None
    return truth_path if truth_path is not None and truth_path.is_file() else None


def store_summary(path: Path | str, *, ground_truth: Path | None) -> StoreSummary:
    """Frames, planes, ROI and cell counts of a store and, given ``ground_truth`` (the simulator's file,
    e.g. `recorded_ground_truth`), `cindra_dask.evaluate.score_recording` of every classified plane it covers."""
    store = open_existing_store(path)
    counts = {plane: plane_roi_counts(store, plane) for plane in plane_indices(store)}
    frames = store.attributes().get("frames_per_plane")
    scores: dict[int, Any] = {}
    if ground_truth is not None:
        from cindra_dask.evaluate import score_recording
        from cindra_dask.simulate import load_ground_truth

        truth = load_ground_truth(ground_truth)
        scores = {plane: score_recording(store.path, truth, plane=plane) for plane, count in counts.items() if count.cells is not None and plane < truth.parameters.plane_count}
    return StoreSummary(store.path, int(frames) if frames is not None else None, counts, ground_truth if scores else None, scores)
