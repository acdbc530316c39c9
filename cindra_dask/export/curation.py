"""Curation: cell / not-cell labels edited in suite2p's GUI on our export, or set in `cindra-dask view`, written into the store.

`export_suite2p` writes ``<folder>/plane{k}/iscell.npy`` (n, 2) [is_cell 0/1, probability] from
``plane_k/extraction/cell_classification``; suite2p's GUI rewrites that file when a user moves ROIs
between "cells" and "not cells". `import_curation` reads every ``plane{k}/iscell.npy`` back:

* the store's rows that differ from the file (either column) take the file's values (is_cell as 0/1
  float32, probability as given); rows that agree are not touched;
* the array's attribute ``curation_history`` gets one entry per import that changed something:
  ``imported`` (UTC time), ``source`` (the file), ``rows`` (the changed ROI indices) and ``previous``
  ([is_cell, probability] of those rows before the import), so every earlier value can be restored;
* ``combined/extraction/cell_classification``, when combine ran, gets the same rows (offset by the
  ROIs of the planes before it, in ``included_planes`` order) and its own history;
* the manifest (``datapackage.json``), if there is one, is rewritten for the changed arrays.

Only labels come back: an ``iscell.npy`` whose row count differs from the plane's ROIs (ROIs merged,
split or drawn in the GUI) is refused, as is a folder without any ``plane{k}/iscell.npy``.

`label_rois` (the viewer's "cell" / "not cell") sets column 0 of chosen rows and writes the same way,
its history entries' ``source`` being `VIEWER_SOURCE`. Every write goes through
`RecordingStore.update_rows` (history first, then the rows, each file replaced atomically) while the
store is locked. A later rerun of the extraction step recomputes the classification (and
drops the curation) like every other output.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from cindra_dask.errors import InputError, OutputError
from cindra_dask.store import COMBINED, EXTRACTION, ROIS, RecordingStore, array_shape, open_existing_store, plane_indices, stage_path

CLASSIFICATION = "cell_classification"
HISTORY_ATTRIBUTE = "curation_history"
VIEWER_SOURCE = "cindra-dask view"
"""The history entries' ``source`` of labels set in the viewer (`label_rois`)."""
PLANE_FOLDER = re.compile(r"^plane(\d+)$")


class PlaneCuration(NamedTuple):
    """What `import_curation` changed in one plane.

    Attributes
    ----------
    plane : the plane index.
    source : the ``iscell.npy`` read, or `VIEWER_SOURCE` for labels set in `cindra-dask view`.
    roi_count : ROIs of the plane.
    changed_rows : ROI indices whose [is_cell, probability] changed (ascending).
    """

    plane: int
    source: Path | str
    roi_count: int
    changed_rows: tuple[int, ...]


def _read_iscell(path: Path, *, roi_count: int, plane: int) -> np.ndarray:
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise InputError(f"{path}: not a readable .npy array ({error}); give the iscell.npy that suite2p's GUI saved") from error
    values = np.asarray(values)
    if values.ndim == 1:
        values = np.column_stack([values, np.zeros(len(values))])
    if values.ndim != 2 or values.shape[1] != 2 or values.dtype.kind not in "biuf":
        raise InputError(f"{path}: expected an (n, 2) numeric array [is_cell, probability], got shape {values.shape} of {values.dtype}")
    if len(values) != roi_count:
        raise InputError(
            f"{path}: {len(values)} rows but plane {plane} of the store has {roi_count} ROIs; only cell/not-cell labels come back "
            "(ROIs merged, split or drawn in the GUI cannot), so curate the export of this store"
        )
    if not np.isfinite(values).all():
        raise InputError(f"{path}: holds NaN or infinite values; give the iscell.npy that suite2p's GUI saved")
    return np.column_stack([(values[:, 0] > 0.5).astype(np.float32), values[:, 1].astype(np.float32)])


def import_curation(store_path: RecordingStore | Path | str, suite2p_folder: Path | str) -> list[PlaneCuration]:
    """Read suite2p-GUI-edited ``plane{k}/iscell.npy`` files back into ``plane_k/extraction/cell_classification``.

    Parameters
    ----------
    store_path : the recording store the folder was exported from.
    suite2p_folder : the folder `export_suite2p` wrote (holding ``plane0/``, ``plane1/``, ...).

    Returns
    -------
    One `PlaneCuration` per plane folder found, in plane order (see the module docstring for what
    is written).

    Raises
    ------
    InputError : no ``plane{k}/iscell.npy`` in the folder, a file that is not (n, 2) numbers, or whose
        row count differs from the plane's ROIs.
    OutputError : not a store, a plane the store lacks or whose extraction has no classification, or
        a run holds the store's lock. Everything is checked before anything is written.
    """
    store = open_existing_store(store_path)
    folder = Path(suite2p_folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; give the folder `cindra-dask export suite2p` wrote (holding plane0/, plane1/, ...)")
    sources = sorted((int(match.group(1)), entry / "iscell.npy") for entry in folder.iterdir() if entry.is_dir() and (match := PLANE_FOLDER.match(entry.name)) and (entry / "iscell.npy").is_file())
    if not sources:
        raise InputError(f"{folder}: no plane{{k}}/iscell.npy; give the folder `cindra-dask export suite2p` wrote (holding plane0/iscell.npy, ...)")
    planes = set(plane_indices(store))
    updates: list[tuple[PlaneCuration, np.ndarray]] = []
    for plane, source in sources:
        array_path = f"{stage_path(plane, EXTRACTION)}/{CLASSIFICATION}"
        if plane not in planes or array_path not in store:
            raise OutputError(f"{store.path}: has no {array_path} for {source}; import into the store this folder was exported from")
        current = store.read(array_path).astype(np.float32).reshape(-1, 2)
        edited = _read_iscell(source, roi_count=len(current), plane=plane)
        changed = np.flatnonzero(np.any(edited != current, axis=1))
        updates.append((PlaneCuration(plane, source, len(current), tuple(int(row) for row in changed)), edited))
    if any(curation.changed_rows for curation, _ in updates):
        _write(store, updates)
    return [curation for curation, _ in updates]


def label_rois(store_path: RecordingStore | Path | str, *, plane: int, rows: Sequence[int], is_cell: bool) -> PlaneCuration:
    """Mark ROIs of a plane as cells or not cells, as the viewer does (`cindra-dask view`).

    Parameters
    ----------
    store_path : a processed recording store.
    plane : the plane whose ``extraction/cell_classification`` changes.
    rows : ROI indices (rows of the plane's ROIs).
    is_cell : the label they get (column 0 becomes 1.0 or 0.0; the classifier's probability stays).

    Returns
    -------
    The `PlaneCuration` (source `VIEWER_SOURCE`), ``changed_rows`` those whose label differed. They are
    written as `import_curation` writes (one ``curation_history`` entry, the combined classification,
    the manifest), under the store's lock; nothing is written when no label changes.

    Raises
    ------
    OutputError : not a store, the plane has no classification, a row outside its ROIs, or a run holds the lock.
    """
    store = open_existing_store(store_path)
    array_path = f"{stage_path(plane, EXTRACTION)}/{CLASSIFICATION}"
    if array_path not in store:
        raise OutputError(f"{store.path}: has no {array_path}; run the process phase (extraction classifies the ROIs) before curating")
    edited = store.read(array_path).astype(np.float32).reshape(-1, 2)
    selected = np.unique(np.asarray(rows, np.int64))
    if selected.size and (selected[0] < 0 or selected[-1] >= len(edited)):
        raise OutputError(f"{store.path}: plane {plane} has {len(edited)} ROIs; no ROI {int(selected[-1] if selected[-1] >= len(edited) else selected[0])}")
    changed = selected[edited[selected, 0] != float(is_cell)]
    edited[changed, 0] = float(is_cell)
    curation = PlaneCuration(plane, VIEWER_SOURCE, len(edited), tuple(int(row) for row in changed))
    if changed.size:
        _write(store, [(curation, edited)])
    return curation


def _write(store: RecordingStore, updates: list[tuple[PlaneCuration, np.ndarray]]) -> None:
    imported = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    combined_path = f"{COMBINED}/{EXTRACTION}/{CLASSIFICATION}"
    included = [int(plane) for plane in store.group_attributes(COMBINED).get("included_planes", [])] if combined_path in store else []
    offsets: dict[int, int] = {}
    start = 0
    for plane in included:
        offsets[plane] = start
        start += store.read_rois(stage_path(plane, ROIS)).count
    if included and array_shape(store, combined_path)[0] != start:
        warnings.warn(f"{store.path}: {combined_path} does not hold the planes' {start} ROIs (combine is stale); it is left as it is — rerun combine", stacklevel=3)
        offsets = {}
    with store.locked():
        for curation, edited in updates:
            rows = np.asarray(curation.changed_rows, np.int64)
            if rows.size == 0:
                continue
            entry = {"imported": imported, "source": str(curation.source)}
            store.update_rows(f"{stage_path(curation.plane, EXTRACTION)}/{CLASSIFICATION}", rows, edited[rows], history_attribute=HISTORY_ATTRIBUTE, history_entry=entry)
            if curation.plane in offsets:
                store.update_rows(combined_path, rows + offsets[curation.plane], edited[rows], history_attribute=HISTORY_ATTRIBUTE, history_entry=entry)
    from cindra_dask.manifest import manifest_path, write_manifest

    if manifest_path(store).is_file():
        write_manifest(store)
