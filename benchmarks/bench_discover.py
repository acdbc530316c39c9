"""Multi-recording discover time vs the number of recordings, on a LocalCluster; peak client memory.

Simulates ``max(--recordings)`` sessions of one field of view (``--size``², ``--frames`` frames,
4 px smooth deformation, 20 % turnover), processes each with ``run_single_recording`` (ingest,
process, combine) on the cluster, then times ``discover`` alone (``force``) for the first 2, 4, 8
recordings. Discover runs the N(N−1)/2 pair registrations as tasks on the cluster's workers and the
clustering on the client; its time should grow no faster than the pair count. Client memory: the
RSS sampled every 0.1 s above its level just before, and, in a second (untimed) run, the peak of
the client's traced allocations (``tracemalloc``, numpy arrays included).

Usage: python benchmarks/bench_discover.py [--recordings 2 4 8] [--size 256] [--frames 500] [--workers 2] [--out benchmarks/results] [--keep]
Prints one JSON line per recording count and writes ``discover.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from pathlib import Path

from common import MIB, write_table


def simulate_and_process(scratch: Path, *, count: int, size: int, frames: int, client: object) -> list[Path]:
    """``count`` processed session stores (the simulation is written on the cluster's workers)."""
    from cindra_dask.config import configuration_from_mapping
    from cindra_dask.pipeline import run_single_recording
    from cindra_dask.simulate import SimulationParameters, simulate_sessions, write_recording

    parameters = SimulationParameters(frame_height=size, frame_width=size, frame_count=frames, cell_count=size * size // 550, non_cell_count=size * size // 2200, file_count=1, seed=7)
    sessions = simulate_sessions(parameters, session_count=count, deformation_px=4.0, turnover_fraction=0.2)
    directories = [scratch / "data" / f"session_{index:03d}" for index in range(count)]
    client.gather([client.submit(write_recording, session.parameters, directory, truth=session.truth, pure=False) for session, directory in zip(sessions, directories)])  # type: ignore[attr-defined]
    for directory in directories:
        configuration = configuration_from_mapping(
            {"runtime": {"display_progress_bars": False}, "main": {"tau": parameters.tau_s}, "file_io": {"data_path": str(directory), "output_path": str(scratch / "stores")}},
            source="benchmark",
        )
        run_single_recording(configuration, client=client)
    return [scratch / "stores" / f"{directory.name}.zarr" for directory in directories]


def timed_discover(stores: list[Path], *, client: object) -> dict[str, float]:
    """Two forced ``discover`` runs over ``stores``: the first timed with the client's RSS sampled
    every 0.1 s (peak above the level just before), the second with ``tracemalloc`` on (it slows
    the client) for the peak of the client's traced allocations, numpy arrays included. MiB, s."""
    import tracemalloc

    import psutil

    from cindra_dask.config import configuration_from_mapping
    from cindra_dask.pipeline import run_multi_recording

    configuration = configuration_from_mapping(
        {"pipeline_type": "multi-recording", "runtime": {"display_progress_bars": False}, "recording_io": {"recording_directories": [str(path) for path in stores], "dataset_name": f"bench{len(stores)}"}},
        source="benchmark",
    )

    def discover() -> None:
        report = run_multi_recording(configuration, client=client, phases=["discover"], force=True)
        assert report.outcomes[0].state == "ran"

    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    discover()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    tracemalloc.start()
    discover()
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"discover_s": elapsed, "client_traced_peak_mib": traced_peak / MIB, "client_rss_extra_mib": (peak[0] - baseline) / MIB}


def pair_seconds(stores: list[Path]) -> float:
    """One `register_pair` of the first two recordings' images, in this process (single-threaded kernel time)."""
    import zarr

    from cindra_dask.config import MultiRecordingConfiguration
    from cindra_dask.multirecording.demons import normalize_contrast, register_pair
    from cindra_dask.multirecording.graph import CONTRAST_SIGMA_DIAMETERS
    from cindra_dask.store import RecordingStore

    settings = MultiRecordingConfiguration().diffeomorphic_registration
    images = []
    for path in stores[:2]:
        diameter_px = float(zarr.open_group(str(path / "plane_0" / "rois"), mode="r").attrs["diameter_px"])
        images.append(normalize_contrast(RecordingStore(path).read("combined/detection/enhanced_mean_image"), sigma_px=CONTRAST_SIGMA_DIAMETERS * diameter_px))
    started = time.perf_counter()
    register_pair(*images, speed_factor=settings.speed_factor, final_grid_sampling_px=settings.final_grid_sampling, grid_sampling_factor=settings.grid_sampling_factor, scale_sampling=settings.scale_sampling)
    return time.perf_counter() - started


def main() -> None:
    from distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=Path("benchmarks/results/scratch_discover"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--keep", action="store_true", help="Keep the processed stores in --scratch and reuse them next time.")
    arguments = parser.parse_args()
    stores = sorted((arguments.scratch / "stores").glob("*.zarr")) if arguments.keep else []
    if len(stores) < max(arguments.recordings):
        shutil.rmtree(arguments.scratch, ignore_errors=True)
    rows = []
    with LocalCluster(n_workers=arguments.workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        if len(stores) < max(arguments.recordings):
            started = time.perf_counter()
            stores = simulate_and_process(arguments.scratch, count=max(arguments.recordings), size=arguments.size, frames=arguments.frames, client=client)
            print(json.dumps({"prepare_s": round(time.perf_counter() - started, 1), "recordings": len(stores)}))
        single_pair_s = pair_seconds(stores)
        for count in arguments.recordings:
            measured = timed_discover(stores[:count], client=client)
            pairs = count * (count - 1) // 2
            rows.append({"recordings": count, "pairs": pairs, "size": arguments.size, "workers": arguments.workers, "single_pair_s": round(single_pair_s, 2),
                         **{key: round(value, 2) for key, value in measured.items()}, "discover_s_per_pair": round(measured["discover_s"] / pairs, 2)})
            print(json.dumps(rows[-1]))
    load_average = os.getloadavg()[0]
    if not arguments.keep:
        shutil.rmtree(arguments.scratch, ignore_errors=True)
    header = ["recordings", "pairs", "discover (s)", "s per pair", "client peak allocations (MiB, tracemalloc)", "client RSS above start (MiB)"]
    table = [[row["recordings"], row["pairs"], f"{row['discover_s']:.1f}", f"{row['discover_s_per_pair']:.2f}", f"{row['client_traced_peak_mib']:.1f}", f"{row['client_rss_extra_mib']:.0f}"] for row in rows]
    notes = [f"Discover on a LocalCluster of {arguments.workers} workers × 1 thread, {arguments.size}² canvases, cindra's default demons settings; "
             f"one pair registration alone takes {rows[0]['single_pair_s']} s in one thread; machine load average {load_average:.1f} over {os.cpu_count()} cores at the end."]
    print(write_table(arguments.out / "discover.md", "Multi-recording discover", header, table, notes))

if __name__ == "__main__":
    main()
