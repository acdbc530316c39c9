"""The one skip-or-run loop behind both pipelines: records, invalidation and outcomes.

A unit is a record key in one or more stores (a single-recording step: one store; multi-recording
``discover``: every recording's store, all or nothing; ``extract``: each recording's store on its
own). A unit whose record is complete with the same configuration hash, and whose outputs are
present and intact (`Unit.output_problems`), is skipped; otherwise the records it invalidates (its
own and every later one) are forgotten, the outputs they describe are removed (so no later phase's
results from an earlier run survive a rerun of this one), it is marked started, its plan runs, and
only then is it marked complete, so a killed run leaves it incomplete. A full disk or an exceeded
quota while a run writes (`disk_full_stops_the_run`) ends it in the same state, with one line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

from cindra_dask.errors import DISK_FULL_REASONS, OutputError, disk_full_error, nearest_existing_path
from cindra_dask.runner.execution import Executor
from cindra_dask.runner.plans import StepPlan
from cindra_dask.store import RecordingStore


class PhaseOutcome(NamedTuple):
    """What happened to one step (``ingest``, ``registration/plane_0``, ``extract/<recording>``) in a run."""

    name: str
    state: str  # "ran" or "skipped"
    duration_s: float


class RunReport(NamedTuple):
    """Summary of a run: where the results are and what each phase did."""

    store_path: Any
    outcomes: tuple[PhaseOutcome, ...]


class Unit(NamedTuple):
    """One resumable unit of work.

    Attributes
    ----------
    key : record key written in every store of the unit.
    stores : the stores that hold its record.
    config_hash : hash of everything its outputs depend on.
    forced : rerun even if complete (``--force``, cindra's ``repeat_*`` flags).
    plan : ``plan(stores)`` builds the plan for the stores to (re)build.
    invalidates : record keys forgotten in those stores before it runs (its own and later ones).
    outcome_names : one name per store when ``per_store``, else one name for the unit.
    per_store : stores complete on their own are skipped (else all or nothing).
    summary : ``summary(plan result, duration_s)`` → the line reported when it ran.
    stale_outputs : groups removed in those stores before it runs: its own outputs and those of
        every step whose record it invalidates.
    output_problems : ``output_problems(store)`` → why the outputs of a complete record cannot be
        trusted (missing, unreadable, changed since the manifest); any line makes it rerun.
    """

    key: str
    stores: tuple[RecordingStore, ...]
    config_hash: str
    forced: bool
    plan: Callable[[tuple[RecordingStore, ...]], StepPlan]
    invalidates: tuple[str, ...]
    outcome_names: tuple[str, ...]
    per_store: bool
    summary: Callable[[Any, float], str]
    stale_outputs: tuple[str, ...] = ()
    output_problems: Callable[[RecordingStore], list[str]] | None = None


def is_complete(store: RecordingStore, key: str, config_hash: str) -> bool:
    """True when ``store`` holds a complete record ``key`` with ``config_hash``."""
    record = store.phase_record(key) if store.exists else None
    return record is not None and record.complete and record.config_hash == config_hash


def run_units(units: Sequence[Unit], executor: Executor) -> list[PhaseOutcome]:
    """Run or skip every unit in order; one outcome per unit (per store for per-store units)."""
    outcomes: list[PhaseOutcome] = []
    for unit in units:
        complete = [not unit.forced and is_complete(store, unit.key, unit.config_hash) and _outputs_intact(unit, store, name, executor) for store, name in _named_stores(unit)]
        if unit.per_store:
            pending = [index for index, done in enumerate(complete) if not done]
            skipped_names = [unit.outcome_names[index] for index, done in enumerate(complete) if done]
        else:
            pending = [] if all(complete) else list(range(len(unit.stores)))
            skipped_names = list(unit.outcome_names) if all(complete) else []
        for name in skipped_names:
            executor.events.message(f"step '{name}': complete (hash {unit.config_hash}), skipped")
            outcomes.append(PhaseOutcome(name, "skipped", 0.0))
        if not pending:
            continue
        stores = tuple(unit.stores[index] for index in pending)
        for store in stores:
            for stale in unit.invalidates:
                store.forget_phase(stale)
            removed = [path for path in unit.stale_outputs if (store.path / path).exists() and not any(path.startswith(other + "/") for other in unit.stale_outputs)]
            for path in removed:
                store.delete(path)
            if removed:
                executor.events.message(f"step '{unit.key}': removed {', '.join(removed)} (outputs of this step and of the steps after it, which depend on it)")
        executor.client  # the cluster starts (and compiles its kernels) outside the step's timing
        starts = [store.mark_phase_started(unit.key, config_hash=unit.config_hash) for store in stores]
        result = executor.run(unit.plan(stores))
        records = [store.mark_phase_complete(unit.key, config_hash=unit.config_hash, started=started) for store, started in zip(stores, starts)]
        durations = [float(record.duration_s or 0.0) for record in records]
        names = [unit.outcome_names[index] for index in pending] if unit.per_store else list(unit.outcome_names)
        outcomes.extend(PhaseOutcome(name, "ran", duration) for name, duration in zip(names, durations))
        executor.events.message(unit.summary(result, durations[0]))
    return outcomes


def _named_stores(unit: Unit) -> list[tuple[RecordingStore, str]]:
    """Each store of the unit with the outcome name it is reported under."""
    if unit.per_store:
        return list(zip(unit.stores, unit.outcome_names))
    return [(store, unit.outcome_names[0]) for store in unit.stores]


def _outputs_intact(unit: Unit, store: RecordingStore, name: str, executor: Executor) -> bool:
    """True when the complete record's outputs pass ``unit.output_problems``; else says why it reruns."""
    if unit.output_problems is None:
        return True
    problems = unit.output_problems(store)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        executor.events.message(f"step '{name}': complete, but its outputs are damaged ({shown}); running it again")
    return not problems


def refresh_manifest(store: RecordingStore, *, ran: bool) -> None:
    """Rewrite ``datapackage.json`` (arrays, checksums, configuration, timings) after a run that wrote
    something, or when a step finished after the manifest was written (a run killed before its end)."""
    from cindra_dask.manifest import manifest_path, write_manifest

    if not store.exists:
        return
    path = manifest_path(store)
    if ran or not path.is_file():
        write_manifest(store, take_lock=False)  # the run holds the lock
        return
    finished = [record.finished for record in store.phase_records().values() if record.complete and record.finished]
    written = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc).isoformat(timespec="seconds")
    if finished and max(finished) > written:
        write_manifest(store, take_lock=False)  # the run holds the lock


@contextlib.contextmanager
def disk_full_stops_the_run(store_path: Path) -> Iterator[None]:
    """A full disk or an exceeded quota while the run writes, in a worker task or on the client, ends
    it with one :class:`OutputError` line naming the file (else ``store_path``) and the space left.

    Nothing looks complete afterwards: a step is marked complete only after its last write, the
    records and the manifest are replaced atomically, so the step being written keeps its
    incomplete record and the rerun redoes it (and skips the steps finished before).
    """
    try:
        yield
    except Exception as error:
        full = disk_full_error(error)
        if full is None:
            raise
        from dask.utils import format_bytes

        path = Path(full.filename) if isinstance(full.filename, str) and full.filename else Path(store_path)
        free = format_bytes(shutil.disk_usage(nearest_existing_path(path)).free)
        raise OutputError(f"{path}: {DISK_FULL_REASONS[full.errno]} ({free} free there); the unfinished step is left incomplete; free space and rerun the same command to resume") from None
