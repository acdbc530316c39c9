"""The vocabulary between a step's plan and the runner, the only module that executes.

A step's plan is a generator. It builds lazy Dask collections (arrays, delayed writes) and yields
requests; the runner executes each request on the cluster and sends the results back into the
generator; the plan then writes what is small through the store and returns. Stages never hold a
client and never compute: an iterative algorithm (the reference image) is a plan that yields
several requests in turn.
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


class ThreadCount(NamedTuple):
    """The cluster's total worker threads (a plan that balances its tasks over them); the plan receives an int."""


Request = Compute | Persist | ThreadCount
StepPlan = Generator[Request, Any, Any]
"""A step's plan: yields requests, receives their results, returns the step's own result (or None)."""
