"""The notebook entry points: run a pipeline, check a configuration, read a store's status.

Thin re-exports of `cindra_dask.runner` (which holds the step tables, the skip-or-run loop,
preflight and execution)::

    from distributed import Client
    from cindra_dask.config import load_configuration
    from cindra_dask.pipeline import run_single_recording

    report = run_single_recording(load_configuration("my.yaml"), client=Client())
"""

from __future__ import annotations

from cindra_dask.runner.context import RecordingContext, preflight
from cindra_dask.runner.execution import run_plan
from cindra_dask.runner.loop import PhaseOutcome, RunReport
from cindra_dask.runner.multi import run_multi_recording
from cindra_dask.runner.multi_context import preflight_multi_recording
from cindra_dask.runner.single import run_single_recording
from cindra_dask.runner.status import store_status

__all__ = [
    "PhaseOutcome",
    "RecordingContext",
    "RunReport",
    "preflight",
    "preflight_multi_recording",
    "run_multi_recording",
    "run_plan",
    "run_single_recording",
    "store_status",
]
