"""The multi-recording pipeline (``discover`` → ``extract``) on the shared skip-or-run loop.

``discover`` is one unit over every recording's store (all or nothing); ``extract`` one unit whose
stores are checked one by one (a complete recording is skipped), with every pending recording's
traces in one graph. A complete record counts only while its outputs are present and intact
(`phase_output_problems`): a recording whose outputs were removed or damaged is rebuilt. Every store is locked for the whole run; nothing is written before
`cindra_dask.runner.multi_context.preflight_multi_recording` has accepted the configuration and
every recording.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

from cindra_dask.config import MultiRecordingConfiguration
from cindra_dask.errors import ConfigurationError, PhaseUnavailableError
from cindra_dask.multirecording.graph import DISCOVER, EXTRACT, discover_hash, extract_hash, phase_key, phase_outputs, plan_discover, plan_extract
from cindra_dask.runner.multi_context import preflight_multi_recording
from cindra_dask.runner.events import RunEvents
from cindra_dask.runner.execution import Executor
from cindra_dask.runner.loop import RunReport, Unit, disk_full_stops_the_run, is_complete, refresh_manifest, run_units
from cindra_dask.store import RecordingStore

MULTI_RECORDING_PHASES = (DISCOVER, EXTRACT)


def run_multi_recording(
    configuration: MultiRecordingConfiguration,
    *,
    client: Any | None = None,
    phases: Sequence[str] | None = None,
    target_recording: str | None = None,
    force: bool = False,
    events: RunEvents | None = None,
) -> RunReport:
    """Run ``discover`` then ``extract`` over the configured recordings, skipping what is complete.

    Parameters
    ----------
    configuration : validated multi-recording configuration.
    client : a ``distributed.Client``; None starts the cluster of ``configuration.cluster``.
    phases : subset of ``discover``, ``extract`` (None: both, in order). ``extract`` alone needs a
        complete ``discover`` with the same configuration.
    target_recording : extract only this recording (a name from `cindra_dask.runner.multi_context.recording_names`, e.g. the
        store's name without ``.zarr``); ``discover`` always covers every recording.
    force : rerun the selected phases even if complete (``recording_io.repeat_selection`` and
        ``diffeomorphic_registration.repeat_registration`` force ``discover``).
    events : where messages and progress go (default: the ``cindra_dask`` logger).

    Returns
    -------
    RunReport with the main (first) recording's store and one outcome for ``discover`` and one per
    recording for ``extract`` (``extract/<recording name>``).
    """
    unknown = [name for name in phases or () if name not in MULTI_RECORDING_PHASES]
    if unknown:
        raise ConfigurationError(f"unknown phase {', '.join(unknown)}; multi-recording phases are {', '.join(MULTI_RECORDING_PHASES)}")
    selected_phases = [phase for phase in MULTI_RECORDING_PHASES if not phases or phase in phases]
    context = preflight_multi_recording(configuration)
    names = [source.name for source in context.recordings]
    if target_recording is not None and target_recording not in names:
        raise ConfigurationError(f"target_recording {target_recording}: not a recording of this dataset; choose one of {', '.join(names)}")
    dataset_name = configuration.recording_io.dataset_name
    discover_key, extract_key = phase_key(dataset_name, DISCOVER), phase_key(dataset_name, EXTRACT)
    hashes = {DISCOVER: discover_hash(context)}
    hashes[EXTRACT] = extract_hash(context, previous=hashes[DISCOVER])
    stores = tuple(source.store for source in context.recordings)
    executor = Executor(configuration.cluster, client=client, events=events)
    with disk_full_stops_the_run(stores[0].path), contextlib.ExitStack() as locks:
        for store in stores:
            locks.enter_context(store.locked())
        try:
            outcomes = []
            if DISCOVER in selected_phases:
                discover = Unit(
                    key=discover_key,
                    stores=stores,
                    config_hash=hashes[DISCOVER],
                    forced=force or configuration.recording_io.repeat_selection or configuration.diffeomorphic_registration.repeat_registration,
                    plan=lambda pending: plan_discover(context),
                    invalidates=(extract_key,),
                    outcome_names=(DISCOVER,),
                    per_store=False,
                    summary=lambda tracking, duration_s: f"phase '{DISCOVER}' ({dataset_name}): {tracking.templates.count} tracked cells in {duration_s:.1f} s",
                    output_problems=phase_output_problems(dataset_name, DISCOVER),
                )
                outcomes += run_units([discover], executor)
            if EXTRACT in selected_phases:
                stale = [source.name for source in context.recordings if not is_complete(source.store, discover_key, hashes[DISCOVER])]
                if stale:
                    raise PhaseUnavailableError(f"phase '{EXTRACT}' needs a complete '{DISCOVER}' with this configuration, missing or outdated in {', '.join(stale)}; run the '{DISCOVER}' phase first")
                targets = [source for source in context.recordings if target_recording is None or source.name == target_recording]
                by_store = {id(source.store): source for source in targets}
                extract = Unit(
                    key=extract_key,
                    stores=tuple(source.store for source in targets),
                    config_hash=hashes[EXTRACT],
                    forced=force,
                    plan=lambda pending: plan_extract(context, recordings=[by_store[id(store)] for store in pending]),
                    invalidates=(),
                    outcome_names=tuple(f"{EXTRACT}/{source.name}" for source in targets),
                    per_store=True,
                    summary=lambda result, duration_s: f"phase '{EXTRACT}' ({dataset_name}): recordings extracted in {duration_s:.1f} s",
                    output_problems=phase_output_problems(dataset_name, EXTRACT),
                )
                outcomes += run_units([extract], executor)
            ran = any(outcome.state == "ran" for outcome in outcomes)
            for store in stores:
                refresh_manifest(store, ran=ran)
        finally:
            executor.close()
    return RunReport(stores[0].path, tuple(outcomes))


def phase_output_problems(dataset_name: str, phase: str) -> Callable[[RecordingStore], list[str]]:
    """The check of a complete multi-recording phase's outputs in one store (`cindra_dask.manifest.output_problems`
    of `cindra_dask.multirecording.graph.phase_outputs`, less the other phase's outputs nested in them)."""
    own = phase_outputs(dataset_name, phase)
    nested = [path for other in (DISCOVER, EXTRACT) if other != phase for path in phase_outputs(dataset_name, other) if any(path.startswith(group + "/") for group in own)]

    def problems(store: RecordingStore) -> list[str]:
        from cindra_dask.manifest import output_problems

        record = store.phase_record(phase_key(dataset_name, phase))
        return output_problems(store, own, finished=record.finished if record is not None else None, excluded=nested)

    return problems
