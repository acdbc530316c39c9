"""Issue 20, first run: how much of the first run after an install is numba compiling.

Measures, each in fresh subprocesses with their own empty ``NUMBA_CACHE_DIR`` (what a fresh install
has; the interpreter is ``--python``, e.g. a fresh venv's):

1. compile: every kernel signature of `cindra_dask/data/kernel_signatures.json` compiled in one
   process, cache empty (cold), then again with the cache it wrote (warm: loaded);
2. demo: ``cindra-dask demo --no-progress`` twice on one cache, the first cold, the second warm,
   each simulating its own recording, so they differ only in what numba must compile.

``--record`` instead rewrites the signature list: the demo's configuration and recording run in one
process (threaded client, so its dispatchers see every call), cache empty; each signature then
compiles in a fresh process with an empty cache for its ``compile_s``.

Prints JSON; writes ``benchmarks/results/cold_start.json``. Run from the repository root:
``.venv/bin/python benchmarks/bench_cold_start.py`` (about 5 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

_RECORD_RUN = r"""
import json, sys, importlib, pkgutil
from pathlib import Path
from distributed import Client
import cindra_dask
from cindra_dask.config import ClusterSettings, FileIOSettings, SingleRecordingConfiguration
from cindra_dask.kernel_cache import describe
from cindra_dask.pipeline import run_single_recording
from cindra_dask.simulate import SimulationParameters, write_recording
from numba.core.registry import CPUDispatcher

directory, size, frames = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
parameters = SimulationParameters(frame_height=size, frame_width=size, frame_count=frames, cell_count=max(10, size * size // 550), seed=1)
write_recording(parameters, directory / "data" / "demo_recording")
configuration = SingleRecordingConfiguration(main={"tau": parameters.tau_s}, file_io=FileIOSettings(data_path=directory / "data" / "demo_recording", output_path=directory / "results"))
with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as client:
    run_single_recording(configuration, client=client)
kernels = []
for info in pkgutil.walk_packages(cindra_dask.__path__, "cindra_dask."):
    module = importlib.import_module(info.name)
    for name, value in vars(module).items():
        if isinstance(value, CPUDispatcher) and value.py_func.__module__ == module.__name__:
            kernels += [[f"{module.__name__}:{name}", *describe(signature)] for signature in value.signatures]
print(json.dumps(kernels))
"""

_COMPILE_ALL = r"""
import json, sys, time
started = time.perf_counter()
import numba
from cindra_dask.kernel_cache import compile_kernel, load_recorded_kernels, RecordedKernel
kernels = [RecordedKernel(*entry) for entry in json.loads(sys.argv[1])] if len(sys.argv) > 1 else load_recorded_kernels()
initialisation = time.perf_counter()
numba.njit(lambda value: value + 1)(1)  # numba's own start-up, paid once per process
initialisation = time.perf_counter() - initialisation
seconds = [compile_kernel(kernel) for kernel in kernels]
print(json.dumps({"seconds": seconds, "initialisation_s": initialisation, "wall_s": time.perf_counter() - started}))
"""


def _python(script: str, *arguments: str, python: str, cache_dir: Path) -> str:
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}
    return subprocess.run([python, "-c", script, *arguments], env=environment, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]


def record(*, python: str, size: int, frames: int) -> None:
    from cindra_dask.kernel_cache import RecordedKernel, save_recorded_kernels

    with tempfile.TemporaryDirectory() as scratch:
        entries = json.loads(_python(_RECORD_RUN, str(Path(scratch) / "run"), str(size), str(frames), python=python, cache_dir=Path(scratch) / "cache_run"))
        # in one fresh process and cache, after numba's start-up: each signature's own compile time
        timing = json.loads(_python(_COMPILE_ALL, json.dumps([[*entry, 0.0] for entry in entries]), python=python, cache_dir=Path(scratch) / "cache_timing"))
    kernels = [RecordedKernel(function, text, pickled, round(seconds, 2)) for (function, text, pickled), seconds in zip(entries, timing["seconds"])]
    path = save_recorded_kernels(kernels)
    print(json.dumps({"recorded": len(kernels), "compile_s": round(sum(kernel.compile_s for kernel in kernels), 1), "file": str(path)}))


def _demo(directory: Path, *, python: str, cache_dir: Path, workers: int) -> dict[str, object]:
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    completed = subprocess.run([python, "-m", "cindra_dask.cli", "demo", str(directory), "--no-progress", "--workers", str(workers)], env=environment, check=True, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    lines = (completed.stdout + completed.stderr).splitlines()
    return {"wall_s": round(wall_s, 1), "compile_lines": [line for line in lines if "kernels" in line], "steps": [line for line in lines if line.startswith("step '")]}


def measure(*, python: str, workers: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as scratch:
        compile_cache = Path(scratch) / "compile_cache"
        cold = json.loads(_python(_COMPILE_ALL, python=python, cache_dir=compile_cache))
        warm = json.loads(_python(_COMPILE_ALL, python=python, cache_dir=compile_cache))
        demo_cache = Path(scratch) / "demo_cache"
        first = _demo(Path(scratch) / "first", python=python, cache_dir=demo_cache, workers=workers)
        second = _demo(Path(scratch) / "second", python=python, cache_dir=demo_cache, workers=workers)
    return {
        "kernel_signatures": len(cold["seconds"]),
        "compile_cold_s": round(sum(cold["seconds"]), 1),
        "compile_warm_s": round(sum(warm["seconds"]), 2),
        "demo_first_s": first["wall_s"],
        "demo_second_s": second["wall_s"],
        "first_over_second": round(float(first["wall_s"]) / float(second["wall_s"]), 2),
        "first": first,
        "second": second,
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to measure (e.g. a fresh venv's bin/python)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--record", action="store_true", help="rewrite cindra_dask/data/kernel_signatures.json instead of measuring")
    parser.add_argument("--size", type=int, default=256, help="--record: frame size of the recording run")
    parser.add_argument("--frames", type=int, default=1000, help="--record: frames of the recording run")
    arguments = parser.parse_args()
    if arguments.record:
        record(python=arguments.python, size=arguments.size, frames=arguments.frames)
        return
    result = measure(python=arguments.python, workers=arguments.workers)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cold_start.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
