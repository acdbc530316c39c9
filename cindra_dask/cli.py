"""The ``cindra-dask`` command: configure, validate, run, submit, simulate, status, demo, export (suite2p, NWB, tracked), report, view, mcp.

Every user-facing error is printed as ``error: <file or field>: <what is wrong and what to do>``
(one line per problem, no traceback) with exit code 2.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import tempfile
import threading
import time
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import typer

from cindra_dask.errors import CindraError

app = typer.Typer(
    name="cindra-dask",
    help=(
        "Calcium-imaging pipeline (suite2p/cindra algorithms) as Dask graphs over Zarr stores.\n\n"
        "Typical use: `cindra-dask configure my.yaml --set file_io.data_path=/data/rec1 --set file_io.output_path=/results`, "
        "then `cindra-dask validate my.yaml`, then `cindra-dask run my.yaml`. `cindra-dask demo` runs everything on simulated data."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class PipelineChoice(str, Enum):
    single = "single-recording"
    multi = "multi-recording"


def _format_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print CindraErrors as one line per problem and exit 2; warnings as one line each, every
    command showing its own (a fresh warnings state, so a command run in-process twice warns twice)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings(), _interrupts_never_dropped():
            warnings.simplefilter("default")
            warnings.showwarning = _format_warning
            try:
                return command(*args, **kwargs)
            except CindraError as error:
                for problem in error.problems:
                    typer.echo(f"error: {problem}", err=True)
                raise typer.Exit(code=2) from None
            except KeyboardInterrupt:
                if threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a resent Ctrl-C arriving now is not a second traceback
                typer.echo("interrupted: finished phases are kept; rerun the same command to resume", err=True)
                raise typer.Exit(code=130) from None

    return wrapper


@contextlib.contextmanager
def _interrupts_never_dropped() -> Iterator[None]:
    """While a command runs (main thread only, as signal handlers), Ctrl-C raises KeyboardInterrupt,
    whatever handler an imported library installed (importing dask_jobqueue replaces it with
    ``sys.exit()``, which would end the run with exit code 0 and no message). Ctrl-C that lands in a
    garbage-collector callback (distributed's GC diagnosis, a ``__del__``) is printed as "Exception
    ignored" and dropped by Python, and the run would go on to the end: such a dropped
    KeyboardInterrupt is not printed and the signal is sent again a moment later, so it reaches the
    code that shuts the cluster down."""
    import os

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def resend_dropped_interrupt(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            threading.Timer(INTERRUPT_RESEND_DELAY_S, os.kill, (os.getpid(), signal.SIGINT)).start()
        else:
            previous_hook(unraisable)

    previous_hook, previous_handler = sys.unraisablehook, signal.getsignal(signal.SIGINT)
    sys.unraisablehook = resend_dropped_interrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGINT, previous_handler)


INTERRUPT_RESEND_DELAY_S = 0.05


class TerminalEvents:
    """How a run looks on standard error: one line per message; per computation (unless
    ``progress_bars`` is false) a progress bar redrawn in place in a terminal, or, where standard
    error is not one (a SLURM log, a pipe), a line at every `LINE_PERCENT_STEP` % done and at least
    every `LOG_INTERVAL_S`, each with the percentage of tasks done and the time elapsed."""

    LOG_INTERVAL_S = 30.0
    LINE_PERCENT_STEP = 10

    def __init__(self, *, progress_bars: bool) -> None:
        self.progress_bars = progress_bars

    def message(self, text: str) -> None:
        typer.echo(text, err=True)

    def computing(self, label: str, future: Any, client: Any) -> None:
        if self.progress_bars:
            _show_progress(label, future, client, terminal=sys.stderr.isatty(), percent_step=self.LINE_PERCENT_STEP, interval_s=self.LOG_INTERVAL_S)


def _show_progress(label: str, future: Any, client: Any, *, terminal: bool, percent_step: int, interval_s: float) -> None:
    """Follow ``future``'s tasks on ``client``'s scheduler until it is done (see `TerminalEvents`)."""
    from cindra_dask.runner.events import follow_progress

    width = 30
    lines = {"next_percent": 0, "last_line_s": 0.0}

    def update(remaining: int, total: int, elapsed_s: float) -> None:
        percent = int(100 * (1 - remaining / total)) if total else 100
        if terminal:
            bar = "#" * (width * percent // 100)
            sys.stderr.write(f"\r{label}: [{bar:<{width}}] {percent:3d}% | {elapsed_s:.1f} s")
            sys.stderr.flush()
        elif percent < 100 and (percent >= lines["next_percent"] or elapsed_s - lines["last_line_s"] >= interval_s):
            typer.echo(f"{label}: {percent}% of {total} tasks, {elapsed_s:.0f} s", err=True)
            lines["next_percent"], lines["last_line_s"] = (percent // percent_step + 1) * percent_step, elapsed_s

    def stop(total: int, status: str, elapsed_s: float) -> None:
        ending = f"100% of {total} tasks in {elapsed_s:.1f} s" if status == "finished" else f"{status} after {elapsed_s:.1f} s"
        typer.echo(("\r\33[2K" if terminal else "") + f"{label}: {ending}", err=True)

    follow_progress(future, client, interval="100ms" if terminal else "1s", update=update, stop=stop)


SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a configuration field: section.field=value (value read as YAML). Repeatable."),
]


@app.command()
@user_errors
def configure(
    output: Annotated[Path, typer.Argument(help="YAML file to write (refuses to overwrite unless --overwrite).")],
    pipeline: Annotated[PipelineChoice, typer.Option("--pipeline", "-p", help="single-recording or multi-recording.")] = PipelineChoice.single,
    set_values: SetOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Write a commented configuration file: every field with its meaning, bounds and default."""
    from cindra_dask.config import write_configuration_file

    unset = [line.split(":")[0] for line in write_configuration_file(output, pipeline_type=pipeline.value, overrides=set_values or [], overwrite=overwrite)]
    todo = f"set {' and '.join(unset)} in it (or with --set), then " if unset else ""
    typer.echo(f"wrote {output}; {todo}run `cindra-dask validate {output}`")


@app.command()
@user_errors
def validate(
    config: Annotated[Path, typer.Argument(help="Configuration YAML.")],
    set_values: SetOption = None,
) -> None:
    """Preflight: check configuration, movie files, acquisition parameters (and where they come from), output and memory; write nothing."""
    from cindra_dask.config import load_configuration
    from cindra_dask.runner.validation import describe_preflight

    for line in describe_preflight(load_configuration(config, overrides=set_values or ()), source=str(config)).lines:
        typer.echo(line)


@app.command()
@user_errors
def run(
    config: Annotated[Path, typer.Argument(help="Configuration YAML (single- or multi-recording; detected from pipeline_type).")],
    phase: Annotated[Optional[list[str]], typer.Option("--phase", help="Run only these phases (repeatable): ingest, process, combine; or discover, extract.")] = None,
    target_plane: Annotated[Optional[int], typer.Option("--target-plane", help="Process only this plane (per-plane phases).")] = None,
    target_recording: Annotated[Optional[str], typer.Option("--target-recording", help="Multi-recording: extract only this recording.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Local worker processes (overrides cluster.workers).")] = None,
    scheduler_address: Annotated[Optional[str], typer.Option("--scheduler-address", help="Use a running Dask scheduler (overrides cluster.scheduler_address).")] = None,
    set_values: SetOption = None,
    force: Annotated[bool, typer.Option("--force", help="Rerun the selected phases even if complete.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
) -> None:
    """Run the pipeline; complete phases with an unchanged configuration are skipped (resume)."""
    from cindra_dask.config import cluster_overrides, load_configuration
    from cindra_dask.pipeline import run_configuration

    configuration = load_configuration(config, overrides=[*(set_values or []), *cluster_overrides(workers=workers, scheduler_address=scheduler_address)])
    events = TerminalEvents(progress_bars=configuration.runtime.display_progress_bars and not no_progress)
    report = run_configuration(configuration, phases=phase, target_plane=target_plane, target_recording=target_recording, force=force, events=events)
    typer.echo(f"results: {report.store_path}")


@app.command()
@user_errors
def submit(
    config: Annotated[Path, typer.Argument(help="Configuration YAML (single- or multi-recording; detected from pipeline_type).")],
    scheduler_address: Annotated[Optional[str], typer.Option("--scheduler-address", help="The running Dask scheduler (tcp://HOST:8786; overrides cluster.scheduler_address).")] = None,
    set_values: SetOption = None,
) -> None:
    """Start the whole run on a running Dask scheduler and return at once with its run id.

    The run is one task on a worker that drives the pipeline's graphs on the cluster, so it goes on
    after this command (and the machine it ran on) disconnects. The configuration and the movie files
    are checked here first, as `run` does; the workers must see the same paths (a shared file system).
    Follow it with `cindra-dask status STORE` (running, failed with its error, or complete; each step);
    after a failure, submit again: complete steps are skipped.
    """
    from cindra_dask.config import cluster_overrides, load_configuration
    from cindra_dask.runner.submit import submit_run

    configuration = load_configuration(config, overrides=[*(set_values or []), *cluster_overrides(workers=None, scheduler_address=scheduler_address)])
    submitted = submit_run(configuration)
    typer.echo(f"submitted run {submitted.run_id} to {submitted.scheduler_address}")
    for store in submitted.stores:
        typer.echo(f"follow it with: cindra-dask status {store.path}")


@app.command()
@user_errors
def status(store: Annotated[Path, typer.Argument(help="A recording store (<name>.zarr).")]) -> None:
    """Show each phase's state, configuration hash and timing, runs started with `submit`, and every array's shape."""
    from cindra_dask.pipeline import store_status

    for line in store_status(store):
        typer.echo(line)


@app.command()
@user_errors
def simulate(
    output: Annotated[Path, typer.Argument(help="Directory to write the TIFFs, cindra_parameters.json and ground_truth.npz into.")],
    set_values: Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Simulation parameter: field=value (see `cindra_dask.simulate.SimulationParameters`). Repeatable.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a simulated recording already in the folder (its TIFFs, parameters and ground truth are removed first).")] = False,
) -> None:
    """Write a simulated two-photon recording with its ground truth (the project's test bench) into a new or empty folder."""
    from cindra_dask.config import parse_overrides
    from cindra_dask.simulate import SimulationParameters, prepare_output_directory, write_recording

    parameters = _simulation_parameters(SimulationParameters, dict(parse_overrides(set_values or [])))
    prepare_output_directory(output, overwrite=overwrite)
    started = time.time()
    write_recording(parameters, output)
    typer.echo(f"wrote {parameters.frame_count} frames × {parameters.plane_count} planes × {parameters.channel_count} channels to {output} in {time.time() - started:.1f} s")


def _simulation_parameters(model: Any, values: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from cindra_dask.config import _describe_validation_error
    from cindra_dask.errors import ConfigurationError

    try:
        return model(**values)
    except ValidationError as error:
        raise ConfigurationError(*_describe_validation_error(error, source="simulate --set")) from error


README_SIMULATOR_FRAMES = 2000
"""Frames of the recording README.md's simulator figures were measured on."""


@app.command()
@user_errors
def demo(
    directory: Annotated[Optional[Path], typer.Argument(help="Where to put the simulated data and results (default: a new temporary directory).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Local worker processes.")] = 2,
    frames: Annotated[int, typer.Option("--frames", help=f"Frames of the simulated recording (README.md's figures are for {README_SIMULATOR_FRAMES}).")] = 1000,
    size: Annotated[int, typer.Option("--size", help="Frame height and width (px).")] = 256,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars or progress lines.")] = False,
    one_photon: Annotated[
        bool, typer.Option("--one-photon", help="A one-photon (miniscope) recording instead: UCLA Miniscope V4 AVIs, 20 Hz, glow ≈ 20× a spike's dF, processed with CNMF-E (config.CNMF_E_PRESET).")
    ] = False,
) -> None:
    """Simulate a small recording, run the whole pipeline on a LocalCluster and score it against the truth."""
    from cindra_dask.config import CNMF_E_PRESET, ClusterSettings, FileIOSettings, RuntimeSettings, SingleRecordingConfiguration, save_configuration
    from cindra_dask.export.report import write_report
    from cindra_dask.pipeline import run_single_recording
    from cindra_dask.runner.status import store_summary
    from cindra_dask.simulate import SimulationParameters, one_photon_parameters, write_miniscope_recording, write_recording
    from cindra_dask.simulate.files import GROUND_TRUTH_FILE_NAME

    directory = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="cindra-dask-demo-"))
    data_path = directory / "data" / ("demo_miniscope" if one_photon else "demo_recording")
    shape = {"frame_height": size, "frame_width": size, "frame_count": frames}
    if one_photon:
        parameters = one_photon_parameters(**shape, cell_count=max(10, size * size // 400), seed=1)
    else:
        parameters = SimulationParameters(**shape, cell_count=max(10, size * size // 550), seed=1)
    typer.echo(
        f"demo: {'one-photon, ' if one_photon else ''}{frames} frames of {size}×{size} px at {parameters.plane_frame_rate_hz:g} Hz ({frames / parameters.plane_frame_rate_hz:.0f} s) with {parameters.cell_count} simulated cells, "
        f"on {workers} local worker{'s' if workers != 1 else ''}; it ends with the accuracy against the simulator's truth and the paths of the results"
    )
    if not (data_path / GROUND_TRUTH_FILE_NAME).exists():
        typer.echo(f"simulating into {data_path} ...")
        if one_photon:
            write_miniscope_recording(parameters, data_path)
        else:
            write_recording(parameters, data_path)
    configuration = SingleRecordingConfiguration(
        runtime=RuntimeSettings(display_progress_bars=not no_progress),
        main={"tau": parameters.tau_s},
        file_io=FileIOSettings(data_path=data_path, output_path=directory / "results"),
        cluster=ClusterSettings(workers=workers, dashboard_address=":0"),
        **(CNMF_E_PRESET if one_photon else {}),
    )
    config_path = save_configuration(configuration, directory / "demo_configuration.yaml")
    started = time.time()
    report = run_single_recording(configuration, events=TerminalEvents(progress_bars=not no_progress))
    elapsed = time.time() - started
    summary = store_summary(report.store_path, ground_truth=data_path / GROUND_TRUTH_FILE_NAME)
    counts, scores = list(summary.counts.values()), summary.scores[0]
    qc_report = write_report(report.store_path)
    typer.echo(f"\nfound {sum(count.rois or 0 for count in counts)} ROIs, {sum(count.cells or 0 for count in counts)} classified as cells, in {elapsed:.1f} s")
    typer.echo("accuracy against the simulator's ground truth:")
    typer.echo(f"  registration: rigid offsets {scores.rigid_offset_rms_px:.3f} px RMS; residual displacement field {scores.displacement_rms_px:.3f} px RMS")
    typer.echo(f"  detection: F1 {scores.detection_f1:.3f} (precision {scores.detection_precision:.3f}, recall {scores.detection_recall:.3f}) against active somata")
    typer.echo(f"  extraction: median trace r {scores.trace_correlation:.3f}, median spike r {scores.spike_correlation:.3f} over {scores.matched_cells} matched cells")
    if frames < README_SIMULATOR_FRAMES and not one_photon:
        typer.echo(f"  README.md's simulator figures are for {README_SIMULATOR_FRAMES} frames; with {frames} detection finds fewer of the quieter cells (`--frames {README_SIMULATOR_FRAMES}` takes about twice as long)")
    typer.echo(
        "  on your own data: these figures come from our simulator; on data we did not generate detection finds fewer quiet cells"
        " and spike r is lower (real spike ground truth: median 0.68 at 30 Hz, 0.84 at 7.5 Hz); see README.md 'Accuracy, per source of truth'"
    )
    typer.echo(f"\nQC report:     {qc_report}")
    typer.echo(f"results:       {report.store_path}  (`cindra-dask status {report.store_path}` lists every step and array)")
    typer.echo(f"configuration: {config_path}  (`cindra-dask run {config_path}` skips what is done)")


# ---------------------------------------------------------------------------------------------
# outputs: manifest, verify, reset, clean, export, report
# ---------------------------------------------------------------------------------------------

StoreArgument = Annotated[Path, typer.Argument(help="A recording store (<name>.zarr).")]


@app.command()
@user_errors
def manifest(
    store: StoreArgument,
    rehash: Annotated[bool, typer.Option("--rehash", help="Checksum every array again (by default arrays unchanged since the last manifest keep their entries).")] = False,
) -> None:
    """(Re)write <store>/datapackage.json: every array with shape, dtype, chunks and SHA-256; configuration, versions, phase timings."""
    from cindra_dask.manifest import write_manifest

    typer.echo(f"wrote {write_manifest(store, rehash=rehash)}")


@app.command()
@user_errors
def verify(store: StoreArgument) -> None:
    """Recompute every array's checksum and compare the store with its manifest (exit 1 on differences)."""
    from cindra_dask.manifest import verify_store

    differences = verify_store(store)
    for line in differences:
        typer.echo(f"difference: {line}")
    if differences:
        typer.echo(f"{store}: {len(differences)} difference(s) from the manifest", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"{store}: OK — every array matches the manifest")


@app.command()
@user_errors
def reset(
    store: StoreArgument,
    phase: Annotated[str, typer.Option("--phase", help="ingest, process or combine: removes its outputs and those of the phases after it, and forgets their records.")],
) -> None:
    """Remove a phase's outputs (and later phases'), so that the next `run` redoes them."""
    from cindra_dask.runner.maintenance import reset_store

    change = reset_store(store, phase=phase)
    typer.echo(f"{store}: removed {len(change.removed_arrays)} array(s); forgot step(s) {', '.join(change.forgotten_records) or 'none'}; `cindra-dask run` redoes them")


@app.command()
@user_errors
def clean(
    store: StoreArgument,
    registered: Annotated[bool, typer.Option("--registered", help="Remove the registered (motion-corrected) movies.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Also remove the raw frames, the store's copy of the movie files (refused if those files are gone; they are never touched).")] = False,
) -> None:
    """Remove intermediate movies to free disk space; ROIs, traces and images stay."""
    from cindra_dask.runner.maintenance import clean_store

    change = clean_store(store, what=("registered",) if registered else (), remove_raw=raw)
    if not change.removed_arrays:
        typer.echo(f"{store}: nothing to remove")
        return
    for path in change.removed_arrays:
        typer.echo(f"removed {path}")


export_app = typer.Typer(name="export", help="Write a store's results in other tools' formats.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("suite2p")
@user_errors
def export_suite2p_command(
    store: StoreArgument,
    output: Annotated[Path, typer.Argument(help="Folder to receive plane0/, plane1/, ... (suite2p's <save_path0>/suite2p).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace files of an earlier export.")] = False,
) -> None:
    """suite2p-compatible files per plane: stat.npy, F.npy, Fneu.npy, spks.npy, iscell.npy, ops.npy (loadable in the suite2p GUI)."""
    from cindra_dask.export import export_suite2p

    written = export_suite2p(store, output, overwrite=overwrite)
    planes = sorted({path.parent.name for path in written})
    typer.echo(f"wrote {len(written)} files for {', '.join(planes)} into {output}")


class MovieChoice(str, Enum):
    registered = "registered"
    external = "external"
    none = "none"


MOVIE_HELP = (
    "registered: also write the motion-corrected movie into the file (chunked, gzip; large); "
    "external: link the recording's raw TIFF files by path relative to the .nwb file (nothing copied; one-plane, one-channel TIFF recordings; keep the files beside it); "
    "none: ROIs, traces, offsets and images only."
)


@export_app.command("nwb")
@user_errors
def export_nwb_command(
    store: StoreArgument,
    output: Annotated[Path, typer.Argument(help="The .nwb file to write (refused if it exists, unless --overwrite).")],
    movie: Annotated[MovieChoice, typer.Option("--movie", help=MOVIE_HELP)] = MovieChoice.none,
    config: Annotated[Optional[Path], typer.Option("--config", help="A single-recording configuration YAML whose metadata section replaces the one recorded in the store.")] = None,
    set_values: Annotated[
        Optional[list[str]], typer.Option("--set", "-s", help="Set a metadata field: metadata.field=value (value read as YAML), e.g. metadata.subject_id=m12. Repeatable.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")] = False,
) -> None:
    """One NWB file (pynwb): imaging planes, ROI masks and classes, F, neuropil, dF/F and spikes as (time, rois), motion offsets, summary images."""
    from cindra_dask.export.nwb import export_nwb, resolve_metadata

    metadata = resolve_metadata(store, configuration_path=config, overrides=set_values or ())
    exported = export_nwb(store, output, metadata=metadata, movie=movie.value, overwrite=overwrite)
    _echo_nwb_export(exported)


def _echo_nwb_export(exported: Any) -> None:
    planes = ", ".join(f"plane {plane} ({count} ROIs)" for plane, count in zip(exported.planes, exported.roi_counts))
    typer.echo(f"wrote {exported.path}: {planes}; identifier {exported.identifier}")


@export_app.command("nwb-tracked")
@user_errors
def export_tracked_nwb_command(
    config: Annotated[Path, typer.Argument(help="The multi-recording configuration YAML (after `cindra-dask run` finished discover and extract).")],
    output: Annotated[Path, typer.Argument(help="Existing folder to receive one <recording>.nwb per recording.")],
    movie: Annotated[MovieChoice, typer.Option("--movie", help=MOVIE_HELP)] = MovieChoice.none,
    set_values: Annotated[
        Optional[list[str]], typer.Option("--set", "-s", help="Set a metadata field in every file: metadata.field=value (value read as YAML); each file starts from its recording's recorded metadata. Repeatable.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")] = False,
) -> None:
    """One NWB file per tracked recording, as `export nwb`, whose segmentation has the track_id column (the tracked cell of each ROI, shared across the files; -1: untracked)."""
    from cindra_dask.export.nwb import export_tracked_nwb

    configuration = _multi_recording_configuration(config)
    for exported in export_tracked_nwb(configuration, output, movie=movie.value, overrides=set_values or (), overwrite=overwrite):
        _echo_nwb_export(exported)


@export_app.command("tracked")
@user_errors
def export_tracked_command(
    config: Annotated[Path, typer.Argument(help="The multi-recording configuration YAML (after `cindra-dask run` finished discover and extract).")],
    output: Annotated[Path, typer.Argument(help="Folder to receive <dataset>_tracked.zarr and <dataset>_tracks.csv.")],
    trace: Annotated[str, typer.Option("--trace", help="Which traces to tabulate: subtracted_fluorescence, cell_fluorescence, neuropil_fluorescence or spikes.")] = "subtracted_fluorescence",
) -> None:
    """Tracked cells × recordings: track ids, confidences and every recording's traces in one table."""
    from cindra_dask.export.tracked import export_tracked_traces

    configuration = _multi_recording_configuration(config)
    exported = export_tracked_traces(configuration, output_path=output, trace_name=trace)
    typer.echo(f"{exported.track_count} tracked cells: {exported.zarr_path} and {exported.csv_path}")


def _multi_recording_configuration(path: Path) -> Any:
    """The `MultiRecordingConfiguration` at ``path``; a single-recording one is refused in one line."""
    from cindra_dask.config import MultiRecordingConfiguration, load_configuration
    from cindra_dask.errors import ConfigurationError

    configuration = load_configuration(path)
    if not isinstance(configuration, MultiRecordingConfiguration):
        raise ConfigurationError(f"{path}: not a multi-recording configuration (pipeline_type); tracked results come from `cindra-dask run MULTI.yaml`")
    return configuration


@app.command("import-curation")
@user_errors
def import_curation_command(
    store: StoreArgument,
    suite2p_folder: Annotated[Path, typer.Argument(help="The folder `cindra-dask export suite2p` wrote, after editing cells in suite2p's GUI (plane0/iscell.npy, ...).")],
) -> None:
    """Bring cell / not-cell labels edited in suite2p's GUI back into extraction/cell_classification (previous values kept in its curation_history)."""
    from cindra_dask.export.curation import import_curation

    for curation in import_curation(store, suite2p_folder):
        rows = ", ".join(map(str, curation.changed_rows[:20])) + (", ..." if len(curation.changed_rows) > 20 else "")
        typer.echo(f"plane {curation.plane}: {len(curation.changed_rows)} of {curation.roi_count} ROIs changed" + (f" (rows {rows})" if curation.changed_rows else ""))


@app.command()
@user_errors
def view(
    store: StoreArgument,
    port: Annotated[int, typer.Option("--port", "-p", help="Local port to serve on (0: any free port).")] = 5006,
) -> None:
    """Serve the interactive viewer of a store on this machine (ROIs and their traces, cell / not-cell curation saved in the store, registration quality and frames).

    It listens on localhost only, behind a random token in the printed URL; from another machine
    open an SSH tunnel first (`ssh -N -L PORT:localhost:PORT this-host`). Ctrl-C stops it.
    """
    from cindra_dask.view.server import start_viewer

    running = start_viewer(store, port=port)
    typer.echo(f"viewer of {store}: {running.url}")
    typer.echo(f"from another machine: ssh -N -L {running.port}:localhost:{running.port} <this host>, then open the URL there; Ctrl-C stops the viewer")
    running.server.run_until_shutdown()


@app.command()
@user_errors
def report(
    store: StoreArgument,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="HTML file to write (default: <name>_report.html beside the store).")] = None,
) -> None:
    """Write a self-contained HTML quality-control report (images with ROI outlines, offsets, traces, timings)."""
    from cindra_dask.export.report import write_report

    typer.echo(f"wrote {write_report(store, output)}")


@app.command("mcp")
@user_errors
def mcp_command(
    root: Annotated[Optional[list[Path]], typer.Option("--root", help="A folder the tools may read and write (repeatable; default: the current folder).")] = None,
    read_only_root: Annotated[Optional[list[Path]], typer.Option("--read-only-root", help="A folder the tools may only read, e.g. the movie files (repeatable).")] = None,
    http: Annotated[Optional[str], typer.Option("--http", help="Serve streamable HTTP at HOST:PORT (or PORT, on 127.0.0.1) instead of standard input/output.")] = None,
) -> None:
    """Serve the pipeline as Model Context Protocol tools for AI agents (needs the 'mcp' extra): configure, validate, run in the background, status, results, exports."""
    try:
        from cindra_dask.mcp.server import serve
    except ModuleNotFoundError as error:
        raise CindraError(f"cindra-dask mcp needs the MCP SDK ({error.name} is missing): pip install 'cindra-dask[mcp]'") from error
    from cindra_dask.mcp.roots import PathRoots

    serve(roots=PathRoots.of(writable=tuple(root or [Path.cwd()]), read_only=tuple(read_only_root or [])), http=http)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
