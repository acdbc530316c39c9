"""Numba kernels compiled once, in parallel, before a run needs them.

Every kernel is ``numba.njit(cache=True)``: compiled once per machine (and numba, Python and kernel
source), then loaded from numba's on-disk cache (``__pycache__`` beside the source, or
``NUMBA_CACHE_DIR``). The first run after an install used to be mostly compiling, each worker
process compiling every kernel it met (demo 157 s first, 52 s second on 2 workers; compiling the
33 kernel signatures once takes 49 s in one process, loading them 0.4 s).

`KERNEL_SIGNATURES_FILE` lists the signatures a default run compiles (pickled numba types; the
text form is for people) with their compile times as measured by
``benchmarks/bench_cold_start.py --record``, which rewrites it. At cluster start the runner asks a
worker which of them the cache lacks (`uncached_kernels`) and compiles those, each on one worker
(`assign_to_workers`: longest first, to the least loaded); every other process then loads them from
the cache. A signature the list lacks is compiled where it is first called, as before.

Loading costs too (about 1 s of imports and cache reads per worker process): `preload_kernels`, run
by the `cindra_dask.cluster.PreloadKernels` worker plugin as each worker starts, pays it before the
worker takes its first task, also for a worker that joins later (adaptive scaling, a jobqueue job).
"""

from __future__ import annotations

import base64
import importlib
import json
import pickle
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

KERNEL_SIGNATURES_FILE = Path(__file__).parent / "data" / "kernel_signatures.json"
LAZY_TASK_IMPORTS = ("sklearn.linear_model",)
"""Modules a task imports on first use that `preload_kernels` imports ahead: scikit-learn's logistic
regression, which the classifier fit needs (≈ 1.2 s of imports; the fit itself takes 0.01 s)."""


class RecordedKernel(NamedTuple):
    """One compiled specialisation of a kernel.

    Attributes
    ----------
    function : ``module:name`` of the ``numba.njit`` dispatcher.
    signature : the argument types as numba prints them.
    pickled_signature : the argument types, pickled and base64-encoded.
    compile_s : seconds it took to compile, cache empty, when recorded.
    """

    function: str
    signature: str
    pickled_signature: str
    compile_s: float


def load_recorded_kernels(path: Path | None = None) -> list[RecordedKernel]:
    """The kernels of ``path`` (default `KERNEL_SIGNATURES_FILE`; none when it is absent)."""
    path = path if path is not None else KERNEL_SIGNATURES_FILE
    if not path.is_file():
        return []
    return [RecordedKernel(**entry) for entry in json.loads(path.read_text())["kernels"]]


def save_recorded_kernels(kernels: Sequence[RecordedKernel], path: Path | None = None) -> Path:
    """Write ``kernels`` to ``path`` (default `KERNEL_SIGNATURES_FILE`), with the numba version that compiled them."""
    import numba

    path = path if path is not None else KERNEL_SIGNATURES_FILE
    payload = {"numba": numba.__version__, "kernels": [kernel._asdict() for kernel in sorted(kernels)]}
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def kernel_dispatcher(function: str) -> Any:
    """The numba dispatcher ``module:name`` (its module imported)."""
    module, name = function.split(":")
    return getattr(importlib.import_module(module), name)


def describe(signature: tuple[Any, ...]) -> tuple[str, str]:
    """(text, pickled base64) of a tuple of numba argument types."""
    return str(signature), base64.b64encode(pickle.dumps(signature)).decode("ascii")


def _signature(kernel: RecordedKernel) -> tuple[Any, ...]:
    return pickle.loads(base64.b64decode(kernel.pickled_signature))  # noqa: S301 - the package's own file


def is_cached(kernel: RecordedKernel) -> bool:
    """Whether numba's on-disk cache of this process holds the kernel's compiled signature."""
    dispatcher = kernel_dispatcher(kernel.function)
    cache = dispatcher._cache
    key = cache._index_key(_signature(kernel), dispatcher.targetctx.codegen())
    return key in cache._cache_file._load_index()


def _cache_holds(kernel: RecordedKernel) -> bool | None:
    """`is_cached`, or None where the kernel no longer exists (renamed, removed) or its types no
    longer unpickle (another numba)."""
    try:
        return is_cached(kernel)
    except (ImportError, AttributeError, pickle.UnpicklingError, TypeError, ValueError):
        return None


def uncached_kernels(kernels: Sequence[RecordedKernel]) -> list[RecordedKernel]:
    """The kernels the cache lacks; those that no longer exist or unpickle are left out: they
    compile where first called."""
    return [kernel for kernel in kernels if _cache_holds(kernel) is False]


def preload_kernels(kernels: Sequence[RecordedKernel]) -> list[RecordedKernel]:
    """Import the kernels' modules (and `LAZY_TASK_IMPORTS`) and load, into this process, each signature the cache holds; the
    ones loaded. Nothing compiles here: what the cache lacks is compiled by the runner, each kernel
    on one worker (`assign_to_workers`), not by every worker at once."""
    for module in LAZY_TASK_IMPORTS:
        importlib.import_module(module)
    cached = [kernel for kernel in kernels if _cache_holds(kernel)]
    for kernel in cached:
        compile_kernel(kernel)
    return cached


def compile_kernel(kernel: RecordedKernel) -> float:
    """Compile (or load from the cache) one kernel's signature, writing the cache; seconds taken."""
    started = time.perf_counter()
    kernel_dispatcher(kernel.function).compile(_signature(kernel))
    return time.perf_counter() - started


class WarmupPlan(NamedTuple):
    """Kernels per worker and the time they should take (the most loaded worker's sum, s)."""

    assignments: dict[str, list[RecordedKernel]]
    estimate_s: float


def assign_to_workers(kernels: Sequence[RecordedKernel], workers: Sequence[str]) -> WarmupPlan:
    """Each kernel to one worker, longest first to the least loaded (numba compiles one function at
    a time per process, so workers, not threads, compile in parallel)."""
    load = {worker: 0.0 for worker in workers}
    assignments: dict[str, list[RecordedKernel]] = {worker: [] for worker in workers}
    for kernel in sorted(kernels, key=lambda kernel: -kernel.compile_s):
        worker = min(load, key=lambda name: (load[name], list(load).index(name)))
        assignments[worker].append(kernel)
        load[worker] += kernel.compile_s
    return WarmupPlan({worker: assigned for worker, assigned in assignments.items() if assigned}, max(load.values(), default=0.0))
