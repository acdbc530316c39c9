"""The store's output manifest (``<store>/datapackage.json``), its verification, reset and cleaning.

The manifest is a Frictionless-style data package descriptor: one resource per Zarr array (path,
shape, dtype, chunks, dimension names, decoded size and a SHA-256 checksum), plus the run's
configuration (YAML text), the package versions and the phase records with their timings.

Checksums are taken over each array's *stored* chunk files, read as bytes without decoding
(Frictionless' "hash of the resource's bytes"; `array_checksum` defines the digest exactly), so a
manifest costs one read of the compressed data and any change to a stored byte shows. They depend
on the codecs and chunking, both recorded in the array's metadata.

``reset_store`` and ``clean_store`` take the store's lock, so they never run beside a pipeline
run, and they keep the manifest in step with what they removed (without re-hashing the rest).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cindra_dask.errors import OutputError
from cindra_dask.store import COMBINED, MULTI_RECORDING, RAW, RecordingStore, open_existing_store, versions, write_json_atomically

MANIFEST_FILE_NAME = "datapackage.json"
MANIFEST_VERSION = 2
"""2: checksums over stored chunk bytes (`array_checksum`); 1 (sessions before 2026-11-24): over decoded values."""
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
"""Arrays checksummed concurrently (threads: file reads and hashing release the GIL)."""
_ABSENT_CHUNK = (2**64 - 1).to_bytes(8, "little")

# ---------------------------------------------------------------------------------------------
# checksums
# ---------------------------------------------------------------------------------------------


def array_checksum(folder: Path) -> str:
    """SHA-256 (hex) of a Zarr array's stored chunks, read as files (nothing is decoded).

    For every stored unit of the chunk grid (chunks, or shards when the array is sharded) in C
    order of its grid coordinates: the size of its file in bytes as 8 little-endian bytes, then the
    file's bytes; a unit without a file (all fill value, which Zarr does not store) contributes the
    size 2**64 − 1 alone. Memory: one chunk file at a time.

    Parameters
    ----------
    folder : the array's folder (holding its ``zarr.json``).
    """
    import zarr

    array = zarr.open_array(str(folder), mode="r")
    unit_shape = array.shards or array.chunks
    digest = hashlib.sha256()
    for coordinates in itertools.product(*(range(math.ceil(size / unit)) for size, unit in zip(array.shape, unit_shape))):
        try:
            payload = (folder / array.metadata.encode_chunk_key(coordinates)).read_bytes()
        except FileNotFoundError:
            digest.update(_ABSENT_CHUNK)
            continue
        digest.update(len(payload).to_bytes(8, "little"))
        digest.update(payload)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# writing and reading the manifest
# ---------------------------------------------------------------------------------------------


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return dt.datetime.now(tz=dt.timezone.utc).isoformat(timespec="seconds")


def manifest_path(store: RecordingStore | Path | str) -> Path:
    """``<store>/datapackage.json``."""
    path = store.path if isinstance(store, RecordingStore) else Path(store)
    return path / MANIFEST_FILE_NAME


def _resource_name(array_path: str) -> str:
    """Frictionless resource name: lower case, digits and ``-._/`` only."""
    return re.sub(r"[^a-z0-9._/-]", "-", array_path.lower())


def describe_array(store: RecordingStore, array_path: str) -> dict[str, Any]:
    """The manifest resource of one array (reads its chunk files once to checksum them)."""
    array = store.array(array_path)
    dtype = np.dtype(array.dtype)
    dimension_names = getattr(array.metadata, "dimension_names", None)
    return {
        "name": _resource_name(array_path),
        "path": array_path,
        "format": "zarr",
        "mediatype": "application/x-zarr-array",
        "shape": [int(size) for size in array.shape],
        "dtype": dtype.name,
        "chunks": [int(size) for size in array.chunks],
        "dimension_names": list(dimension_names) if dimension_names else None,
        "decoded_bytes": int(math.prod(array.shape) * dtype.itemsize),
        "hash": "sha256:" + array_checksum(store.path / array_path),
    }


def _modified_since(directory: Path, time_ns: int) -> bool:
    """Whether any file or folder under ``directory`` (itself included) has an mtime at or after ``time_ns``.

    Folders count because removing a chunk file (Zarr drops chunks that are all fill value) changes
    only its folder's mtime.
    """
    if directory.stat().st_mtime_ns >= time_ns:
        return True
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if _modified_since(Path(entry.path), time_ns):
                    return True
            elif entry.stat(follow_symlinks=False).st_mtime_ns >= time_ns:
                return True
    return False


def _unchanged_resources(store: RecordingStore) -> dict[str, dict[str, Any]]:
    """The previous manifest's resources whose arrays no file was written to since it was written (by path)."""
    path = manifest_path(store)
    try:
        written_ns = path.stat().st_mtime_ns
        descriptor = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if not isinstance(descriptor, dict) or descriptor.get("cindra_dask_manifest_version") != MANIFEST_VERSION or not isinstance(descriptor.get("resources"), list):
        return {}
    return {
        resource["path"]: resource
        for resource in descriptor["resources"]
        if isinstance(resource, dict) and isinstance(resource.get("path"), str) and (store.path / resource["path"]).is_dir() and not _modified_since(store.path / resource["path"], written_ns)
    }


def _phase_summary(store: RecordingStore) -> dict[str, Any]:
    records = {name: record._asdict() for name, record in store.phase_records().items()}
    durations = [record["duration_s"] for record in records.values() if record["status"] == "complete" and record["duration_s"] is not None]
    return {"phases": records, "total_duration_s": round(float(sum(durations)), 3)}


def _package_name(store: RecordingStore) -> str:
    stem = store.path.name.removesuffix(".zarr")
    return re.sub(r"[^a-z0-9._-]", "-", stem.lower()) or "recording"


def _parallel(function: Any, items: Sequence[Any], *, workers: int) -> list[Any]:
    from concurrent.futures import ThreadPoolExecutor

    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cindra-checksum") as pool:
        return list(pool.map(function, items))


def write_manifest(store: RecordingStore | Path | str, *, workers: int = DEFAULT_WORKERS, rehash: bool = False, take_lock: bool = True) -> Path:
    """Write ``<store>/datapackage.json`` describing every array, the configuration, versions and phases.

    Parameters
    ----------
    store : the recording store (or its path).
    workers : arrays checksummed concurrently (threads); peak memory ≈ workers × one chunk file.
    rehash : checksum every array; by default an array none of whose files (or folders) was
        modified since the previous manifest was written keeps that manifest's entry, so a
        checksum records the array as its phase wrote it (the raw movie is hashed after ingest,
        not again after every later phase; `verify_store` always recomputes).

    Returns
    -------
    The manifest's path. Reads each checksummed array's chunk files once; the file is replaced
    atomically. Holds the store's lock while it reads and writes, like every writer, so it is
    refused while a run holds it (:class:`OutputError`); ``take_lock=False`` is for the runner,
    which calls it at the end of a run while it holds the lock.
    """
    store = open_existing_store(store)
    if take_lock:
        with store.locked():
            return write_manifest(store, workers=workers, rehash=rehash, take_lock=False)
    unchanged = {} if rehash else _unchanged_resources(store)
    attributes = store.attributes()
    descriptor: dict[str, Any] = {
        "profile": "data-package",
        "name": _package_name(store),
        "title": f"cindra-dask recording store {store.path.name}",
        "created": utc_now(),
        "cindra_dask_manifest_version": MANIFEST_VERSION,
        "checksum": {
            "algorithm": "sha256",
            "over": "each array's stored chunk files in C order of the chunk grid, each as its size (8 bytes, little-endian; 2**64-1 for a chunk not stored) then its bytes",
        },
        "configuration": attributes.get("configuration"),
        "acquisition": attributes.get("acquisition"),
        "versions": versions(),
        **_phase_summary(store),
        "history": [],
        "resources": _parallel(lambda array_path: unchanged.get(array_path) or describe_array(store, array_path), store.array_paths(), workers=workers),
    }
    path = manifest_path(store)
    write_json_atomically(path, descriptor, indent=1)
    return path


def read_manifest(store: RecordingStore | Path | str) -> dict[str, Any]:
    """The manifest of a store as a dict; :class:`OutputError` if it is missing or unreadable."""
    store = open_existing_store(store)
    path = manifest_path(store)
    try:
        descriptor = json.loads(path.read_text())
    except FileNotFoundError:
        raise OutputError(f"{path}: no manifest; write one with `cindra-dask manifest {store.path}` (a complete run writes it)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OutputError(f"{path}: not valid JSON ({error}); rewrite it with `cindra-dask manifest {store.path}`") from None
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("resources"), list):
        raise OutputError(f"{path}: not a cindra-dask manifest (no 'resources' list); rewrite it with `cindra-dask manifest {store.path}`")
    return descriptor


def _rerun_hint(store: RecordingStore, array_path: str) -> str:
    """What to do about a damaged or missing array: rerun the phase that writes it."""
    parts = array_path.split("/")
    if parts[0] == MULTI_RECORDING:
        return "rerun the multi-recording dataset's phases (`cindra-dask run <multi-recording configuration> --force`)"
    if parts[0] == COMBINED:
        phase = "combine"
    elif len(parts) > 1 and parts[1] == RAW:
        phase = "ingest"
    else:
        phase = "process"
    return f"rerun phase '{phase}' (`cindra-dask reset {store.path} --phase {phase}`, then `cindra-dask run`)"


def verify_store(path: RecordingStore | Path | str, *, workers: int = DEFAULT_WORKERS) -> list[str]:
    """Recompute every checksum and compare the store with its manifest.

    Returns
    -------
    One line per difference (empty when the store matches), in manifest order: arrays missing,
    arrays whose shape or dtype changed, arrays whose stored bytes differ,
    then arrays not in the manifest, and a configuration that differs from the manifest's. Each
    line names the array and what to do. Raises :class:`OutputError` if the store or its
    manifest cannot be read, or was written by an older version whose checksums were defined
    otherwise. ``workers`` arrays are checksummed concurrently.
    """
    store = open_existing_store(path)
    descriptor = read_manifest(store)
    version = descriptor.get("cindra_dask_manifest_version")
    if version != MANIFEST_VERSION:
        raise OutputError(
            f"{manifest_path(store)}: manifest version {version} defines its checksums differently from this version ({MANIFEST_VERSION}), so they cannot be compared; "
            f"rewrite it with `cindra-dask manifest {store.path} --rehash` (it then records the store as it is now)"
        )
    findings: list[str | None] = []
    pending: list[tuple[int, str, str]] = []  # (finding index, array path, expected hash)
    listed: set[str] = set()
    for resource in descriptor["resources"]:
        array_path = str(resource.get("path"))
        listed.add(array_path)
        rerun = _rerun_hint(store, array_path)
        if array_path not in store:
            findings.append(f"{array_path}: missing (listed in the manifest); {rerun}")
            continue
        try:
            array = store.array(array_path)
        except OutputError:
            findings.append(f"{array_path}: metadata (zarr.json) is not valid JSON; {rerun}")
            continue
        shape, dtype_name = [int(size) for size in array.shape], np.dtype(array.dtype).name
        expected_shape, expected_dtype = list(resource.get("shape", [])), str(resource.get("dtype"))
        if shape != expected_shape or dtype_name != expected_dtype:
            findings.append(f"{array_path}: shape/dtype {tuple(shape)} {dtype_name} differ from the manifest's {tuple(expected_shape)} {expected_dtype}; {rerun}")
            continue
        pending.append((len(findings), array_path, str(resource.get("hash"))))
        findings.append(None)

    checksums = _parallel(lambda job: "sha256:" + array_checksum(store.path / job[1]), pending, workers=workers)
    for (index, array_path, expected), digest in zip(pending, checksums):
        rerun = _rerun_hint(store, array_path)
        if digest != expected:
            findings[index] = f"{array_path}: contents differ from the manifest (checksum {digest[:19]}… vs {expected[:19]}…); if this change was not intended, {rerun}; otherwise rewrite the manifest with `cindra-dask manifest {store.path}`"
    differences = [finding for finding in findings if finding is not None]
    listed_damaged = {finding.split(":", 1)[0] for finding in differences}
    for node_path in store.damaged_nodes():
        if node_path not in listed_damaged:
            differences.append(f"{node_path}: metadata (zarr.json) is not valid JSON; {_rerun_hint(store, node_path)}")
    for array_path in store.array_paths():
        if array_path not in listed:
            differences.append(f"{array_path}: not in the manifest (written after it, or added by hand); rewrite the manifest with `cindra-dask manifest {store.path}` if it belongs there")
    configuration = store.attributes().get("configuration")
    if descriptor.get("configuration") is not None and configuration != descriptor.get("configuration"):
        differences.append(f"{store.path}: the configuration in the root attributes differs from the manifest's; the outputs may come from another configuration — rerun, or rewrite the manifest with `cindra-dask manifest {store.path}`")
    return differences


def _finished_ns(finished: str | None) -> int | None:
    """A phase record's ISO 8601 ``finished`` time in ns since the epoch (None if absent or unreadable)."""
    if not finished:
        return None
    try:
        return int(dt.datetime.fromisoformat(finished).timestamp()) * 1_000_000_000
    except ValueError:
        return None


def _dtype_name(data_type: Any) -> str:
    """numpy's name of a Zarr v3 ``data_type`` (as written in the manifest), or its text."""
    try:
        return np.dtype(data_type).name
    except TypeError:
        return str(data_type)


def _array_metadata(folder: Path) -> dict[str, Any] | None:
    """The parsed ``zarr.json`` of an array folder; None if it is missing or unreadable."""
    try:
        metadata = json.loads((folder / "zarr.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return metadata if isinstance(metadata, dict) else None


def output_problems(store: RecordingStore, output_paths: Sequence[str], *, finished: str | None, excluded: Sequence[str] = ()) -> list[str]:
    """Why the outputs of a complete step cannot be trusted: one line per problem, empty when intact.

    Cheap: reads metadata and file times; an array is checksummed again only when one of its files
    (or folders) was modified after the manifest was written. Checks that every group in
    ``output_paths`` exists; that every array below them has readable metadata; and, when the
    manifest was written after the step ``finished`` (so it describes these outputs), that every
    array the manifest lists below them is present with the manifest's shape and dtype and, if
    modified since, still has the manifest's checksum. Arrays at or below ``excluded`` (another
    step's outputs nested in these groups, intermediates removed on purpose) are not checked.
    """
    excluded = tuple(excluded)

    def is_excluded(array_path: str) -> bool:
        return any(array_path == other or array_path.startswith(other + "/") for other in excluded)

    resources: dict[str, dict[str, Any]] = {}
    manifest_ns = None
    finished_ns = _finished_ns(finished)
    path = manifest_path(store)
    try:
        written_ns = path.stat().st_mtime_ns
        descriptor = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        descriptor = None
    if (
        isinstance(descriptor, dict)
        and descriptor.get("cindra_dask_manifest_version") == MANIFEST_VERSION
        and isinstance(descriptor.get("resources"), list)
        and finished_ns is not None
        and written_ns >= finished_ns
    ):
        manifest_ns = written_ns
        resources = {str(resource.get("path")): resource for resource in descriptor["resources"] if isinstance(resource, dict)}
    problems: list[str] = []
    for output in output_paths:
        if is_excluded(output):
            continue
        folder = store.path / output
        if _array_metadata(folder) is None:
            problems.append(f"{output}: {'unreadable metadata (zarr.json)' if (folder / 'zarr.json').exists() else 'missing'}")
            continue
        present = {}
        for metadata_file in sorted(folder.rglob("zarr.json")):
            array_path = metadata_file.parent.relative_to(store.path).as_posix()
            if metadata_file.parent == folder or is_excluded(array_path):
                continue
            metadata = _array_metadata(metadata_file.parent)
            if metadata is None:
                problems.append(f"{array_path}: unreadable metadata (zarr.json)")
            elif metadata.get("node_type") == "array":
                present[array_path] = metadata
        for array_path, resource in resources.items():
            if not (array_path.startswith(output + "/") or array_path == output) or is_excluded(array_path):
                continue
            metadata = present.get(array_path)
            if metadata is None:
                if not (store.path / array_path / "zarr.json").exists():
                    problems.append(f"{array_path}: missing (listed in the manifest)")
                continue
            shape, dtype_name = [int(size) for size in metadata.get("shape", [])], _dtype_name(metadata.get("data_type"))
            if shape != list(resource.get("shape", [])) or dtype_name != str(resource.get("dtype")):
                problems.append(f"{array_path}: shape/dtype {tuple(shape)} {dtype_name} differ from the manifest's")
            elif manifest_ns is not None and _modified_since(store.path / array_path, manifest_ns):
                try:
                    digest = "sha256:" + array_checksum(store.path / array_path)
                except Exception as error:  # unreadable metadata or chunk files
                    problems.append(f"{array_path}: unreadable ({type(error).__name__})")
                    continue
                if digest != resource.get("hash"):
                    problems.append(f"{array_path}: stored bytes changed since the manifest was written")
    return problems


def record_removal(store: RecordingStore, removed: Sequence[str], *, action: dict[str, Any]) -> None:
    """Drop removed arrays from an existing manifest, refresh its phase records, log the action."""
    path = manifest_path(store)
    if not path.is_file():
        return
    try:
        descriptor = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        warnings.warn(f"{path}: unreadable manifest left as it is; rewrite it with `cindra-dask manifest {store.path}`", stacklevel=3)
        return
    gone = set(removed)
    descriptor["resources"] = [resource for resource in descriptor.get("resources", []) if resource.get("path") not in gone]
    descriptor.update(_phase_summary(store))
    descriptor["modified"] = utc_now()
    descriptor.setdefault("history", []).append({**action, "at": descriptor["modified"], "removed_arrays": sorted(gone)})
    write_json_atomically(path, descriptor, indent=1)
