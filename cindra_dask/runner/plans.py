"""The vocabulary between a step's plan and the runner, the only module that executes.

A step's plan is a generator. It builds lazy Dask collections (arrays, delayed writes) and yields
requests; the runner executes each request on the cluster and sends the results back into the
generator; the plan then writes what is small through the store and returns. Stages never hold a
client and never compute; the one iterative algorithm driven by futures (the reference image)
is a request of its own.
"""

from __future__ import annotations

from typing import Any, Generator, NamedTuple, Sequence


class Compute(NamedTuple):
    """Compute ``graphs`` as one graph (shared work runs once); the plan receives their results as a list, in order."""

    graphs: Sequence[Any]
    label: str


class Persist(NamedTuple):
    """Persist ``collections`` on the workers; the plan receives the persisted collections as a list, in order."""

    collections: Sequence[Any]
    label: str


class ReferenceImage(NamedTuple):
    """cindra's reference image of ``movie``'s frames ``sample_indices``; the plan receives a
    ``ReferenceResult`` (the runner drives the iterative loop: `cindra_dask.runner.reference_image`)."""

    movie: Any
    sample_indices: Any
    configuration: Any
    bidirectional_correction: bool


Request = Compute | Persist | ReferenceImage
StepPlan = Generator[Request, Any, Any]
"""A step's plan: yields requests, receives their results, returns the step's own result (or None)."""
