"""Cluster memory of the CNMF field graph (`cindra_dask.cnmf.graph.field_components`) phase by phase.

A planted two-photon field (``--size``² × ``--frames``, float32, Gaussian somata with sparse
exponential transients, a flat background and Gaussian noise) is written to a Zarr array in
full-frame chunks of ``--chunk-frames`` (as the registered movie is stored); the field graph runs
from it on a LocalCluster of 2 single-threaded workers, each `Compute` request under
`distributed.diagnostics.MemorySampler`: the peak of the data the workers hold (``managed``) and of
their resident memory (``process``), summed over the workers. With ``--save`` the components are
written to an ``.npz`` (to compare two versions of the graph). Prints one JSON line.

Usage::

    .venv/bin/python benchmarks/bench_cnmf_patch_memory.py --frames 1000 [--size 256] [--save out.npz]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def planted_movie(*, size: int, frames: int, cells: int, seed: int) -> np.ndarray:
    """(frames, size, size) float32 planted field (radius-6 px somata; 0.5 % spike rate, decay 10 frames)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = rng.uniform(8, size - 8, (cells, 2))
    footprints = np.exp(-((yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2) / (2 * 3.0**2)).reshape(cells, -1)
    spikes = rng.random((cells, frames)) < 0.005
    calcium = np.zeros((cells, frames))
    for t in range(frames):
        calcium[:, t] = (calcium[:, t - 1] * 0.9 if t else 0) + spikes[:, t]
    movie = (calcium.T @ footprints).reshape(frames, size, size) * 40 + 100
    return (movie + rng.normal(0, 5, movie.shape)).astype(np.float32)


def main(arguments: list[str] | None = None) -> int:
    import zarr
    from distributed import Client, LocalCluster
    from distributed.diagnostics import MemorySampler

    from cindra_dask.cnmf.graph import field_components
    from cindra_dask.config import SourceExtractionSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--chunk-frames", type=int, default=100)
    parser.add_argument("--cells", type=int, default=120)
    parser.add_argument("--save", type=Path)
    options = parser.parse_args(arguments)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "movie.zarr"
        target = zarr.create_array(str(path), shape=(options.frames, options.size, options.size), chunks=(options.chunk_frames, options.size, options.size), dtype="f4")
        for first in range(0, options.frames, 500):
            target[first : first + 500] = planted_movie(size=options.size, frames=min(500, options.frames - first), cells=options.cells, seed=first)
        movie = zarr.open_array(str(path), mode="r")
        settings = SourceExtractionSettings(method="cnmf", gSig=(6, 6), rf=24, stride=12, K=6)
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0", memory_limit="8GiB") as cluster, Client(cluster) as client:
            sampler, phases = MemorySampler(), []
            plan = field_components(movie, crop_px=((0, options.size), (0, options.size)), chunk_frames=options.chunk_frames, settings=settings, event_frames=10, label="memory")
            request = next(plan)
            try:
                while True:
                    started = time.perf_counter()
                    with sampler.sample(f"{request.label} managed", measure="managed"), sampler.sample(f"{request.label} process", measure="process"):
                        results = client.gather(client.compute(list(request.graphs)))
                    phases.append({"phase": request.label, "wall_s": round(time.perf_counter() - started, 1)})
                    request = plan.send(results)
            except StopIteration as stop:
                components = stop.value
            for phase in phases:
                for measure in ("managed", "process"):
                    series = sampler.samples[f"{phase['phase']} {measure}"]
                    phase[f"peak_{measure}_mib"] = round(max(value for _, value in series) / 2**20, 1) if series else None
    movie_mib = options.frames * options.size**2 * 4 / 2**20
    print(json.dumps({"size": options.size, "frames": options.frames, "movie_mib": movie_mib, "components": int(components.spatial.shape[0]), "accepted": int(components.accepted.sum()), "phases": phases}))
    if options.save:
        np.savez(options.save, spatial=components.spatial.toarray(), temporal=components.temporal, snr=components.snr, r_values=components.r_values, accepted=components.accepted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
