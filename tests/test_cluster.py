"""Cluster entry point: LocalCluster from settings, unreachable scheduler, jobqueue job scripts, worker preload."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cindra_dask.cluster import build_cluster, cluster_client, local_worker_count
from cindra_dask.config import ClusterSettings
from cindra_dask.errors import ConfigurationError


class _RecordedEvents:
    """Run events kept in a list."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)

    def computing(self, label: str, future: Any, client: Any) -> None:
        self.messages.append(f"computing {label}")


def _dashboard_page(link: str) -> str:
    """The page at the dashboard link, fetched over the loopback interface."""
    import urllib.parse
    import urllib.request

    address = urllib.parse.urlsplit(link)
    with urllib.request.urlopen(f"http://127.0.0.1:{address.port}{address.path}", timeout=30) as response:
        assert response.status == 200
        return response.read().decode()


def test_local_cluster_from_settings_announces_the_dashboard() -> None:
    """The printed link serves distributed's status dashboard (bokeh is a dependency), not "Dask needs bokeh"."""
    from cindra_dask.runner.execution import Executor

    settings = ClusterSettings(workers=2, threads_per_worker=1, memory_limit_per_worker="1GiB", dashboard_address=":0")
    events = _RecordedEvents()
    executor = Executor(settings, events=events)
    try:
        client = executor.client
        workers = client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == 2
        assert {worker["memory_limit"] for worker in workers.values()} == {2**30}
        assert client.submit(sum, [1, 2, 3]).result() == 6
        assert set(client.run(lambda dask_worker: dask_worker.allocator_tuned).values()) == {sys.platform.startswith("linux")}
        page = _dashboard_page(client.dashboard_link)
        assert "Dask needs" not in page
        assert "<title>Dask Diagnostic UI</title>" in page and "Bokeh.safely" in page
    finally:
        executor.close()
    assert len(events.messages) == 1 and events.messages[0].startswith("Dask cluster: 2 workers; dashboard: http")
    assert local_worker_count(ClusterSettings(workers=0, threads_per_worker=1)) >= 1


def test_unreachable_scheduler_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="cluster.scheduler_address: cannot reach tcp://127.0.0.1:1"):
        with cluster_client(ClusterSettings(scheduler_address="tcp://127.0.0.1:1"), connect_timeout_s=1.0):
            pass


def test_slurm_job_script_carries_the_options() -> None:
    pytest.importorskip("dask_jobqueue")
    settings = ClusterSettings.model_validate({"jobqueue": "slurm", "workers": 3, "jobqueue_options": {"cores": 4, "processes": 4, "memory": "16GB", "walltime": "01:30:00", "queue": "short"}})
    cluster = build_cluster(settings)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p short" in script and "#SBATCH -t 01:30:00" in script and "#SBATCH --cpus-per-task=4" in script
    assert "--nworkers 4" in script
    with pytest.raises(ConfigurationError, match="cluster.jobqueue_options"):
        build_cluster(ClusterSettings.model_validate({"jobqueue": "slurm", "jobqueue_options": {"no_such_option": 1}}))


def test_building_a_jobqueue_cluster_keeps_the_ctrl_c_handler() -> None:
    """dask_jobqueue's first import replaces the SIGINT handler with ``sys.exit()`` (a Ctrl-C would end
    the run with exit code 0 and no message); building the cluster leaves the handler as it was."""
    pytest.importorskip("dask_jobqueue")
    import subprocess
    import sys

    program = (
        "import signal, sys\n"
        "from cindra_dask.cluster import build_cluster\n"
        "from cindra_dask.config import ClusterSettings\n"
        "build_cluster(ClusterSettings.model_validate({'jobqueue': 'slurm', 'jobqueue_options': {'cores': 1, 'memory': '1GB'}})).close()\n"
        "assert 'dask_jobqueue' in sys.modules\n"
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
    )
    completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log"])
def test_progress_follows_the_client_it_is_given(client: Any, terminal: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """With another client as the process default (a notebook's, the test session's), the progress bar
    (terminal) and the progress lines (SLURM log) must watch the given client's scheduler; the bar
    used to wait forever on the default one."""
    import sys
    import threading

    import dask
    from distributed import Client, LocalCluster

    from cindra_dask.cli import TerminalEvents
    from cindra_dask.config import ClusterSettings
    from cindra_dask.runner.execution import Executor

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal, raising=False)
    assert client is not None  # the session client is the default client here
    results: list[object] = []
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, Client(cluster, set_as_default=False) as other:
        executor = Executor(ClusterSettings(), client=other, events=TerminalEvents(progress_bars=True), tune_given_client=False)
        runner = threading.Thread(target=lambda: results.extend(executor.compute([dask.delayed(sum)([1, 2])], label="sum")), daemon=True)
        runner.start()
        runner.join(timeout=60)
    assert results == [3], "the progress display waited on the default client's scheduler"


def test_a_worker_heartbeat_failure_is_logged_without_its_traceback() -> None:
    """A busy machine or the scheduler closing first makes workers log this with a traceback; the plugin keeps one line."""
    import io
    import logging

    from cindra_dask.cluster import QuietHeartbeatFailures

    logger = logging.getLogger("distributed.worker")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        QuietHeartbeatFailures().setup(worker=None)
        QuietHeartbeatFailures().setup(worker=None)  # idempotent
        try:
            raise OSError("connection closed")
        except OSError:
            logger.exception("Failed to communicate with scheduler during heartbeat.")
            logger.exception("Some other failure")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "Failed to communicate with scheduler during heartbeat."
    assert lines[1] == "Some other failure" and "Traceback (most recent call last):" in lines[2:]
    assert stream.getvalue().count("Traceback") == 1


def test_a_worker_joining_the_cluster_starts_with_the_cached_kernels_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`PreloadKernels`: with the cache empty a worker loads nothing (compiling is the runner's, once per
    kernel); once the cache holds them, a worker added to the running cluster (adaptive scaling, a
    jobqueue job) has every recorded signature in its numba dispatchers before any task calls them."""
    from cindra_dask import kernel_cache
    from cindra_dask.cluster import PreloadKernels

    cheap = [kernel for kernel in kernel_cache.load_recorded_kernels() if kernel.function.startswith(("cindra_dask.pixel_regions:", "cindra_dask.extraction.masks:_box"))]
    monkeypatch.setattr(kernel_cache, "KERNEL_SIGNATURES_FILE", kernel_cache.save_recorded_kernels(cheap, tmp_path / "signatures.json"))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba_cache"))  # read by the worker processes as they start
    signature_counts = Counter(kernel.function for kernel in cheap)

    def preload_state(dask_worker: Any) -> tuple[bool, list[str], dict[str, int], bool]:
        import sys

        imported = all(module in sys.modules for module in kernel_cache.LAZY_TASK_IMPORTS)  # before the loads below import anything
        loaded = {function: len(kernel_cache.kernel_dispatcher(function).signatures) for function in signature_counts}
        return PreloadKernels.name in dask_worker.plugins, dask_worker.preloaded_kernels, loaded, imported

    settings = ClusterSettings(workers=1, threads_per_worker=1, memory_limit_per_worker="1GiB", dashboard_address=":0")
    with cluster_client(settings) as client:
        (first, cold_state), = client.run(preload_state).items()
        assert cold_state == (True, [], dict.fromkeys(signature_counts, 0), True)  # scikit-learn imported ahead of the classifier fit
        client.run(lambda: [kernel_cache.compile_kernel(kernel) for kernel in cheap])  # writes the cache
        client.cluster.scale(2)
        client.wait_for_workers(2, timeout=120)
        (joined,) = set(client.scheduler_info(n_workers=-1)["workers"]) - {first}
        plugin_present, preloaded, loaded, imported = client.run(preload_state, workers=[joined])[joined]
    assert plugin_present and Counter(preloaded) == signature_counts and loaded == dict(signature_counts) and imported


def test_adaptive_scaling_is_validated_field_by_field() -> None:
    """``cluster.adaptive`` is off by default; a bad one is one line per problem naming its field."""
    from cindra_dask.config import SingleRecordingConfiguration, configuration_from_mapping

    assert ClusterSettings().adaptive is None
    assert ClusterSettings.model_validate({"adaptive": {"maximum": 4}}).adaptive.minimum == 1  # type: ignore[union-attr]
    cases = {
        "minimum: 5, maximum: 2": "config.yaml: cluster.adaptive: minimum (5) exceeds maximum (2); give minimum ≤ maximum",
        "minimum: -1, maximum: 2": "config.yaml: cluster.adaptive.minimum: Input should be greater than or equal to 0",
        "minimum: 1": "config.yaml: cluster.adaptive.maximum: required field is missing",
        "maximum: 2, most: 3": "config.yaml: cluster.adaptive.most: unknown key; remove it or check its spelling (see `cindra-dask configure`)",
    }
    import yaml

    for text, line in cases.items():
        with pytest.raises(ConfigurationError) as raised:
            configuration_from_mapping({"cluster": {"adaptive": yaml.safe_load("{" + text + "}")}}, source="config.yaml", model=SingleRecordingConfiguration)
        assert str(raised.value) == line


def test_an_adaptive_cluster_starts_at_its_minimum_and_grows_to_its_maximum_under_load() -> None:
    """`start_workers` on a LocalCluster of `local_worker_count` workers (threads here: the same scaling, without spawning processes)."""
    import time

    from distributed import Client, LocalCluster

    from cindra_dask.cluster import start_workers

    settings = ClusterSettings.model_validate({"adaptive": {"minimum": 1, "maximum": 2}})
    with LocalCluster(n_workers=local_worker_count(settings), threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, Client(cluster, set_as_default=False) as client:
        start_workers(cluster, settings)
        assert len(client.scheduler_info(n_workers=-1)["workers"]) == 1
        queued = client.map(time.sleep, [0.2] * 200, pure=False)  # 40 s of work: the adaptive target is far above 2
        client.wait_for_workers(2, timeout=60)
        time.sleep(1.5)  # a further adaptation interval
        requested = len(cluster.worker_spec)
        client.cancel(queued)
    assert requested == 2


def test_closing_the_cluster_drops_only_the_shutdown_noise() -> None:
    """Every run used to end with two "Worker process still alive after 4.0 seconds, killing" warnings
    (issue 20); while the cluster closes those are dropped, other messages kept, and after an
    interruption the reports of the cancelled work are dropped too."""
    import logging

    from cindra_dask.cluster import _ShutdownNoise

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("distributed.nanny", logging.WARNING, __file__, 1, message, None, None)

    after_run, after_interrupt = _ShutdownNoise(interrupted=False), _ShutdownNoise(interrupted=True)
    assert not after_run.filter(record("Worker process still alive after 4.0 seconds, killing"))
    assert after_run.filter(record("Restarting worker"))
    assert not after_interrupt.filter(record("Restarting worker"))
