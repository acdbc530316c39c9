"""The tools of `cindra-dask mcp` (official ``mcp`` SDK, `MCPServer`): each checks its paths against the
server's `PathRoots`, calls the function the CLI calls, and returns a `cindra_dask.mcp.models` result.

A `CindraError` becomes a tool error with one ``error: …`` line per problem; anything else a one-line
tool error (its traceback goes to the server's log on standard error, never to the client). Results
are capped: a table, trace, series or listing longer than its cap is refused or paged (``start``/``stop``).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, TypeVar

import numpy as np
from mcp.server.mcpserver import Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from cindra_dask.errors import CindraError, ConfigurationError, InputError
from cindra_dask.mcp import models
from cindra_dask.mcp.roots import PathRoots
from cindra_dask.mcp.runs import BackgroundRuns, RunRecord, ThreadWarnings
from cindra_dask.runner.events import LOGGER_NAME
from cindra_dask.store import DETECTION, REGISTRATION

MAX_TABLE_ROWS = 1000
"""ROIs (or tracked cells) one table call returns at most."""
MAX_TRACE_FRAMES = 20_000
"""Frames one trace call returns at most."""
MAX_SERIES_POINTS = 5000
"""Points of one decimated series at most."""
MAX_IMAGE_SIDE_PX = 2048
"""Longest side of a returned image; larger images are subsampled."""
MAX_LISTED = 500
"""Entries (stores, arrays, files) one listing returns at most."""
SUMMARY_IMAGES = {"mean_image": DETECTION, "enhanced_mean_image": DETECTION, "maximum_projection": DETECTION, "correlation_map": DETECTION, "reference_image": REGISTRATION}
"""Images `summary_image` serves, by the stage group they live in."""
TRACE_ARRAYS = ("subtracted_fluorescence", "cell_fluorescence", "neuropil_fluorescence", "spikes", "delta_f_over_f")
"""The (n, T) arrays of ``plane_k/extraction`` `roi_trace` reads."""

ToolFunction = TypeVar("ToolFunction", bound=Callable[..., Any])
Overrides = Annotated[dict[str, Any], Field(description="Configuration fields to set: {'section.field': value}, e.g. {'file_io.data_path': '/data/rec1', 'cluster.workers': 2}.")]
StorePath = Annotated[str, Field(description="A recording store (<name>.zarr) inside the server's roots.")]
Plane = Annotated[int, Field(ge=0, description="Plane index (plane_k).")]


def tool_errors(function: ToolFunction) -> ToolFunction:
    """``function`` raising `ToolError` instead: one ``error: …`` line per problem of a `CindraError`, one line
    for anything else (logged with its traceback on the server's standard error, never sent)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except CindraError as error:
            raise ToolError("\n".join(f"error: {problem}" for problem in error.problems)) from None
        except Exception as error:  # noqa: BLE001 - a client gets one line, the log the traceback
            logging.getLogger(LOGGER_NAME).exception("tool %s failed", function.__name__)
            raise ToolError(f"error: internal error in {function.__name__}: {type(error).__name__}: {error}") from None

    return wrapper  # type: ignore[return-value]


def _override_strings(overrides: dict[str, Any]) -> list[str]:
    """``section.field=value`` strings (`cindra_dask.config.parse_overrides` reads the JSON values back as YAML)."""
    return [f"{key}={json.dumps(value, default=str)}" for key, value in overrides.items()]


def _page(start: int, stop: int | None, *, length: int, cap: int, what: str) -> tuple[int, int]:
    """[start, stop) within ``length`` (stop None: at most ``cap`` from start); `InputError` past the end or over ``cap``."""
    stop = min(length, start + cap) if stop is None else stop
    if stop - start > cap:
        raise InputError(f"start {start}, stop {stop}: {stop - start} {what} asked for; one call returns at most {cap}, so ask for pages of at most {cap} (there are {length})")
    if not 0 <= start <= stop <= length:
        raise InputError(f"start {start}, stop {stop}: outside the {length} {what} (0 ≤ start ≤ stop ≤ {length})")
    return start, stop


def _store_status(state: Any) -> models.StoreStatus:
    steps = [models.Step(**step._asdict()) for step in state.steps]
    return models.StoreStatus(
        path=str(state.path),
        lock=state.lock,
        steps_complete=sum(step.state == "complete" for step in steps),
        steps_total=len(steps),
        steps=steps,
        planes=[models.PlaneCounts(plane=plane.plane, rois=plane.counts.rois, cells=plane.counts.cells, indicator_tau=plane.indicator_tau) for plane in state.planes],
        arrays=[models.ArrayEntry(path=array.path, shape=list(array.shape), dtype=array.dtype, chunks=list(array.chunks)) for array in state.arrays[:MAX_LISTED]],
        arrays_total=len(state.arrays),
        damaged_nodes=list(state.damaged_nodes),
    )


def _run_status(record: RunRecord) -> models.RunStatus:
    from cindra_dask.runner.status import store_state
    from cindra_dask.store import RecordingStore

    with record.lock:
        payload = {
            "run_id": record.run_id,
            "state": record.state,
            "configuration_path": str(record.configuration_path),
            "started": record.started,
            "finished": record.finished,
            "duration_s": record.duration_s,
            "computing": record.computing_label,
            "tasks_done": record.tasks_done,
            "tasks_total": record.tasks_total,
            "messages": list(record.messages)[-50:],
            "errors": list(record.errors),
            "outcomes": [models.Outcome(name=name, state=state, duration_s=duration) for name, state, duration in record.outcomes],
        }
        store_paths = record.store_paths
    elapsed = payload["duration_s"] if payload["duration_s"] is not None else _elapsed(record)
    stores, notes = [], []
    for path in store_paths:
        if not RecordingStore(path).exists:
            continue
        try:
            stores.append(_store_status(store_state(path)))
        except Exception as error:  # noqa: BLE001 - the run is rewriting it (arrays listed, then removed)
            notes.append(f"{path}: not readable right now ({type(error).__name__}: {error}); a step is rewriting it, ask again")
    return models.RunStatus(**payload, elapsed_s=elapsed, stores=stores, notes=notes)


def _elapsed(record: RunRecord) -> float:
    return time.monotonic() - record.started_s


def _expected_stores(configuration: Any) -> tuple[Path, ...]:
    """The stores a run of ``configuration`` writes, as far as the configuration alone tells (the
    single-recording store is named after the movie folder unless ``file_io.recording_name`` is set)."""
    from cindra_dask.config import SingleRecordingConfiguration
    from cindra_dask.store import store_path

    if isinstance(configuration, SingleRecordingConfiguration):
        file_io = configuration.file_io
        if file_io.output_path is None or file_io.data_path is None:
            return ()
        return (store_path(Path(file_io.output_path).expanduser(), file_io.recording_name or Path(file_io.data_path).name),)
    return tuple(Path(path).expanduser() for path in configuration.recording_io.recording_directories)


def _check_configuration_paths(configuration: Any, roots: PathRoots) -> None:
    """Refuse a configuration that reads outside the roots, writes outside the writable ones, or gives a
    relative path (the runner would read it from the server's working folder, not from a root)."""
    from cindra_dask.config import SingleRecordingConfiguration

    if isinstance(configuration, SingleRecordingConfiguration):
        read = [("file_io.data_path", configuration.file_io.data_path), ("main.custom_classifier_path", configuration.main.custom_classifier_path)]
        written = [("file_io.output_path", configuration.file_io.output_path)]
    else:  # discover and extract write into every recording's store
        read, written = [], [("recording_io.recording_directories", path) for path in configuration.recording_io.recording_directories]
    relative = [f"{field}: {path} is relative; give an absolute path inside {roots.describe()}" for field, path in (*read, *written) if path is not None and not Path(path).expanduser().is_absolute()]
    if relative:
        raise ConfigurationError(*relative)
    for field, path in read:
        if path is not None:
            roots.readable(path, what=field)
    for field, path in written:
        if path is not None:
            roots.writable_path(path, what=field)


def build_server(*, roots: PathRoots) -> MCPServer:
    """The `MCPServer` with every tool, confined to ``roots``; it takes over this process's ``warnings.showwarning`` (`ThreadWarnings`)."""
    from cindra_dask.config import load_configuration

    thread_warnings = ThreadWarnings()
    thread_warnings.install()
    runs = BackgroundRuns(thread_warnings=thread_warnings)
    server = MCPServer(
        "cindra-dask",
        instructions=(
            "Calcium-imaging pipeline (suite2p/cindra algorithms) on Dask and Zarr. Typical use: write_configuration → validate_configuration → "
            "start_run (returns a run_id at once) → run_status until state is 'finished' → summarize_store, roi_table, roi_trace, summary_image. "
            f"Paths must lie inside: {roots.describe()}."
        ),
    )

    def configuration_at(path: str, overrides: dict[str, Any], *, cluster: list[str]) -> tuple[Path, Any]:
        """The configuration file (in a root) with ``overrides`` and ``cluster`` (`cluster_overrides`), its paths checked."""
        config_path = roots.readable(path, what="configuration")
        configuration = load_configuration(config_path, overrides=[*_override_strings(overrides), *cluster])
        _check_configuration_paths(configuration, roots)
        return config_path, configuration

    def store_at(path: str) -> Any:
        """The recording store at ``path`` (in a root); `OutputError` when there is none."""
        from cindra_dask.store import open_existing_store

        return open_existing_store(roots.readable(path, what="store"))

    @server.tool()
    @tool_errors
    def write_configuration(
        path: Annotated[str, Field(description="The YAML file to write (refused if it exists unless overwrite).")],
        pipeline: Literal["single-recording", "multi-recording"] = "single-recording",
        overrides: Overrides | None = None,
        overwrite: bool = False,
    ) -> models.ConfigurationWritten:
        """Write a commented configuration file from the template (every field with its meaning, bounds and default), with overrides."""
        from cindra_dask.config import write_configuration_file

        target = roots.writable_path(path, what="configuration")
        unset = write_configuration_file(target, pipeline_type=pipeline, overrides=_override_strings(overrides or {}), overwrite=overwrite)
        return models.ConfigurationWritten(path=str(target), unset_fields=unset)

    @server.tool()
    @tool_errors
    def validate_configuration(
        path: Annotated[str, Field(description="Configuration YAML.")],
        overrides: Overrides | None = None,
    ) -> models.Validation:
        """Preflight a configuration: configuration, movie files, acquisition, output and memory; writes nothing."""
        from cindra_dask.runner.validation import describe_preflight

        config_path, configuration = configuration_at(path, overrides or {}, cluster=[])
        caught: list[str] = []
        with thread_warnings.collect(caught.append):
            report = describe_preflight(configuration, source=str(config_path))
        return models.Validation(store_paths=[str(store) for store in report.store_paths], lines=list(report.lines), warnings=caught)

    @server.tool()
    @tool_errors
    def start_run(
        path: Annotated[str, Field(description="Configuration YAML (single- or multi-recording).")],
        overrides: Overrides | None = None,
        phases: Annotated[list[str] | None, Field(description="Only these phases: ingest, process, combine; or discover, extract (None: all).")] = None,
        target_plane: Annotated[int | None, Field(ge=0, description="Process only this plane.")] = None,
        target_recording: Annotated[str | None, Field(description="Multi-recording: extract only this recording.")] = None,
        workers: Annotated[int | None, Field(ge=0, description="Local worker processes (overrides cluster.workers).")] = None,
        scheduler_address: Annotated[str | None, Field(description="A running Dask scheduler, tcp://host:8786 (overrides cluster.scheduler_address).")] = None,
        force: bool = False,
    ) -> models.RunStatus:
        """Start the pipeline in the background on a LocalCluster or the given scheduler; returns its run_id at once (poll run_status)."""
        from cindra_dask.config import cluster_overrides

        config_path, configuration = configuration_at(path, overrides or {}, cluster=cluster_overrides(workers=workers, scheduler_address=scheduler_address))
        record = runs.start(configuration, configuration_path=config_path, store_paths=_expected_stores(configuration), phases=phases, target_plane=target_plane, target_recording=target_recording, force=force)
        return _run_status(record)

    @server.tool()
    @tool_errors
    def run_status(run_id: str) -> models.RunStatus:
        """A background run: state, the computation in flight (tasks done of total), messages, errors, outcomes and its stores' steps with timings."""
        return _run_status(runs.get(run_id))

    @server.tool()
    @tool_errors
    def cancel_run(run_id: str) -> models.RunStatus:
        """Cancel a background run: its computation in flight stops; finished steps are kept, the interrupted one reruns next time."""
        record = runs.get(run_id)
        record.cancel()
        return _run_status(record)

    @server.tool()
    @tool_errors
    def list_runs() -> list[str]:
        """The run ids this server started, oldest first, each with its state."""
        return [f"{record.run_id}: {record.state} ({record.configuration_path})" for record in runs.all()]

    @server.tool()
    @tool_errors
    def store_status(store: StorePath) -> models.StoreStatus:
        """A store's lock, each step's state, hash and timing, ROI and cell counts per plane, and its arrays."""
        from cindra_dask.runner.status import store_state

        return _store_status(store_state(store_at(store).path))

    @server.tool()
    @tool_errors
    def list_stores(
        folder: Annotated[str, Field(description="Folder searched (recursively) for recording stores.")],
        max_depth: Annotated[int, Field(ge=0, le=8, description="Folder levels searched below folder.")] = 3,
    ) -> models.StoreList:
        """Recording stores (<name>.zarr) under a folder, each with its steps complete and whether it is locked."""
        from cindra_dask.runner.status import store_state
        from cindra_dask.store import is_recording_store

        top = roots.readable(folder, what="folder")
        if not top.is_dir():
            raise InputError(f"folder {folder}: not a folder")
        found: list[Path] = []
        level = [top]
        for _ in range(max_depth + 1):
            children = []
            for directory in level:
                for entry in sorted(directory.iterdir()):
                    if not entry.is_dir() or entry.is_symlink():
                        continue
                    (found if is_recording_store(entry) else children).append(entry)
            level = children
        entries = []
        for path in found[:MAX_LISTED]:
            state = store_state(path)
            entries.append(models.StoreEntry(path=str(path), steps_complete=sum(step.state == "complete" for step in state.steps), steps_total=len(state.steps), locked=state.lock is not None))
        return models.StoreList(folder=str(top), stores=entries, truncated=len(found) > MAX_LISTED)

    @server.tool()
    @tool_errors
    def summarize_store(store: StorePath) -> models.StoreSummary:
        """Frames per plane, planes, ROI and classified-cell counts and, when the store's input folder holds the simulator's ground truth (inside the roots), each plane's accuracy."""
        from cindra_dask.runner.status import recorded_ground_truth, store_summary

        opened = store_at(store)
        truth = recorded_ground_truth(opened.path)
        readable = truth is not None and roots.contains(truth)
        summary = store_summary(opened.path, ground_truth=truth if readable else None)
        planes = []
        for plane, counts in summary.counts.items():
            scores = summary.scores.get(plane)
            accuracy = models.Accuracy(**dict(zip(scores._fields, models.finite(list(scores))))) if scores is not None else None
            planes.append(models.PlaneSummary(plane=plane, rois=counts.rois, cells=counts.cells, accuracy=accuracy))
        return models.StoreSummary(
            path=str(summary.path),
            frames_per_plane=summary.frames_per_plane,
            plane_count=len(planes),
            rois=sum(plane.rois or 0 for plane in planes),
            cells=sum(plane.cells or 0 for plane in planes),
            planes=planes,
            ground_truth=str(summary.ground_truth) if summary.ground_truth is not None else None,
            notes=[f"ground truth {truth}: outside the folders this server may read; no accuracy"] if truth is not None and not readable else [],
        )

    @server.tool()
    @tool_errors
    def roi_table(
        store: StorePath,
        plane: Plane = 0,
        start: Annotated[int, Field(ge=0, description="First ROI row.")] = 0,
        stop: Annotated[int | None, Field(ge=0, description=f"Row after the last (None: start + {MAX_TABLE_ROWS} or the end).")] = None,
    ) -> models.RoiTable:
        """ROI rows [start, stop) of a plane: classification, neuropil coefficient, estimated tau, centroids and every ROI statistic."""
        from cindra_dask.export.nwb import roi_columns
        from cindra_dask.store import ROIS, array_shape, stage_path

        opened = store_at(store)
        offsets = f"{stage_path(plane, ROIS)}/pixel_offsets"
        if offsets not in opened:
            raise InputError(f"{opened.path}: plane {plane} has no ROIs (planes with ROIs are detected by `start_run`)")
        roi_count = array_shape(opened, offsets)[0] - 1
        start, stop = _page(start, stop, length=roi_count, cap=MAX_TABLE_ROWS, what="ROIs")
        columns = roi_columns(opened, plane, roi_count)
        return models.RoiTable(
            plane=plane,
            roi_count=roi_count,
            start=start,
            stop=stop,
            columns={name: models.finite(np.asarray(values[start:stop]).tolist()) for name, _, values in columns},
            descriptions={name: description for name, description, _ in columns},
        )

    @server.tool()
    @tool_errors
    def roi_trace(
        store: StorePath,
        roi: Annotated[int, Field(ge=0, description="ROI row (as in roi_table).")],
        plane: Plane = 0,
        trace: Literal[TRACE_ARRAYS] = "subtracted_fluorescence",  # type: ignore[valid-type]
        start: Annotated[int, Field(ge=0, description="First frame.")] = 0,
        stop: Annotated[int | None, Field(ge=0, description=f"Frame after the last (None: start + {MAX_TRACE_FRAMES} or the end).")] = None,
    ) -> models.TraceSlice:
        """Frames [start, stop) of one ROI's trace (at most the cap per call; page through longer ones)."""
        from cindra_dask.export.report import plane_rate_hz
        from cindra_dask.store import EXTRACTION, array_shape, stage_path

        opened = store_at(store)
        array_path = f"{stage_path(plane, EXTRACTION)}/{trace}"
        if array_path not in opened:
            raise InputError(f"{opened.path}: no {array_path} (not extracted yet, or not in this store)")
        roi_count, frame_count = array_shape(opened, array_path)
        if roi >= roi_count:
            raise InputError(f"roi {roi}: plane {plane} has ROIs 0..{roi_count - 1}")
        start, stop = _page(start, stop, length=frame_count, cap=MAX_TRACE_FRAMES, what="frames")
        values = opened.read_selection(array_path, (roi, slice(start, stop)))
        return models.TraceSlice(
            plane=plane, roi=roi, trace=trace, frame_count=frame_count, start=start, stop=stop,
            frame_rate_hz=plane_rate_hz(opened), values=models.finite(np.asarray(values, np.float64).tolist()),
        )

    @server.tool()
    @tool_errors
    def registration_offsets(
        store: StorePath,
        plane: Plane = 0,
        max_points: Annotated[int, Field(ge=2, le=MAX_SERIES_POINTS, description="Points per series at most (each bin keeps its minimum and maximum).")] = 1000,
    ) -> models.RegistrationOffsets:
        """A plane's rigid registration offsets (dy, dx px) and correlations, decimated to at most max_points each."""
        from cindra_dask.export.report import decimate
        from cindra_dask.store import REGISTRATION, stage_path

        opened = store_at(store)
        group = stage_path(plane, REGISTRATION)
        if f"{group}/rigid_offsets" not in opened:
            raise InputError(f"{opened.path}: plane {plane} is not registered yet (no {group}/rigid_offsets)")
        offsets = opened.read(f"{group}/rigid_offsets")
        correlations = opened.read(f"{group}/rigid_correlations")
        bad = opened.read(f"{group}/bad_frames") if f"{group}/bad_frames" in opened else np.zeros(0, bool)

        def series(values: np.ndarray) -> models.Series:
            frames, kept = decimate(values, max_points=max_points)
            return models.Series(frame=frames.astype(int).tolist(), value=models.finite(kept.tolist()))

        return models.RegistrationOffsets(plane=plane, frame_count=len(offsets), dy_px=series(offsets[:, 0]), dx_px=series(offsets[:, 1]), correlation=series(correlations), bad_frames=int(np.count_nonzero(bad)))

    @server.tool()
    @tool_errors
    def summary_image(
        store: StorePath,
        plane: Plane = 0,
        image: Literal[tuple(SUMMARY_IMAGES)] = "mean_image",  # type: ignore[valid-type]
    ) -> Image:
        """A plane's summary image as a PNG (contrast clipped to its 1st-99th percentiles; subsampled beyond the size cap)."""
        from cindra_dask.export.report import encode_png, to_uint8
        from cindra_dask.store import stage_path

        opened = store_at(store)
        array_path = f"{stage_path(plane, SUMMARY_IMAGES[image])}/{image}"
        if array_path not in opened:
            raise InputError(f"{opened.path}: no {array_path} (its step has not run)")
        pixels = opened.read(array_path)
        step = max(1, -(-max(pixels.shape) // MAX_IMAGE_SIDE_PX))
        return Image(data=encode_png(to_uint8(pixels[::step, ::step])), format="png")

    @server.tool()
    @tool_errors
    def build_report(
        store: StorePath,
        output: Annotated[str | None, Field(description="HTML file to write (None: <name>_report.html beside the store).")] = None,
    ) -> models.FileWritten:
        """Write the store's self-contained HTML quality-control report (images with ROI outlines, offsets, traces, timings)."""
        from cindra_dask.export.report import default_report_path, write_report

        opened = store_at(store)
        target = roots.writable_path(output if output is not None else default_report_path(opened.path), what="output")
        return models.FileWritten(path=str(write_report(opened.path, target)))

    @server.tool()
    @tool_errors
    def export_suite2p(
        store: StorePath,
        output: Annotated[str, Field(description="Folder to receive plane0/, plane1/, ... (suite2p's <save_path0>/suite2p).")],
        overwrite: bool = False,
    ) -> models.FilesWritten:
        """suite2p-compatible files per plane (stat.npy, F.npy, Fneu.npy, spks.npy, iscell.npy, ops.npy), loadable in suite2p's GUI."""
        from cindra_dask.export import export_suite2p as export

        opened = store_at(store)
        target = roots.writable_path(output, what="output")
        written = export(opened.path, target, overwrite=overwrite)
        return models.FilesWritten(folder=str(target), file_count=len(written), files=[str(path) for path in written[:MAX_LISTED]])

    @server.tool()
    @tool_errors
    def export_nwb(
        store: StorePath,
        output: Annotated[str, Field(description="The .nwb file to write.")],
        movie: Annotated[
            Literal["none", "registered", "external"],
            Field(description="none; registered: the motion-corrected movie written into the file; external: the raw TIFFs linked by relative path (one-plane, one-channel TIFF input)."),
        ] = "none",
        metadata: Annotated[dict[str, Any] | None, Field(description="Metadata fields to set: {'metadata.subject_id': 'm12', ...}.")] = None,
        tracking_dataset: Annotated[str | None, Field(description="A multi-recording dataset the store was tracked in: adds its track_id and track_confidence columns.")] = None,
        overwrite: bool = False,
    ) -> models.NwbWritten:
        """One NWB file: imaging planes, ROI masks and classes, traces as (time, rois), motion offsets, summary images, optionally the movie and track ids."""
        from cindra_dask.export.nwb import export_nwb as export
        from cindra_dask.export.nwb import resolve_metadata

        opened = store_at(store)
        target = roots.writable_path(output, what="output")
        resolved = resolve_metadata(opened.path, overrides=_override_strings(metadata or {}))
        exported = export(opened.path, target, metadata=resolved, movie=movie, tracking_dataset=tracking_dataset, overwrite=overwrite)
        return models.NwbWritten(path=str(exported.path), identifier=exported.identifier, planes=list(exported.planes), roi_counts=list(exported.roi_counts))

    @server.tool()
    @tool_errors
    def tracked_cells(
        path: Annotated[str, Field(description="The multi-recording configuration YAML (after its discover and extract ran).")],
        start: Annotated[int, Field(ge=0, description="First tracked cell.")] = 0,
        stop: Annotated[int | None, Field(ge=0, description=f"Cell after the last (None: start + {MAX_TABLE_ROWS} or the end).")] = None,
    ) -> models.TrackedCells:
        """Tracked cells × recordings: each cell's track id, confidence, recordings it was found in, and its ROI in each."""
        from cindra_dask.config import MultiRecordingConfiguration
        from cindra_dask.export.tracked import tracked_cells as read_tracked

        config_path, configuration = configuration_at(path, {}, cluster=[])
        if not isinstance(configuration, MultiRecordingConfiguration):
            raise ConfigurationError(f"{config_path}: not a multi-recording configuration (pipeline_type); tracked cells come from a multi-recording run")
        cells = read_tracked(configuration)
        start, stop = _page(start, stop, length=len(cells.track_confidence), cap=MAX_TABLE_ROWS, what="tracked cells")
        return models.TrackedCells(
            dataset_name=cells.dataset_name,
            recording_names=list(cells.recording_names),
            track_count=len(cells.track_confidence),
            start=start,
            stop=stop,
            track_id=list(range(start, stop)),
            track_confidence=models.finite(cells.track_confidence[start:stop].astype(np.float64).tolist()),
            recording_count=cells.recording_count[start:stop].tolist(),
            roi_index=cells.roi_index[start:stop].tolist(),
        )

    return server


def serve(*, roots: PathRoots, http: str | None) -> None:
    """Serve the tools over standard input/output, or over streamable HTTP at ``http`` (``HOST:PORT`` or
    ``PORT``, host 127.0.0.1 by default) until interrupted."""
    server = build_server(roots=roots)
    if http is None:
        server.run("stdio")
        return
    host, _, port = http.rpartition(":")
    if not port.isdigit():
        raise ConfigurationError(f"--http {http}: expected HOST:PORT or PORT, e.g. 127.0.0.1:8765")
    server.run("streamable-http", host=host or "127.0.0.1", port=int(port))
