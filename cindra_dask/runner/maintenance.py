"""Store maintenance that follows the step table: reset a phase (and every later one), clean intermediates."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

from cindra_dask.errors import OutputError
from cindra_dask.manifest import record_removal, utc_now
from cindra_dask.runner.single import SINGLE_RECORDING_PHASES, SINGLE_RECORDING_STEPS
from cindra_dask.store import COMBINED, RAW, REGISTERED, RecordingStore, input_file_attributes, multi_recording_datasets, open_existing_store, plane_indices, plane_path

CLEANABLE = {"registered": REGISTERED}
"""Intermediate outputs `clean_store` removes on request (``plane_k/<group>`` of every plane)."""


class StoreChange(NamedTuple):
    """What `reset_store` or `clean_store` removed.

    Attributes
    ----------
    removed_arrays : array paths that no longer exist, sorted.
    forgotten_records : phase-record keys dropped from the root attributes.
    """

    removed_arrays: tuple[str, ...]
    forgotten_records: tuple[str, ...]


def reset_store(path: RecordingStore | Path | str, *, phase: str) -> StoreChange:
    """Remove the outputs and phase records of ``phase`` and of every phase after it.

    Parameters
    ----------
    path : the recording store.
    phase : ``ingest`` (everything: ``plane_k/*`` and ``combined/``), ``process`` (per plane
        ``registered``, ``registration``, ``detection``, ``rois``, ``extraction``, and
        ``combined/``; the raw frames stay) or ``combine`` (``combined/``).

    A rerun (`cindra-dask run`) then redoes those phases. Refuses while a run holds the store's
    lock. ``multi_recording/`` datasets are left alone (they span several recordings) but a
    warning says they are stale. The manifest, if any, drops the removed arrays.
    """
    if phase not in SINGLE_RECORDING_PHASES:
        raise OutputError(f"--phase {phase}: unknown phase; reset one of {', '.join(SINGLE_RECORDING_PHASES)} (and the phases after it)")
    store = open_existing_store(path)
    later = set(SINGLE_RECORDING_PHASES[SINGLE_RECORDING_PHASES.index(phase) :])
    step_phases = {step.name: step.phase for step in SINGLE_RECORDING_STEPS}
    with store.locked():
        before = set(store.array_paths())
        targets: list[str] = []
        for plane_group in map(plane_path, plane_indices(store)):
            if phase == "ingest":
                targets.append(plane_group)
            elif phase == "process":
                targets += [f"{plane_group}/{group}" for step in SINGLE_RECORDING_STEPS if step.per_plane for group in step.outputs]
        targets.append(COMBINED)
        for target in targets:
            if (store.path / target).exists():
                store.delete(target)
        forgotten = []
        for key in store.phase_records():
            if step_phases.get(key.split("/")[0]) in later:
                store.forget_phase(key)
                forgotten.append(key)
        removed = tuple(sorted(before - set(store.array_paths())))
        record_removal(store, removed, action={"action": "reset", "phase": phase, "forgotten_records": forgotten})
    datasets = multi_recording_datasets(store)
    if datasets:
        warnings.warn(
            f"{store.path}: multi-recording dataset(s) {', '.join(datasets)} were built from the outputs just removed and are now stale; rerun their discover phase after the single-recording run",
            stacklevel=2,
        )
    return StoreChange(removed, tuple(sorted(forgotten)))


def _missing_inputs(store: RecordingStore) -> tuple[Path | None, list[str]]:
    attributes = store.attributes()
    kind = input_file_attributes(attributes.get("input_format") or "tiff")
    directory = attributes.get(f"{kind}_directory")
    names = attributes.get(f"{kind}_files") or []
    if not directory or not names:
        return None, [f"(the store does not list its {kind.upper()} files)"]
    folder = Path(directory)
    return folder, [name for name in names if not (folder / name).exists()]


def clean_store(path: RecordingStore | Path | str, *, what: Sequence[str] = ("registered",), remove_raw: bool = False) -> StoreChange:
    """Remove intermediate arrays to free disk space; results stay.

    Parameters
    ----------
    path : the recording store.
    what : intermediates to remove, from ``registered`` (the motion-corrected movies,
        ``plane_k/registered/*``). A later rerun that needs them fails until the phase is reset
        (`reset_store` with ``phase="process"``).
    remove_raw : also remove the raw frames (``plane_k/raw/*``), the store's copy of the input.
        Warns; refused unless every input file (TIFF, HDF5, NWB or Zarr store) listed in the store still exists (the
        inputs themselves are never touched), so the recording can be ingested again.

    Refuses while a run holds the store's lock. Phase records are kept (the results they
    describe are still there); the manifest, if any, drops the removed arrays and the root
    attributes record what was removed and when (``removed_intermediates``).
    """
    what = tuple(what)
    if RAW in what:
        raise OutputError(f"{RAW}: the raw frames are the store's copy of the input; remove them only explicitly with remove_raw=True (`cindra-dask clean STORE --raw`)")
    unknown = [name for name in what if name not in CLEANABLE]
    if unknown:
        raise OutputError(f"clean: unknown intermediate(s) {', '.join(unknown)}; choose from {', '.join(CLEANABLE)}")
    if not what and not remove_raw:
        raise OutputError("clean: nothing selected; pass --registered (and, only if you mean it, --raw)")
    store = open_existing_store(path)
    groups = [CLEANABLE[name] for name in what]
    if remove_raw:
        folder, missing = _missing_inputs(store)
        if missing:
            raise OutputError(
                f"{store.path}: refusing to remove the raw frames: the input files are not all available ({', '.join(missing[:3])}{' …' if len(missing) > 3 else ''} missing in {folder}); "
                "the raw frames would be the only copy of the recording"
            )
        warnings.warn(f"{store.path}: removing the raw frames (the store's copy of the movie files in {folder}); registering again will need `cindra-dask reset {store.path} --phase ingest` and a new ingest", stacklevel=2)
        groups.append(RAW)
    with store.locked():
        before = set(store.array_paths())
        for plane_group in map(plane_path, plane_indices(store)):
            for group in groups:
                if (store.path / plane_group / group).exists():
                    store.delete(f"{plane_group}/{group}")
        removed = tuple(sorted(before - set(store.array_paths())))
        if removed:
            record = dict(store.attributes().get("removed_intermediates", {}))
            record.update({group: utc_now() for group in groups})
            store.update_attributes(removed_intermediates=record)
            record_removal(store, removed, action={"action": "clean", "groups": groups})
    return StoreChange(removed, ())
