"""Run cindra-dask on a folder of TIFFs on a fresh LocalCluster; executed by the project's venv.

The counterpart of ``run_suite2p.py`` (``benchmarks/common.py`` runs both as subprocesses and
samples their memory from outside). One LocalCluster runs everything, as ``cindra-dask run``
does; each process's lifetime peak RSS (``VmHWM``, `peak_memory`) is read at the end.

Stages:
- ``registration``: ingest, then the registration step of plane 0 only (run as the runner runs a
  step: phase record started → `run_registration_step` → phase record complete).
- ``full``: every phase (ingest, process, combine) in one `run_single_recording` call, the
  manifest included, as ``cindra-dask run`` runs them.

Registration quality metrics (PC metrics) are off, as suite2p's ``do_regmetrics`` in
``run_suite2p.py``. Writes ``<out>/cindra_result.json``: wall time of the phase calls, every phase
record (start and finish as whole epoch seconds, exact duration), worker pids, worker and main-process
lifetime peak RSS.

Usage: run_cindra.py DATA_DIR OUT_DIR --tau S [--stage registration|full] [--workers 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

from peak_memory import lifetime_peak_rss_mib


def _register_plane(configuration: object, client: object, *, plane: int) -> None:
    """The registration step of one plane, recorded in the store exactly as the runner records it."""
    from cindra_dask.pipeline import preflight, run_plan
    from cindra_dask.registration.graph import plan_registration_step
    from cindra_dask.runner.single import step_hashes

    context = preflight(configuration)
    key = f"registration/plane_{plane}"
    with context.store.locked():
        config_hash = step_hashes(context)[key]
        started = context.store.mark_phase_started(key, config_hash=config_hash)
        run_plan(plan_registration_step(context, plane=plane), client)
        context.store.mark_phase_complete(key, config_hash=config_hash, started=started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--tau", type=float, required=True)
    parser.add_argument("--stage", choices=["registration", "full"], default="full")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    arguments = parser.parse_args()

    from cindra_dask.cluster import cluster_client
    from cindra_dask.config import configuration_from_mapping
    from cindra_dask.pipeline import run_single_recording
    from cindra_dask.store import RecordingStore

    configuration = configuration_from_mapping(
        {
            "runtime": {"display_progress_bars": False},
            "file_io": {"data_path": str(arguments.data), "output_path": str(arguments.out)},
            "main": {"tau": arguments.tau},
            "registration": {"registration_metric_principal_components": 0},
            "cluster": {"workers": arguments.workers, "threads_per_worker": arguments.threads, "dashboard_address": ":0"},
        },
        source="benchmark",
    )
    # the stage modules, imported before the timer as run_suite2p.py imports suite2p (and all its
    # stages) before its own; the workers still import them inside the timed run
    import dask.array  # noqa: F401

    import cindra_dask.combine  # noqa: F401
    import cindra_dask.detection.graph  # noqa: F401
    import cindra_dask.extraction.graph  # noqa: F401
    import cindra_dask.io.ingest  # noqa: F401
    import cindra_dask.registration.graph  # noqa: F401

    result: dict[str, Any] = {"pid": os.getpid(), "call_s": {}}
    entered = time.perf_counter()
    with cluster_client(configuration.cluster) as client:
        result["cluster_start_s"] = time.perf_counter() - entered
        result["worker_pids"] = sorted(client.run(os.getpid).values())
        started = time.perf_counter()
        if arguments.stage == "registration":
            report = run_single_recording(configuration, client=client, phases=["ingest"], force=True)
            result["call_s"]["ingest"] = time.perf_counter() - started
            started = time.perf_counter()
            _register_plane(configuration, client, plane=0)
            result["call_s"]["registration"] = time.perf_counter() - started
        else:
            report = run_single_recording(configuration, client=client, force=True)
            result["call_s"]["run"] = time.perf_counter() - started
        store_path = report.store_path
        result["worker_peak_rss_mib"] = sorted(client.run(lifetime_peak_rss_mib).values())
    store = RecordingStore(store_path)
    result["wall_s"] = sum(result["call_s"].values())
    result["phases"] = {
        name: {"start": dt.datetime.fromisoformat(record.started).timestamp(), "finished": dt.datetime.fromisoformat(record.finished).timestamp(), "duration_s": record.duration_s}
        for name, record in store.phase_records().items()
        if record.complete
    }
    result["chunk_frames"] = int(store.array("plane_0/raw/channel_0").chunks[0])
    result["store_path"] = str(store.path)
    result["main_peak_rss_mib"] = lifetime_peak_rss_mib()
    (arguments.out / "cindra_result.json").write_text(json.dumps(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
