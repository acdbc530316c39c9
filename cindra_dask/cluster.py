"""A ``distributed.Client`` from the ``cluster`` section: LocalCluster, a scheduler address, or dask-jobqueue.

Only the CLI and the runner build clients; library functions accept one. Nothing here writes the
user's Dask configuration.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

from cindra_dask.config import ClusterSettings, JobqueueKind
from cindra_dask.errors import ConfigurationError

_JOBQUEUE_CLASSES = {
    JobqueueKind.SLURM: "SLURMCluster",
    JobqueueKind.PBS: "PBSCluster",
    JobqueueKind.LSF: "LSFCluster",
    JobqueueKind.SGE: "SGECluster",
}


def local_worker_count(settings: ClusterSettings) -> int:
    """Worker processes of a LocalCluster: ``workers``, or one per core (at least 1)."""
    if settings.workers:
        return settings.workers
    return max(1, (os.cpu_count() or 1) // settings.threads_per_worker)


def build_cluster(settings: ClusterSettings) -> Any:
    """The cluster object the settings describe (a jobqueue cluster is built but not yet scaled)."""
    if settings.jobqueue is not None:
        try:
            import dask_jobqueue
        except ImportError as error:
            raise ConfigurationError("cluster.jobqueue: dask-jobqueue is not installed; install the 'hpc' extra (pip install 'cindra-dask[hpc]')") from error
        cluster_class = getattr(dask_jobqueue, _JOBQUEUE_CLASSES[settings.jobqueue])
        try:
            cluster = cluster_class(**settings.jobqueue_options)
        except (TypeError, ValueError) as error:
            raise ConfigurationError(f"cluster.jobqueue_options: {str(error).splitlines()[0]}; see the dask-jobqueue documentation of {cluster_class.__name__}") from error
        return cluster
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=local_worker_count(settings),
        threads_per_worker=settings.threads_per_worker,
        memory_limit=settings.memory_limit_per_worker,
        dashboard_address=settings.dashboard_address,
        processes=True,
    )


@contextlib.contextmanager
def cluster_client(settings: ClusterSettings, *, announce: bool = True, connect_timeout_s: float = 20.0) -> Iterator[Any]:
    """Connect to (or start) the cluster the settings describe; close what was started on exit.

    Prints the dashboard link to stderr when ``announce`` is true; gives up reaching a scheduler
    address after ``connect_timeout_s``.
    """
    from distributed import Client

    if settings.scheduler_address:
        try:
            client = Client(settings.scheduler_address, timeout=f"{connect_timeout_s}s")
        except OSError as error:
            raise ConfigurationError(f"cluster.scheduler_address: cannot reach {settings.scheduler_address} ({error}); is the scheduler running?") from error
        cluster = None
    else:
        cluster = build_cluster(settings)
        if settings.jobqueue is not None:
            cluster.scale(jobs=max(1, settings.workers))
        client = Client(cluster)
    try:
        if announce:
            workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
            print(f"Dask cluster: {workers} workers; dashboard: {client.dashboard_link}", file=sys.stderr)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
