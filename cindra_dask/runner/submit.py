"""Submit and return: a whole run handed to a running scheduler, which goes on after the client leaves.

`submit_run` checks the configuration and inputs here (the preflight of `cindra-dask run`, writing
nothing), connects to ``cluster.scheduler_address``, writes each store's `SubmittedRunRecord`
("submitted") and submits `run_submitted` as one task, kept by ``fire_and_forget``. That task is the
runner itself: on a worker it secedes from the worker's thread pool (``worker_client``) and drives
the same step loop as `cindra-dask run` through that worker's client, so the pipeline's graphs run on
the whole cluster and nothing depends on the submitting process. The run records its state in each
store ("running" with its worker's host and pid, then "complete" or "failed" with the error in one
line); the phase records and the store's lock are as in any run, so `cindra-dask status` shows its
progress, and a resubmission after a failure skips the steps already complete.

The workers must see the data and output paths as the submitting machine does (a shared file system).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import NamedTuple

from cindra_dask.config import Configuration, SingleRecordingConfiguration
from cindra_dask.errors import CindraError, ConfigurationError
from cindra_dask.store import RecordingStore, SubmittedRunRecord, utc_timestamp

RUN_KEY_PREFIX = "cindra-dask-run-"
"""The Dask key of a submitted run's task is this prefix and its run id."""


class SubmittedRun(NamedTuple):
    """A run handed to a scheduler: its id, the scheduler and the stores it writes (whose records it keeps)."""

    run_id: str
    scheduler_address: str
    stores: tuple[RecordingStore, ...]


def run_stores(configuration: Configuration) -> tuple[RecordingStore, ...]:
    """The stores a run of ``configuration`` writes, after its preflight (a :class:`CindraError` on bad input; nothing written)."""
    from cindra_dask.runner.context import preflight
    from cindra_dask.runner.multi_context import preflight_multi_recording

    if isinstance(configuration, SingleRecordingConfiguration):
        return (preflight(configuration).store,)
    return tuple(recording.store for recording in preflight_multi_recording(configuration).recordings)


def submit_run(configuration: Configuration, *, connect_timeout_s: float = 20.0) -> SubmittedRun:
    """Check ``configuration``, submit its whole run to ``cluster.scheduler_address`` and return at once.

    Raises
    ------
    ConfigurationError : no scheduler address, or none reachable within ``connect_timeout_s`` (nothing written).
    CindraError : what the preflight of a run finds (nothing written).
    """
    from distributed import fire_and_forget

    from cindra_dask.cluster import cluster_client

    address = configuration.cluster.scheduler_address
    if not address:
        raise ConfigurationError("cluster.scheduler_address: submit needs a running Dask scheduler; give --scheduler-address tcp://HOST:8786 or set cluster.scheduler_address")
    stores = run_stores(configuration)
    with cluster_client(configuration.cluster, connect_timeout_s=connect_timeout_s) as client:
        run_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        record = SubmittedRunRecord(run_id, "submitted", address, utc_timestamp(time.time()))
        for store in stores:
            store.write_run_record(record)
        future = client.submit(run_submitted, configuration, record=record, store_paths=[str(store.path) for store in stores], key=RUN_KEY_PREFIX + run_id, pure=False)
        fire_and_forget(future)
    return SubmittedRun(run_id, address, stores)


def run_submitted(configuration: Configuration, *, record: SubmittedRunRecord, store_paths: list[str]) -> tuple[str, ...]:
    """The submitted run, as a task on a worker: `cindra_dask.pipeline.run_configuration` through the
    worker's client (seceded, so its thread drives graphs and computes nothing), recording its state in
    the stores at ``store_paths``; "step: ran|skipped" of each step. A failure is recorded, then raised
    (the worker logs it)."""
    from distributed import worker_client

    from cindra_dask.pipeline import run_configuration

    stores = [RecordingStore(path) for path in store_paths]
    record = record._replace(state="running", started=utc_timestamp(time.time()), host=socket.gethostname(), pid=os.getpid())
    for store in stores:
        store.write_run_record(record)
    try:
        with worker_client() as client:
            report = run_configuration(configuration, client=client)
    except BaseException as error:
        failed = record._replace(state="failed", finished=utc_timestamp(time.time()), error=error_line(error))
        for store in stores:
            store.write_run_record(failed)
        raise
    outcomes = tuple(f"{outcome.name}: {outcome.state}" for outcome in report.outcomes)
    for store in stores:
        store.write_run_record(record._replace(state="complete", finished=utc_timestamp(time.time()), outcomes=outcomes))
    return outcomes


def error_line(error: BaseException) -> str:
    """One line for a failed run: a :class:`CindraError`'s problems joined, else the exception's type and first line."""
    if isinstance(error, CindraError):
        return "; ".join(error.problems)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
