"""The notebook entry points: run a pipeline, check a configuration, read a store's status.

Re-exports of `cindra_dask.runner` (which holds the step tables, the skip-or-run loop, preflight
and execution) and `run_configuration`, the one dispatch to either pipeline (the CLI's ``run`` and
the MCP server's ``start_run`` call it)::

    from distributed import Client
    from cindra_dask.config import load_configuration
    from cindra_dask.pipeline import run_single_recording

    report = run_single_recording(load_configuration("my.yaml"), client=Client())
"""

from __future__ import annotations

from typing import Any, Sequence

from cindra_dask.config import Configuration, SingleRecordingConfiguration
from cindra_dask.errors import ConfigurationError
from cindra_dask.runner.events import RunEvents
from cindra_dask.runner.context import RecordingContext, preflight
from cindra_dask.runner.execution import run_plan
from cindra_dask.runner.loop import PhaseOutcome, RunReport
from cindra_dask.runner.multi import run_multi_recording
from cindra_dask.runner.multi_context import preflight_multi_recording
from cindra_dask.runner.single import run_single_recording
from cindra_dask.runner.status import store_status



def run_configuration(
    configuration: Configuration,
    *,
    client: Any | None = None,
    phases: Sequence[str] | None = None,
    target_plane: int | None = None,
    target_recording: str | None = None,
    force: bool = False,
    events: RunEvents | None = None,
) -> RunReport:
    """Run a single- or multi-recording configuration (`run_single_recording`, `run_multi_recording`);
    ``target_plane`` applies to the first only (the second ignores it), ``target_recording`` to the second only."""
    if isinstance(configuration, SingleRecordingConfiguration):
        if target_recording is not None:
            raise ConfigurationError("--target-recording applies to multi-recording configurations only")
        return run_single_recording(configuration, client=client, phases=phases, target_plane=target_plane, force=force, events=events)
    return run_multi_recording(configuration, client=client, phases=phases, target_recording=target_recording, force=force, events=events)


__all__ = [
    "PhaseOutcome",
    "RecordingContext",
    "RunReport",
    "preflight",
    "preflight_multi_recording",
    "run_multi_recording",
    "run_configuration",
    "run_plan",
    "run_single_recording",
    "store_status",
]
