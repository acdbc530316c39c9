"""The typed results of the MCP tools (pydantic models: the SDK publishes their JSON schemas as the tools' output schemas)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field


class ConfigurationWritten(BaseModel):
    """A configuration file written from the template."""

    path: str = Field(description="The YAML file written.")
    unset_fields: list[str] = Field(description="Fields a run still needs, each with what to give (empty: ready to validate).")


class Validation(BaseModel):
    """What preflight found (nothing was written)."""

    store_paths: list[str] = Field(description="The store(s) a run writes.")
    lines: list[str] = Field(description="Files, frames × planes × channels, chunks, acquisition and its source, notes.")
    warnings: list[str] = Field(description="What preflight warns about (e.g. too few frames for detection to find quiet cells).")


class Step(BaseModel):
    """One step of a store."""

    key: str = Field(description="Record key: ingest, registration/plane_0, ..., combine, multi_recording/<dataset>/discover.")
    state: str = Field(description="'not run', 'complete' or 'incomplete' (interrupted or running).")
    config_hash: str | None = None
    started: str | None = Field(default=None, description="UTC time the step started.")
    finished: str | None = Field(default=None, description="UTC time the step finished.")
    duration_s: float | None = Field(default=None, description="Seconds the step took.")


class PlaneCounts(BaseModel):
    """ROIs of a plane and how many the classifier calls cells (None: not run yet)."""

    plane: int
    rois: int | None
    cells: int | None
    indicator_tau: str | None = Field(default=None, description="Configured vs estimated indicator decay, for people.")


class ArrayEntry(BaseModel):
    """One array of a store."""

    path: str
    shape: list[int]
    dtype: str
    chunks: list[int]


class StoreStatus(BaseModel):
    """A store's lock, steps, planes and arrays."""

    path: str
    lock: str | None = Field(description="Who holds the store's lock (a run in progress, or a stale lock); None: free.")
    steps_complete: int
    steps_total: int
    steps: list[Step]
    planes: list[PlaneCounts]
    arrays: list[ArrayEntry] = Field(description="The first arrays (see arrays_total).")
    arrays_total: int
    damaged_nodes: list[str]


class Outcome(BaseModel):
    """What a finished run did with one step."""

    name: str
    state: str = Field(description="'ran' or 'skipped'.")
    duration_s: float


class RunStatus(BaseModel):
    """A background run: its state, the computation in flight, messages, errors, and its stores' steps."""

    run_id: str
    state: str = Field(description="'running', 'finished', 'failed' or 'cancelled'.")
    configuration_path: str
    started: str
    finished: str | None
    duration_s: float | None = Field(description="Seconds from start to end (None while running).")
    elapsed_s: float
    computing: str | None = Field(description="The computation in flight (None between computations).")
    tasks_done: int = Field(description="Tasks of the computation in flight that are done.")
    tasks_total: int
    messages: list[str] = Field(description="The run's latest messages, oldest first.")
    errors: list[str] = Field(description="One line per problem when the run failed or was cancelled.")
    outcomes: list[Outcome] = Field(description="Every step's outcome, once the run finished.")
    stores: list[StoreStatus] = Field(description="Status of the run's stores that exist.")
    notes: list[str] = Field(description="Stores that could not be read at this moment (a step rewriting them).")


class StoreEntry(BaseModel):
    """A recording store found under a folder."""

    path: str
    steps_complete: int
    steps_total: int
    locked: bool


class StoreList(BaseModel):
    """Recording stores under a folder."""

    folder: str
    stores: list[StoreEntry]
    truncated: bool = Field(description="More stores exist than were listed (see max_stores).")


class Accuracy(BaseModel):
    """Accuracy of a plane against the simulator's ground truth (`cindra_dask.evaluate.RecordingScores`; None: not a number)."""

    rigid_offset_rms_px: float | None
    displacement_rms_px: float | None
    detection_precision: float | None
    detection_recall: float | None
    detection_f1: float | None
    trace_correlation: float | None
    spike_correlation: float | None
    matched_cells: int


class PlaneSummary(BaseModel):
    """ROI and cell counts of a plane and, with ground truth, its accuracy."""

    plane: int
    rois: int | None
    cells: int | None
    accuracy: Accuracy | None


class StoreSummary(BaseModel):
    """Frames, planes, ROI and classifier counts of a store; accuracy when its input holds ground truth."""

    path: str
    frames_per_plane: int | None
    plane_count: int
    rois: int = Field(description="ROIs over every plane.")
    cells: int = Field(description="ROIs classified as cells over every plane.")
    planes: list[PlaneSummary]
    ground_truth: str | None = Field(description="The ground-truth file scored against (None: none found).")
    notes: list[str] = Field(description="Why there is no accuracy although ground truth exists.")


class RoiTable(BaseModel):
    """Rows [start, stop) of a plane's ROI table: one list per column, one entry per ROI."""

    plane: int
    roi_count: int
    start: int
    stop: int
    columns: dict[str, list[Any]] = Field(description="Column name → values of rows start..stop-1 (centroids: [y, x] px).")
    descriptions: dict[str, str]


class TraceSlice(BaseModel):
    """Frames [start, stop) of one ROI's trace."""

    plane: int
    roi: int
    trace: str
    frame_count: int = Field(description="T, frames of the whole trace.")
    start: int
    stop: int
    frame_rate_hz: float | None = Field(description="Frames per second of a plane (None: not recorded).")
    values: list[float | None] = Field(description="The values (None: not a number).")


class Series(BaseModel):
    """A decimated series: at most about max_points (frame, value) pairs keeping each bin's minimum and maximum."""

    frame: list[int]
    value: list[float | None]


class RegistrationOffsets(BaseModel):
    """A plane's rigid offsets, decimated: frame t shows the reference moved by +dy rows, +dx columns."""

    plane: int
    frame_count: int
    dy_px: Series
    dx_px: Series
    correlation: Series
    bad_frames: int


class FileWritten(BaseModel):
    """A file a tool wrote."""

    path: str


class FilesWritten(BaseModel):
    """Files a tool wrote."""

    folder: str
    file_count: int
    files: list[str] = Field(description="The first files (see file_count).")


class NwbWritten(BaseModel):
    """An NWB file written."""

    path: str
    identifier: str
    planes: list[int]
    roi_counts: list[int]


class TrackedCells(BaseModel):
    """Tracked cells [start, stop) of a multi-recording dataset, one entry per cell in every list."""

    dataset_name: str
    recording_names: list[str]
    track_count: int
    start: int
    stop: int
    track_id: list[int]
    track_confidence: list[float | None]
    recording_count: list[int]
    roi_index: list[list[int]] = Field(description="Per cell, per recording, its ROI in that store's combined/rois (-1: not detected there).")


def finite(values: Any) -> list[Any]:
    """Values as a JSON-ready list, NaN and infinities as None (nested lists kept)."""
    return [finite(value) if isinstance(value, list) else (None if isinstance(value, float) and not math.isfinite(value) else value) for value in list(values)]
