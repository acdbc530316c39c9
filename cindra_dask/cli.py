"""The ``cindra-dask`` command: configure, validate, run, simulate, status, demo.

Every user-facing error is printed as ``error: <file or field>: <what is wrong and what to do>``
(one line per problem, no traceback) with exit code 2.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

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
    """Print CindraErrors as one line per problem and exit 2; warnings as one line each."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = warnings.showwarning
        warnings.showwarning = _format_warning
        try:
            return command(*args, **kwargs)
        except CindraError as error:
            for problem in error.problems:
                typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: finished phases are kept; rerun the same command to resume", err=True)
            raise typer.Exit(code=130) from None
        finally:
            warnings.showwarning = previous

    return wrapper


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
    from cindra_dask.config import PIPELINE_MODELS, configuration_from_mapping, configuration_template, parse_overrides

    if output.exists() and not overwrite:
        raise CindraError(f"{output}: exists; pass --overwrite to replace it")
    values = configuration_from_mapping({}, source="defaults", overrides=parse_overrides(set_values or []), model=PIPELINE_MODELS[pipeline.value])
    output.write_text(configuration_template(pipeline.value, values=values))
    typer.echo(f"wrote {output}; set file_io.data_path and file_io.output_path, then run `cindra-dask validate {output}`")


@app.command()
@user_errors
def validate(
    config: Annotated[Path, typer.Argument(help="Configuration YAML.")],
    set_values: SetOption = None,
) -> None:
    """Preflight: check configuration, TIFFs, acquisition parameters, output and memory; write nothing."""
    from cindra_dask.config import SingleRecordingConfiguration, load_configuration
    from cindra_dask.pipeline import preflight

    configuration = load_configuration(config, overrides=set_values or ())
    if not isinstance(configuration, SingleRecordingConfiguration):
        typer.echo(f"{config}: multi-recording configuration is valid (its phases are not available yet)")
        return
    context = preflight(configuration)
    plan = context.plan
    typer.echo(
        f"{config}: OK — {len(plan.files)} TIFF files, {plan.frames_per_plane} frames × {len(plan.virtual_planes)} planes × {plan.channel_number} channels "
        f"of {plan.files[0].page_shape[0]}×{plan.frame_width} {plan.dtype}; chunks of {plan.chunk_frames} frames; store {context.store.path}"
    )


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
    from cindra_dask.config import SingleRecordingConfiguration, load_configuration
    from cindra_dask.pipeline import run_multi_recording, run_single_recording

    overrides = list(set_values or [])
    if workers is not None:
        overrides.append(f"cluster.workers={workers}")
    if scheduler_address is not None:
        overrides.append(f"cluster.scheduler_address={scheduler_address}")
    configuration = load_configuration(config, overrides=overrides)
    show_progress = False if no_progress else None
    if isinstance(configuration, SingleRecordingConfiguration):
        if target_recording is not None:
            raise CindraError("--target-recording applies to multi-recording configurations only")
        report = run_single_recording(configuration, phases=phase, target_plane=target_plane, force=force, show_progress=show_progress)
    else:
        report = run_multi_recording(configuration, phases=phase, target_recording=target_recording, force=force, show_progress=show_progress)
    typer.echo(f"results: {report.store_path}")


@app.command()
@user_errors
def status(store: Annotated[Path, typer.Argument(help="A recording store (<name>.zarr).")]) -> None:
    """Show each phase's state, configuration hash and timing, and every array's shape."""
    from cindra_dask.pipeline import store_status

    for line in store_status(store):
        typer.echo(line)


@app.command()
@user_errors
def simulate(
    output: Annotated[Path, typer.Argument(help="Directory to write the TIFFs, cindra_parameters.json and ground_truth.npz into.")],
    set_values: Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Simulation parameter: field=value (see `cindra_dask.simulate.SimulationParameters`). Repeatable.")] = None,
) -> None:
    """Write a simulated two-photon recording with its ground truth (the project's test bench)."""
    from cindra_dask.config import parse_overrides
    from cindra_dask.simulate import SimulationParameters, write_recording

    parameters = _simulation_parameters(SimulationParameters, dict(parse_overrides(set_values or [])))
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


@app.command()
@user_errors
def demo(
    directory: Annotated[Optional[Path], typer.Argument(help="Where to put the simulated data and results (default: a new temporary directory).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Local worker processes.")] = 2,
    frames: Annotated[int, typer.Option("--frames", help="Frames of the simulated recording.")] = 600,
    size: Annotated[int, typer.Option("--size", help="Frame height and width (px).")] = 128,
) -> None:
    """Simulate a small recording and run every available phase on a LocalCluster."""
    from cindra_dask.config import ClusterSettings, FileIOSettings, RuntimeSettings, SingleRecordingConfiguration, save_configuration
    from cindra_dask.pipeline import run_single_recording, store_status
    from cindra_dask.simulate import SimulationParameters, write_recording

    directory = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="cindra-dask-demo-"))
    data_path = directory / "data" / "demo_recording"
    parameters = SimulationParameters(frame_height=size, frame_width=size, frame_count=frames, cell_count=max(10, size * size // 550), seed=1)
    if not (data_path / "ground_truth.npz").exists():
        typer.echo(f"simulating {frames} frames of {size}×{size} into {data_path} ...")
        write_recording(parameters, data_path)
    configuration = SingleRecordingConfiguration(
        runtime=RuntimeSettings(display_progress_bars=True),
        main={"tau": parameters.tau_s},
        file_io=FileIOSettings(data_path=data_path, output_path=directory / "results"),
        cluster=ClusterSettings(workers=workers, dashboard_address=":0"),
    )
    config_path = save_configuration(configuration, directory / "demo_configuration.yaml")
    started = time.time()
    report = run_single_recording(configuration)
    typer.echo("")
    for line in store_status(report.store_path):
        typer.echo(line)
    unavailable = [outcome.name for outcome in report.outcomes if outcome.state == "unavailable"]
    typer.echo(f"\ndemo finished in {time.time() - started:.1f} s; configuration: {config_path}; results: {report.store_path}")
    if unavailable:
        typer.echo(f"not available in this version yet: {', '.join(unavailable)}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
