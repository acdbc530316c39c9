"""Ingest throughput and peak worker memory.

Measures, in one run on the same files and cores:
- the time to merely read every TIFF page with tifffile in one process (the floor), and
- `cindra-dask`'s ingest (read pages → Zarr, Blosc-zstd) on a LocalCluster,
reported as MB/s of TIFF data and as a ratio; plus the peak RSS of every worker process for two
recording lengths (it must not grow with T).

Usage: python benchmarks/bench_ingest.py [--frames 2000 20000] [--size 512] [--workers 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from common import write_table
from peak_memory import lifetime_peak_rss_mib


def write_tiffs(directory: Path, *, frames: int, size: int, pages_per_file: int = 5000) -> int:
    """Noisy int16 frames (64 distinct ones, cycled) in files of ``pages_per_file`` pages; returns bytes."""
    import tifffile

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(200, 2000, size=(size, size)).astype(np.int16)
    distinct = (base + rng.integers(0, 400, size=(64, size, size))).astype(np.int16)
    written = 0
    for file_index, start in enumerate(range(0, frames, pages_per_file)):
        count = min(pages_per_file, frames - start)
        with tifffile.TiffWriter(directory / f"bench_{file_index:04d}.tif") as writer:
            for page in range(count):
                writer.write(distinct[(start + page) % 64], contiguous=True, photometric="minisblack")
        written += count * size * size * 2
    (directory / "cindra_parameters.json").write_text(json.dumps({"frame_rate": 30.0, "plane_number": 1, "channel_number": 1}))
    return written


def tifffile_read_seconds(directory: Path) -> float:
    """Read every page of every file with tifffile in one process (no writing)."""
    import tifffile

    started = time.perf_counter()
    for path in sorted(directory.glob("*.tif")):
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                page.asarray()
    return time.perf_counter() - started


def _current_rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def ingest_seconds(data: Path, output: Path, *, workers: int) -> tuple[float, list[int], int]:
    """Run the ingest phase on fresh worker processes.

    Returns wall time, each worker's lifetime peak RSS (``VmHWM``: includes short spikes) and
    the largest worker RSS seen by sampling every second (the steady state).
    """
    import threading

    from distributed import Client, LocalCluster

    from cindra_dask.config import configuration_from_mapping
    from cindra_dask.pipeline import run_single_recording

    configuration = configuration_from_mapping({"runtime": {"display_progress_bars": False}, "file_io": {"data_path": str(data), "output_path": str(output)}}, source="benchmark")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        sampled: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                sampled.extend(client.run(_current_rss_bytes).values())

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        run_single_recording(configuration, client=client, force=True)
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
        peaks = sorted(client.run(lifetime_peak_rss_mib).values())
    return elapsed, peaks, max(sampled, default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=Path("benchmarks/results/scratch"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    arguments = parser.parse_args()
    rows = []
    for frames in arguments.frames:
        data = arguments.scratch / f"tiffs_{frames}_{arguments.size}"
        shutil.rmtree(arguments.scratch, ignore_errors=True)
        size_bytes = write_tiffs(data, frames=frames, size=arguments.size)
        read_s = tifffile_read_seconds(data)
        ingest_s, peaks, steady = ingest_seconds(data, arguments.scratch / "out", workers=arguments.workers)
        rows.append({"frames": frames, "size": arguments.size, "tiff_mb": size_bytes / 1e6, "tifffile_read_s": read_s, "ingest_s": ingest_s,
                     "tifffile_mb_s": size_bytes / 1e6 / read_s, "ingest_mb_s": size_bytes / 1e6 / ingest_s, "ingest_over_read": ingest_s / read_s,
                     "worker_peak_rss_mib": [round(peak) for peak in peaks], "worker_sampled_rss_mib": round(steady / 2**20)})
        print(json.dumps(rows[-1]))
        shutil.rmtree(arguments.scratch, ignore_errors=True)
    header = ["frames", "size", "TIFF MB", "tifffile read MB/s", "ingest MB/s", "ingest / read time", "worker RSS sampled each s, max (MiB)", "worker lifetime peak RSS (MiB)"]
    table = [[row["frames"], f"{row['size']}²", f"{row['tiff_mb']:.0f}", f"{row['tifffile_mb_s']:.0f}", f"{row['ingest_mb_s']:.0f}", f"{row['ingest_over_read']:.2f}",
              str(row["worker_sampled_rss_mib"]), str(row["worker_peak_rss_mib"])] for row in rows]
    print(write_table(arguments.out / "ingest.md", "Ingest: TIFF → Zarr", header, table))

if __name__ == "__main__":
    main()
