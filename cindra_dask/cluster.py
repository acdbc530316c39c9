"""A ``distributed.Client`` from the ``cluster`` section: LocalCluster, a scheduler address, or dask-jobqueue, fixed or adaptive.

Only the CLI and the runner build clients; library functions accept one. Nothing here writes the
user's Dask configuration.

Worker memory allocator: Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which
(in glibc) also fixes the mmap threshold at 128 KiB, so every temporary array above 128 KiB is a
fresh mmap whose pages fault in on first touch. Our kernels allocate many such temporaries per
frame batch and ran 1.4× slower in a worker than in a plain process (rigid estimation 2×).
`tune_workers` installs a worker plugin that keeps blocks below `MMAP_THRESHOLD_BYTES` in the heap
and pads its top by `TOP_PAD_BYTES` (trimming beyond that stays on). It changes only these two
allocator parameters, in the worker processes of any cluster the runner uses (a client passed in
included). Measured: worker peak RSS +35 MiB at 256², lifetime peak 908 → 989 MiB at 512²
(heap blocks below the threshold are kept for reuse rather than unmapped).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import sys
from typing import Any, Iterator, Sequence

from distributed.diagnostics.plugin import WorkerPlugin

from cindra_dask.config import ClusterSettings, JobqueueKind
from cindra_dask.errors import DISK_FULL_REASONS, ConfigurationError
from cindra_dask.kernel_cache import RecordedKernel, load_recorded_kernels, preload_kernels

_JOBQUEUE_CLASSES = {
    JobqueueKind.SLURM: "SLURMCluster",
    JobqueueKind.PBS: "PBSCluster",
    JobqueueKind.LSF: "LSFCluster",
    JobqueueKind.SGE: "SGECluster",
}


_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 8 * 2**20
"""Allocations below this come from the heap (glibc's dynamic default is 128 KiB … 32 MiB)."""
TOP_PAD_BYTES = 16 * 2**20
"""Heap kept above the highest allocation when trimming (glibc's default 128 KiB)."""


def tune_allocator() -> bool:
    """Set glibc's mmap threshold and top pad in this process; False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(libc.mallopt(_M_TOP_PAD, TOP_PAD_BYTES))


class AllocatorTuning(WorkerPlugin):
    """Worker plugin running `tune_allocator` on every worker, present and future (restarts included)."""

    name = "cindra-dask-allocator-tuning"

    def setup(self, worker: Any) -> None:
        worker.allocator_tuned = tune_allocator()


class _HeartbeatFailureInOneLine(logging.Filter):
    """Drops the traceback of a worker's "Failed to communicate with scheduler during heartbeat" (the
    scheduler closing first at the end of a run, or a busy machine); the one-line message stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Failed to communicate with scheduler during heartbeat"):
            record.exc_info, record.exc_text = None, None
        return True


class _DiskFullTaskUnlogged(logging.Filter):
    """Drops a worker's "Compute Failed" report (with the task's traceback) of a write that found the
    disk full or the quota exceeded: the runner ends the run with one line naming the file
    (`cindra_dask.runner.loop.disk_full_stops_the_run`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Compute Failed") or not isinstance(record.args, tuple) or len(record.args) < 4:
            return True
        return re.match(rf"\w*Error\(({'|'.join(map(str, DISK_FULL_REASONS))}),", str(record.args[3])) is None


class QuietHeartbeatFailures(WorkerPlugin):
    """Worker plugin adding `_HeartbeatFailureInOneLine` and `_DiskFullTaskUnlogged` to the ``distributed.worker`` logger of every worker."""

    name = "cindra-dask-quiet-heartbeat-failures"

    def setup(self, worker: Any) -> None:
        logger = logging.getLogger("distributed.worker")
        for quiet in (_HeartbeatFailureInOneLine, _DiskFullTaskUnlogged):
            if not any(isinstance(existing, quiet) for existing in logger.filters):
                logger.addFilter(quiet())


class PreloadKernels(WorkerPlugin):
    """Worker plugin running `cindra_dask.kernel_cache.preload_kernels` as each worker starts, present
    and future (adaptive scaling, jobqueue jobs, restarts): the kernels' modules imported and their
    cached signatures loaded before the worker's first task. It runs in a thread, so the worker keeps
    answering its scheduler; a joining worker takes no task before it ends. ``worker.preloaded_kernels``
    lists the ``module:name`` of what it loaded.

    Parameters
    ----------
    kernels : the signatures to load (`cindra_dask.kernel_cache.load_recorded_kernels`).
    """

    name = "cindra-dask-preload-kernels"

    def __init__(self, kernels: Sequence[RecordedKernel]) -> None:
        self.kernels = list(kernels)

    async def setup(self, worker: Any) -> None:
        import asyncio

        loaded = await asyncio.get_running_loop().run_in_executor(None, preload_kernels, self.kernels)
        worker.preloaded_kernels = [kernel.function for kernel in loaded]


def tune_workers(client: Any) -> None:
    """Install `AllocatorTuning` and `QuietHeartbeatFailures` on the client's cluster (idempotent: the plugins have fixed names)."""
    client.register_plugin(AllocatorTuning())
    client.register_plugin(QuietHeartbeatFailures())


def local_worker_count(settings: ClusterSettings) -> int:
    """Worker processes a LocalCluster starts with: the adaptive minimum, ``workers``, or one per core (at least 1)."""
    if settings.adaptive is not None:
        return settings.adaptive.minimum
    if settings.workers:
        return settings.workers
    return max(1, (os.cpu_count() or 1) // settings.threads_per_worker)


def start_workers(cluster: Any, settings: ClusterSettings) -> None:
    """Scale a built cluster as the settings say: adaptively between ``adaptive.minimum`` and
    ``adaptive.maximum`` workers (local or jobqueue), else a jobqueue cluster to ``workers`` jobs (at
    least 1); a fixed LocalCluster already has its workers."""
    if settings.adaptive is not None:
        cluster.adapt(minimum=settings.adaptive.minimum, maximum=settings.adaptive.maximum)
    elif settings.jobqueue is not None:
        cluster.scale(jobs=max(1, settings.workers))


def build_cluster(settings: ClusterSettings) -> Any:
    """The cluster object the settings describe (a jobqueue cluster is built but not yet scaled: `start_workers`)."""
    if settings.jobqueue is not None:
        try:
            with _interrupts_ignored():  # its import installs a SIGINT handler calling sys.exit(); leaving restores ours
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

    with _interrupts_ignored():  # the worker processes inherit it: Ctrl-C reaches the runner alone
        return LocalCluster(
            n_workers=local_worker_count(settings),
            threads_per_worker=settings.threads_per_worker,
            memory_limit=settings.memory_limit_per_worker,
            dashboard_address=settings.dashboard_address,
            processes=True,
        )


@contextlib.contextmanager
def _interrupts_ignored() -> Iterator[None]:
    """SIGINT ignored while LocalCluster spawns its worker processes (an ignored signal stays ignored
    in a child), so a Ctrl-C in the terminal, which signals the whole process group, interrupts the
    runner, which shuts the cluster down, instead of printing every worker's traceback. Only in the
    main thread (elsewhere signal handlers cannot be changed, and nothing is done)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _ShutdownNoise(logging.Filter):
    """Drops the messages a cluster prints while it is closed after the run (its results are written):
    the nanny killing a worker process that took more than its 4 s to exit, and, after an interruption,
    the scheduler's and nannies' reports about the work cancelled."""

    def __init__(self, *, interrupted: bool) -> None:
        super().__init__()
        self.interrupted = interrupted

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.interrupted or str(record.msg).startswith("Worker process still alive"))


@contextlib.contextmanager
def _quiet_shutdown(*, interrupted: bool) -> Iterator[None]:
    """`_ShutdownNoise` on the ``distributed`` loggers of this process while the cluster closes."""
    quiet = _ShutdownNoise(interrupted=interrupted)
    loggers = [logging.getLogger(name) for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.core", "distributed.worker", "distributed.client")]
    handlers = {handler for logger in loggers for handler in logger.handlers}
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


@contextlib.contextmanager
def cluster_client(settings: ClusterSettings, *, connect_timeout_s: float = 20.0) -> Iterator[Any]:
    """Connect to (or start) the cluster the settings describe, tune its workers' allocator
    (`tune_workers`) and, on a cluster started here, preload the kernels on every worker
    (`PreloadKernels`); close what was started on exit. Gives up reaching a scheduler address after
    ``connect_timeout_s``.
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
        start_workers(cluster, settings)
        client = Client(cluster)
    interrupted = True
    try:
        tune_workers(client)
        if cluster is not None:
            client.register_plugin(PreloadKernels(load_recorded_kernels()))
        yield client
        interrupted = False
    finally:
        with _quiet_shutdown(interrupted=interrupted):
            client.close()
            if cluster is not None:
                cluster.close()
