"""Issue 21, worker preload: a fresh worker's first registration task against a warm one's, with and
without the `cindra_dask.cluster.PreloadKernels` plugin.

Per round, a fresh one-worker LocalCluster (processes, as the runner builds it, numba cache warm):
the same registration task (256² × 200 synthetic frames: build the reference plan, `register_frames`
rigid + nonrigid; the function is this script's, its imports inside it) runs twice on the worker,
timed from submission to result and inside the task (``*_in_task``: its imports and kernels, not the
scheduling and transfers). ``first_over_warm`` is the first run's time over the second's;
``plugin_setup_s`` what registering the plugin took at cluster start (the cost moved there).
Rounds alternate the variants; medians over rounds are reported (of each round's ratio for the
ratios: rounds on a shared machine differ in load, the two tasks of one round much less). The
issue's goal: ``first_over_warm`` ≤ 1.2 with the preload.

Prints JSON; writes ``benchmarks/results/worker_preload.json``. Run from the repository root:
``.venv/bin/python benchmarks/bench_worker_preload.py [--rounds 3]`` (about 1 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FRAME_SIDE_PX = 256
FRAME_COUNT = 200


def registration_task(options: Any, seed: int) -> float:
    """Register a synthetic movie against its mean (imports inside, as a task unpickled on a fresh worker
    would meet them); seconds from the task's start to its end."""
    started = time.perf_counter()
    import numpy as np

    from cindra_dask.registration.kernels import build_reference_plan, register_frames

    rng = np.random.default_rng(seed)
    scene = rng.random((FRAME_SIDE_PX + 16, FRAME_SIDE_PX + 16), dtype=np.float32)
    shifts = rng.integers(0, 16, size=(FRAME_COUNT, 2))
    frames = np.stack([scene[dy : dy + FRAME_SIDE_PX, dx : dx + FRAME_SIDE_PX] for dy, dx in shifts]) * 1000
    plan = build_reference_plan(frames.mean(axis=0), options=options)
    register_frames(frames, plan=plan)
    return time.perf_counter() - started


def _round(*, preload: bool, options: Any) -> dict[str, float]:
    from distributed import Client

    from cindra_dask.cluster import PreloadKernels, build_cluster, tune_workers
    from cindra_dask.config import ClusterSettings
    from cindra_dask.kernel_cache import load_recorded_kernels

    with build_cluster(ClusterSettings(workers=1, threads_per_worker=1, dashboard_address=":0")) as cluster, Client(cluster) as client:
        tune_workers(client)
        started = time.perf_counter()
        if preload:
            client.register_plugin(PreloadKernels(load_recorded_kernels()))
        plugin_setup_s = time.perf_counter() - started
        seconds, in_task = [], []
        for seed in (1, 2):
            started = time.perf_counter()
            in_task.append(client.submit(registration_task, options, seed, pure=False).result())
            seconds.append(time.perf_counter() - started)
    return {
        "plugin_setup_s": plugin_setup_s,
        "first_s": seconds[0],
        "warm_s": seconds[1],
        "first_over_warm": seconds[0] / seconds[1],
        "first_in_task_s": in_task[0],
        "warm_in_task_s": in_task[1],
        "first_over_warm_in_task": in_task[0] / in_task[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    from cindra_dask.config import SingleRecordingConfiguration
    from cindra_dask.registration.graph import plan_options

    options = plan_options(SingleRecordingConfiguration())
    _round(preload=False, options=options)  # fills numba's cache with what the task compiles
    rounds: dict[str, list[dict[str, float]]] = {"without_preload": [], "with_preload": []}
    for _ in range(arguments.rounds):
        for variant in rounds:
            rounds[variant].append(_round(preload=variant == "with_preload", options=options))
    result: dict[str, Any] = {
        variant: {key: round(statistics.median(entry[key] for entry in entries), 3) for key in entries[0]} for variant, entries in rounds.items()
    }
    result["frames"] = f"{FRAME_COUNT} x {FRAME_SIDE_PX}x{FRAME_SIDE_PX}"
    result["rounds"] = rounds
    result["load_average"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "worker_preload.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({key: value for key, value in result.items() if key != "rounds"}))


if __name__ == "__main__":
    main()
