"""The only place computations run: a lazily started client and the loop that drives a step's plan."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Sequence

from cindra_dask.config import ClusterSettings
from cindra_dask.runner.events import LoggingEvents, RunEvents
from cindra_dask.runner.plans import Compute, Persist, ReferenceImage, StepPlan


class Executor:
    """Executes plans on a client: the given one, or the configured cluster started on first use
    (whose workers first compile the numba kernels their cache lacks, `_compile_kernels`).

    A given client's workers get the allocator tuning when first used, unless ``tune_given_client``
    is false (`cindra_dask.cluster.tune_workers`; `cindra_dask.cluster.cluster_client` does it for its own).
    """

    def __init__(self, cluster: ClusterSettings, *, client: Any | None = None, events: RunEvents | None = None, tune_given_client: bool = True) -> None:
        self._cluster = cluster
        self._client = client
        self._tune_given_client = tune_given_client
        self._events: RunEvents = events if events is not None else LoggingEvents()
        self._stack = contextlib.ExitStack()
        self._ready = False

    @property
    def events(self) -> RunEvents:
        """Where this run's messages go."""
        return self._events

    @property
    def client(self) -> Any:
        """The ``distributed.Client``, started (or tuned) on first access."""
        if not self._ready:
            from cindra_dask.cluster import cluster_client, tune_workers

            if self._client is None:
                self._client = self._stack.enter_context(cluster_client(self._cluster))
                workers = len(self._client.scheduler_info(n_workers=-1).get("workers", {}))
                self._events.message(f"Dask cluster: {workers} workers; dashboard: {self._client.dashboard_link}")
                self._compile_kernels()
            elif self._tune_given_client:
                tune_workers(self._client)
            self._ready = True
        return self._client

    def _compile_kernels(self) -> None:
        """Compile the recorded kernels the workers' numba cache lacks, each on one worker, in parallel
        (`cindra_dask.kernel_cache`), saying so first; nothing when the cache holds them all."""
        from cindra_dask.kernel_cache import assign_to_workers, compile_kernel, load_recorded_kernels, uncached_kernels

        client = self._client
        workers = sorted(client.scheduler_info(n_workers=-1).get("workers", {}))
        recorded = load_recorded_kernels()
        if not workers or not recorded:
            return
        missing = client.submit(uncached_kernels, recorded, pure=False).result()
        if not missing:
            return
        plan = assign_to_workers(missing, workers)
        self._events.message(f"compiling {len(missing)} numba kernels for this machine (once; about {plan.estimate_s:.0f} s on {len(plan.assignments)} workers)")
        started = time.perf_counter()
        compiled = [client.submit(compile_kernel, kernel, workers=[worker], allow_other_workers=False, pure=False) for worker, kernels in plan.assignments.items() for kernel in kernels]
        total = client.submit(sum, compiled, pure=False)
        self._events.computing("compiling kernels", total, client)
        total.result()
        self._events.message(f"kernels compiled in {time.perf_counter() - started:.1f} s; later runs load them from numba's cache")

    def compute(self, graphs: Sequence[Any], *, label: str) -> list[Any]:
        """Dask collections computed as one graph; results in input order.

        The collections are wrapped together in one ``Delayed`` list, so work they share (the masks
        and the trace pass every extraction output reads) has the same keys and runs once. Wrapping
        each collection separately re-optimises each one and renames its fused tasks: measured,
        extraction then built its masks and read the movie once per output (6×). One list also keeps
        the input order (dask 2026.8 returns mixed Array/Delayed results grouped by type).
        """
        import dask

        if not graphs:
            return []
        client = self.client
        future = client.compute(dask.delayed(list, pure=True)(list(graphs)))
        try:
            self._events.computing(label, future, client)
            return future.result()
        finally:  # now, not when the traceback of a failure is gone: a rerun on the same client recomputes the same keys
            future.release()

    def persist(self, collections: Sequence[Any]) -> list[Any]:
        """The collections persisted on the workers, in input order."""
        return list(self.client.persist(list(collections)))

    def run(self, plan: StepPlan) -> Any:
        """Drive ``plan`` to its end: execute each request it yields, send the results back; its return value."""
        try:
            request = next(plan)
            while True:
                if isinstance(request, Compute):
                    result = self.compute(request.graphs, label=request.label)
                elif isinstance(request, Persist):
                    result = self.persist(request.collections)
                elif isinstance(request, ReferenceImage):
                    from cindra_dask.runner.reference_image import cluster_reference_image

                    started = time.perf_counter()
                    result = cluster_reference_image(self, request.movie, request.sample_indices, configuration=request.configuration, bidirectional_correction=request.bidirectional_correction)
                    self._events.message(f"reference image: {len(request.sample_indices)} frames in {time.perf_counter() - started:.1f} s")
                else:
                    raise TypeError(f"a plan yielded {type(request).__name__}; plans yield Compute, Persist or ReferenceImage requests")
                request = plan.send(result)
        except StopIteration as finished:
            return finished.value

    def close(self) -> None:
        """Close the cluster this executor started (a given client stays open)."""
        self._stack.close()


def run_plan(plan: StepPlan, client: Any, *, events: RunEvents | None = None) -> Any:
    """Run one step's plan on ``client`` as it is (notebooks, tests); the plan's return value."""
    return Executor(ClusterSettings(), client=client, events=events, tune_given_client=False).run(plan)
