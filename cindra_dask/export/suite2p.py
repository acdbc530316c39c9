"""suite2p-compatible export: a store's per-plane results as the files suite2p writes and its GUI loads.

For each plane with extraction outputs, ``<output_dir>/plane{k}/`` receives

``stat.npy``
    object array of one dict per ROI with suite2p's keys: ``ypix``, ``xpix`` (int32), ``lam``
    (float32), ``med`` ([y, x] from ``centroids``), ``npix``, ``npix_soma``, ``soma_crop``,
    ``overlap``, ``mrs``, ``mrs0``, ``compact``, ``solidity``, ``npix_norm``, ``radius``,
    ``aspect_ratio``, ``footprint``, ``skew``, ``iplane``, plus every other per-ROI statistic of
    ``plane_k/rois`` under its own name.
``F.npy``, ``Fneu.npy``, ``spks.npy``
    (n, T) float32: ``cell_fluorescence``, ``neuropil_fluorescence``, ``spikes``.
``iscell.npy``
    (n, 2) float32 ``cell_classification`` ([is_cell 0/1, probability]).
``F_chan2.npy``, ``Fneu_chan2.npy``, ``redcell.npy``
    with a structural second channel only.
``ops.npy``
    dict: ``Ly``, ``Lx``, ``nframes``, ``fs``, ``tau``, ``nplanes``, ``nchannels``, ``iplane``,
    ``diameter``, ``meanImg``, ``meanImgE``, ``refImg``, ``max_proj`` and ``Vcorr`` (cropped to
    ``yrange``/``xrange``, as suite2p stores them), ``yoff``, ``xoff``, ``corrXY``, ``yoff1``,
    ``xoff1``, ``corrXY1``, ``yblock``, ``xblock``, ``nblocks``, ``block_size``, ``badframes``,
    ``badframes0``, ``yrange``, ``xrange``, ``tPC``/``regPC``/``regDX`` when PC metrics exist,
    ``plane_times`` and ``cindra_dask_configuration`` (YAML text).
``db.npy``, ``settings.npy``, ``reg_outputs.npy``, ``detect_outputs.npy``
    the same dict split as suite2p 1.x splits it, so both of its GUI loaders (``stat.npy`` and
    "load folder", which calls ``suite2p.io.combined``) work.

Offset signs: our ``rigid_offsets[t] = (dy, dx)`` means frame t shows the reference moved by +dy
rows and +dx columns, and registration moves it back by (−dy, −dx). suite2p's ``yoff``/``xoff``
follow the same convention: its registration rolls each frame by ``(−yoff, −xoff)``
(``suite2p.registration.register.shift_frames``) and samples nonrigid blocks at ``y + yoff1``. So
``yoff = dy`` and ``xoff = dx`` (likewise ``yoff1``/``xoff1``) with no sign change. suite2p's rigid
offsets are integers: we export int32 when every offset is whole, float32 (sub-pixel) otherwise.

Traces are copied chunk row by chunk row into ``.npy`` memory maps, so memory stays bounded. Every
plane is written into a hidden temporary folder beside its final one (``.plane{k}.*.partial``) and
renamed into place only when every plane is complete: an export that fails (a full disk, a damaged
store) leaves no partial files, and an earlier export in the folder unchanged.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from cindra_dask.config import SingleRecordingConfiguration
from cindra_dask.errors import DISK_FULL_REASONS, ConfigurationError, OutputError, nearest_existing_path
from cindra_dask.store import DETECTION, EXTRACTION, REGISTRATION, ROIS, RecordingStore, arrays_under, input_file_attributes, open_existing_store, plane_indices, stage_path

STAT_NAMES = {
    "pixel_count": "npix",
    "soma_pixel_count": "npix_soma",
    "mean_radius": "mrs",
    "baseline_mean_radius": "mrs0",
    "compactness": "compact",
    "solidity": "solidity",
    "normalized_pixel_count": "npix_norm",
    "radius_px": "radius",
    "aspect_ratio": "aspect_ratio",
    "footprint": "footprint",
    "skewness": "skew",
}
"""Per-ROI statistics of ``plane_k/rois`` → suite2p ``stat`` key."""

RAGGED_STAT_NAMES = {"soma_mask": "soma_crop", "overlap_mask": "overlap"}
"""Per-pixel (ragged, like ``ypix``) statistics → suite2p ``stat`` key."""

_NOT_STATISTICS = {"pixel_offsets", "ypix", "xpix", "lam", "centroids"}

TRACE_FILES = {"F.npy": "cell_fluorescence", "Fneu.npy": "neuropil_fluorescence", "spks.npy": "spikes"}
STRUCTURAL_TRACE_FILES = {"F_chan2.npy": "cell_fluorescence_channel_2", "Fneu_chan2.npy": "neuropil_fluorescence_channel_2"}

COPY_BYTES = 32 * 2**20
"""Decoded bytes a trace copy holds at a time (rounded to whole chunk rows, at least one)."""

DB_KEYS = ("data_path", "file_list", "h5py", "h5py_key", "save_path", "save_path0", "save_folder", "nplanes", "nrois", "nchannels", "functional_chan", "iplane", "Ly", "Lx", "nframes", "dx", "dy", "ignore_flyback", "input_format")
SETTINGS_KEYS = ("tau", "fs", "diameter", "aspect", "version", "cindra_dask_configuration", "plane_times")
DETECT_KEYS = ("Vcorr", "max_proj", "meanImg_crop", "spatscale_pix", "diameter")


def _find_array(store: RecordingStore, group_path: str, suffix: str) -> str | None:
    """First array below ``group_path`` whose name ends with ``suffix``."""
    return next((path for path in arrays_under(store, group_path) if path.endswith(suffix)), None)


def slab_rows(shape: Sequence[int], chunks: Sequence[int], *, itemsize: int, max_read_bytes: int = COPY_BYTES) -> int:
    """Rows (along axis 0) copied at a time: whole chunk rows fitting ``max_read_bytes``, at least one chunk row.

    Parameters
    ----------
    shape, chunks : the array's shape and chunk shape (same length ≥ 1).
    itemsize : bytes per element.
    max_read_bytes : decoded bytes to hold at a time.
    """
    if len(shape) == 0:
        return 1
    row_bytes = max(1, math.prod(shape[1:]) * itemsize)
    chunk_rows = max(1, int(chunks[0]))
    fitting = (max_read_bytes // row_bytes) // chunk_rows * chunk_rows
    return int(max(chunk_rows, fitting))


def _copy_rows(store: RecordingStore, array_path: str, target: Path, *, dtype: Any = np.float32) -> None:
    """Stream a zarr array into an ``.npy`` file, one chunk row (axis 0) at a time."""
    source = store.array(array_path)
    output = np.lib.format.open_memmap(target, mode="w+", dtype=dtype, shape=tuple(source.shape))
    rows = slab_rows(source.shape, source.chunks, itemsize=np.dtype(dtype).itemsize)
    for start in range(0, source.shape[0], rows):
        output[start : start + rows] = store.read_selection(array_path, slice(start, start + rows))
    output.flush()
    del output


def _offsets(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float32)
    return values.astype(np.int32) if values.size and np.all(values == np.round(values)) else values


def _blocks(centers: np.ndarray, block_size: tuple[int, int], frame_shape: tuple[int, int]) -> dict[str, Any]:
    """suite2p's ``yblock``/``xblock`` ([start, stop] per block, row-major), ``nblocks``, ``block_size``."""
    centers = np.asarray(centers, np.float64).reshape(-1, 2)
    sizes = [min(int(block_size[axis]), frame_shape[axis]) for axis in range(2)]
    y_centers, x_centers = np.unique(centers[:, 0]), np.unique(centers[:, 1])
    starts = np.round(centers - np.array(sizes) / 2).astype(int)
    yblock = [np.array([start, start + sizes[0]]) for start in starts[:, 0]]
    xblock = [np.array([start, start + sizes[1]]) for start in starts[:, 1]]
    return {"yblock": yblock, "xblock": xblock, "nblocks": [len(y_centers), len(x_centers)], "block_size": sizes}


def _stat(store: RecordingStore, plane: int) -> np.ndarray:
    """suite2p ``stat`` of one plane: one dict per ROI."""
    group = stage_path(plane, ROIS)
    rois = store.read_rois(group)
    count = rois.count
    names = [path.rsplit("/", 1)[1] for path in arrays_under(store, group) if path.count("/") == group.count("/") + 1]
    per_roi: dict[str, np.ndarray] = {}
    ragged: dict[str, np.ndarray] = {}
    total_pixels = int(rois.pixel_offsets[-1])
    for name in names:
        if name in _NOT_STATISTICS:
            continue
        values = store.read(f"{group}/{name}")
        if name in RAGGED_STAT_NAMES and values.shape[:1] == (total_pixels,):
            ragged[RAGGED_STAT_NAMES[name]] = values.astype(bool)
        elif values.ndim >= 1 and values.shape[0] == count and name not in RAGGED_STAT_NAMES:
            per_roi[STAT_NAMES.get(name, name)] = values
    centroids = store.read(f"{group}/centroids") if "centroids" in names else None
    stat = np.empty(count, dtype=object)
    for index in range(count):
        start, stop = int(rois.pixel_offsets[index]), int(rois.pixel_offsets[index + 1])
        ypix, xpix = rois.ypix[start:stop].astype(np.int32), rois.xpix[start:stop].astype(np.int32)
        if centroids is not None:
            med = [int(centroids[index][0]), int(centroids[index][1])]
        else:
            med = [int(np.median(ypix)) if ypix.size else 0, int(np.median(xpix)) if xpix.size else 0]
        entry: dict[str, Any] = {"ypix": ypix, "xpix": xpix, "lam": rois.lam[start:stop].astype(np.float32), "med": med, "npix": stop - start, "iplane": plane}
        for key, values in ragged.items():
            entry[key] = values[start:stop]
        for key, values in per_roi.items():
            value = values[index]
            entry[key] = value.item() if np.ndim(value) == 0 else np.asarray(value)
        stat[index] = entry
    return stat


def _read_optional(store: RecordingStore, array_path: str) -> np.ndarray | None:
    return store.read(array_path) if array_path in store else None


def _input_ops(attributes: dict[str, Any]) -> dict[str, Any]:
    """suite2p's description of the input: ``data_path``, ``file_list``, ``input_format`` (``tif``, ``h5`` (HDF5, NWB) with ``h5py``,
    ``h5py_key``, or ``zarr``, which suite2p does not read)."""
    kind = input_file_attributes(attributes.get("input_format") or "tiff")
    directory, names = str(attributes.get(f"{kind}_directory") or ""), list(attributes.get(f"{kind}_files") or [])
    if kind == "hdf5":
        return {"data_path": [directory], "file_list": names, "input_format": "h5", "h5py": [str(Path(directory) / name) for name in names], "h5py_key": attributes.get("hdf5_dataset") or "data"}
    return {"data_path": [directory], "file_list": names, "input_format": "tif" if kind == "tiff" else kind}


def _ops(store: RecordingStore, plane: int, plane_directory: Path, *, attributes: dict[str, Any], configuration: SingleRecordingConfiguration) -> dict[str, Any]:
    """The ops dict of one plane (see the module docstring for its keys)."""
    registration_group, detection_group = stage_path(plane, REGISTRATION), stage_path(plane, DETECTION)
    traces = store.array(f"{stage_path(plane, EXTRACTION)}/cell_fluorescence")
    frame_count = int(traces.shape[1])
    acquisition = attributes.get("acquisition") or {}
    planes = attributes.get("planes") or []
    plane_info = next((entry for entry in planes if int(entry.get("index", -1)) == plane), None)
    reference = _read_optional(store, f"{registration_group}/reference_image")
    mean_image = _read_optional(store, f"{detection_group}/mean_image")
    some_image = next((image for image in (mean_image, reference) if image is not None), None)
    if some_image is None:
        raise OutputError(f"{store.path}: plane {plane} has neither {detection_group}/mean_image nor {registration_group}/reference_image; rerun the process phase")
    height, width = (int(size) for size in some_image.shape)
    registration_attributes = store.group_attributes(registration_group)
    y_range = [int(value) for value in registration_attributes.get("valid_y_range", (0, height))]
    x_range = [int(value) for value in registration_attributes.get("valid_x_range", (0, width))]
    main = configuration.main
    frame_rate = float(acquisition.get("frame_rate", 0.0) or 0.0)
    plane_number = int(acquisition.get("plane_number", 1) or 1)
    diameter = store.group_attributes(stage_path(plane, ROIS)).get("diameter_px")
    ops: dict[str, Any] = {
        **_input_ops(attributes),
        "save_path0": str(plane_directory.parent),
        "save_folder": plane_directory.parent.name,
        "save_path": str(plane_directory),
        "nplanes": len(planes) or plane_number,
        "nrois": int(acquisition.get("roi_number", 1) or 1),
        "nchannels": int(acquisition.get("channel_number", 1) or 1),
        "functional_chan": 1 if main.first_channel_functional else 2,
        "ignore_flyback": list(main.ignored_flyback_planes),
        "iplane": plane,
        "Ly": height,
        "Lx": width,
        "nframes": frame_count,
        "dy": float(plane_info["y_offset"]) if plane_info and int(acquisition.get("roi_number", 1) or 1) > 1 else None,
        "dx": float(plane_info["x_offset"]) if plane_info and int(acquisition.get("roi_number", 1) or 1) > 1 else None,
        "fs": frame_rate / plane_number if frame_rate else 0.0,
        "tau": float(main.tau),
        "diameter": [float(diameter), float(diameter)] if diameter is not None else [0.0, 0.0],
        "aspect": 1.0,
        "version": f"cindra-dask {_version()}",
        "cindra_dask_configuration": attributes.get("configuration", ""),
        "yrange": y_range,
        "xrange": x_range,
    }
    crop = (slice(y_range[0], y_range[1]), slice(x_range[0], x_range[1]))
    if mean_image is not None:
        ops["meanImg"] = mean_image.astype(np.float32)
        ops["meanImg_crop"] = ops["meanImg"][crop]
    elif reference is not None:
        ops["meanImg"] = reference.astype(np.float32)
    enhanced = _read_optional(store, f"{detection_group}/enhanced_mean_image")
    if enhanced is not None:
        ops["meanImgE"] = enhanced.astype(np.float32)
    for key, name in (("max_proj", "maximum_projection"), ("Vcorr", "correlation_map")):
        image = _read_optional(store, f"{detection_group}/{name}")
        if image is not None:
            ops[key] = image.astype(np.float32)[crop]
    if reference is not None:
        ops["refImg"] = reference.astype(np.float32)
    rigid = _read_optional(store, f"{registration_group}/rigid_offsets")
    if rigid is not None:
        ops["yoff"], ops["xoff"] = _offsets(rigid[:, 0]), _offsets(rigid[:, 1])
    correlations = _read_optional(store, f"{registration_group}/rigid_correlations")
    if correlations is not None:
        ops["corrXY"] = correlations.astype(np.float32)
    nonrigid = _read_optional(store, f"{registration_group}/nonrigid_offsets")
    if nonrigid is not None and nonrigid.ndim == 3 and nonrigid.shape[1] > 0:
        ops["yoff1"], ops["xoff1"] = nonrigid[..., 0].astype(np.float32), nonrigid[..., 1].astype(np.float32)
        block_correlations = _read_optional(store, f"{registration_group}/nonrigid_correlations")
        if block_correlations is not None:
            ops["corrXY1"] = block_correlations.astype(np.float32)
        centers = _read_optional(store, f"{registration_group}/block_centers")
        block_size = configuration.nonrigid_registration.block_size
        if centers is not None and len(centers) == nonrigid.shape[1]:
            ops.update(_blocks(centers, tuple(block_size), (height, width)))
    user_bad = np.zeros(frame_count, bool)
    indices = np.asarray(attributes.get("bad_frame_indices") or [], np.int64)
    user_bad[indices[(indices >= 0) & (indices < frame_count)]] = True
    bad = _read_optional(store, f"{registration_group}/bad_frames")
    ops["badframes0"] = user_bad
    ops["badframes"] = (bad.astype(bool)[:frame_count] | user_bad) if bad is not None else user_bad
    ops["bidiphase"] = float(registration_attributes.get("bidirectional_offset_px", 0) or 0)
    ops.update(_pc_metrics(store, registration_group))
    channel_2_mean = _read_optional(store, f"{detection_group}/mean_image_channel_2")
    if channel_2_mean is not None:
        ops["meanImg_chan2"] = channel_2_mean.astype(np.float32)
    corrected = _read_optional(store, f"{stage_path(plane, EXTRACTION)}/corrected_structural_mean_image")
    if corrected is not None:
        ops["meanImg_chan2_corrected"] = corrected.astype(np.float32)
    ops["plane_times"] = {step: record.duration_s for key, record in store.phase_records().items() for step in [key.split("/")[0]] if key.endswith(f"/plane_{plane}") and record.duration_s is not None}
    return ops


def _pc_metrics(store: RecordingStore, registration_group: str) -> dict[str, Any]:
    """``regDX`` (k, 3), ``tPC`` (n, k), ``regPC`` (2, k, vh, vw) from the registration PC metrics, if any."""
    found: dict[str, Any] = {}
    shift = _find_array(store, registration_group, "shift_metrics")
    if shift is not None:
        found["regDX"] = store.read(shift).astype(np.float32)
    projections = _find_array(store, registration_group, "projections")
    if projections is not None:
        found["tPC"] = store.read(projections).astype(np.float32)
    extremes = _find_array(store, registration_group, "extreme_images")
    low, high = _find_array(store, registration_group, "low_images"), _find_array(store, registration_group, "high_images")
    if extremes is not None:
        found["regPC"] = store.read(extremes).astype(np.float32)
    elif low is not None and high is not None:
        found["regPC"] = np.stack([store.read(low), store.read(high)]).astype(np.float32)
    return found


def _version() -> str:
    from cindra_dask import __version__

    return __version__


def _split_ops(ops: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """suite2p 1.x's split of ops into db / settings / reg_outputs / detect_outputs."""
    db = {key: ops[key] for key in DB_KEYS if key in ops}
    if "meanImg" in ops:
        db["meanImg"] = ops["meanImg"]
    settings = {key: ops[key] for key in SETTINGS_KEYS if key in ops}
    detect = {key: ops[key] for key in DETECT_KEYS if key in ops}
    taken = set(DB_KEYS) | set(SETTINGS_KEYS) | set(DETECT_KEYS)
    registration = {key: value for key, value in ops.items() if key not in taken}
    return {"db.npy": db, "settings.npy": settings, "reg_outputs.npy": registration, "detect_outputs.npy": detect}


def _check_output_folder(output: Path) -> None:
    """Create the export folder; :class:`OutputError` when it (or a folder above it) is a file or cannot be created."""
    blocking = next((path for path in (output, *output.parents) if path.exists() and not path.is_dir()), None)
    if blocking is not None:
        raise OutputError(f"{output}: {'is' if blocking == output else f'lies under {blocking}, which is'} a file, not a folder; give a folder to export into")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{output}: cannot create the export folder ({error.strerror or error}); choose a folder you can write to") from None


def _write_failure(output: Path, error: OSError) -> str:
    """One line for a write that failed (a full disk, permissions); nothing of the export was kept."""
    if error.errno in DISK_FULL_REASONS:
        from dask.utils import format_bytes

        free = shutil.disk_usage(nearest_existing_path(output)).free
        return f"{output}: {DISK_FULL_REASONS[error.errno]} ({format_bytes(free)} free); nothing was exported (earlier files are unchanged); free some space or export elsewhere"
    return f"{getattr(error, 'filename', None) or output}: cannot write ({error.strerror or error}); nothing was exported (earlier files are unchanged)"


def _move_into_place(temporary: Path, final: Path, names: Sequence[str]) -> None:
    """Rename a finished plane folder to its final name, or (an earlier export there) replace its files one by one."""
    if not final.exists():
        os.rename(temporary, final)
        return
    for name in names:
        os.replace(temporary / name, final / name)
    temporary.rmdir()


def _write_plane(store: RecordingStore, plane: int, directory: Path, final: Path, *, attributes: dict[str, Any], configuration: dict[str, Any]) -> list[str]:
    """Every file of one plane into ``directory`` (``ops`` names ``final``, where it will be); their names in order."""
    names: list[str] = []
    extraction = stage_path(plane, EXTRACTION)
    stat = _stat(store, plane)
    np.save(directory / "stat.npy", stat, allow_pickle=True)
    names.append("stat.npy")
    files = dict(TRACE_FILES)
    if f"{extraction}/cell_fluorescence_channel_2" in store:
        files.update(STRUCTURAL_TRACE_FILES)
    for file_name, array_name in files.items():
        target = directory / file_name
        if f"{extraction}/{array_name}" in store:
            _copy_rows(store, f"{extraction}/{array_name}", target)
        else:
            traces = store.array(f"{extraction}/cell_fluorescence")
            np.save(target, np.zeros(traces.shape, np.float32))
        names.append(file_name)
    classification = _read_optional(store, f"{extraction}/cell_classification")
    if classification is None:
        classification = np.column_stack([np.ones(len(stat)), np.ones(len(stat))])
    np.save(directory / "iscell.npy", classification.astype(np.float32).reshape(len(stat), 2))
    names.append("iscell.npy")
    colocalization = _read_optional(store, f"{extraction}/cell_colocalization")
    if colocalization is not None:
        np.save(directory / "redcell.npy", colocalization.astype(np.float32).reshape(len(stat), 2))
        names.append("redcell.npy")
    ops = _ops(store, plane, final, attributes=attributes, configuration=configuration)
    np.save(directory / "ops.npy", ops, allow_pickle=True)
    names.append("ops.npy")
    for file_name, part in _split_ops(ops).items():
        np.save(directory / file_name, part, allow_pickle=True)
        names.append(file_name)
    return names


def export_suite2p(store_path: Path | str, output_dir: Path | str, *, overwrite: bool = False) -> list[Path]:
    """Write a store's per-plane results as suite2p output folders ``<output_dir>/plane{k}/``.

    Parameters
    ----------
    store_path : the recording store (``<recording>.zarr``).
    output_dir : folder receiving ``plane0/``, ``plane1/``, ... (suite2p's ``save_path0/suite2p``).
    overwrite : replace existing exported files (otherwise an existing ``stat.npy`` is an error).

    Returns
    -------
    Every file written, in order (all planes' files appear together at the end). Planes without extraction outputs (flyback planes, planes not
    processed yet) are skipped with a warning; a store with none raises :class:`OutputError`.
    See the module docstring for the files, keys and the offset sign convention.
    """
    store = open_existing_store(store_path)
    output = Path(output_dir).expanduser().absolute()
    if output == store.path.absolute() or store.path.absolute() in output.parents:
        raise OutputError(f"{output}: inside the store {store.path}; export to a folder outside it")
    attributes = store.attributes()
    try:
        configuration = store.recorded_configuration()
    except (yaml.YAMLError, ConfigurationError):  # an unreadable record: the defaults
        configuration = SingleRecordingConfiguration()
    planes, skipped = [], []
    for plane in plane_indices(store):
        (planes if f"{stage_path(plane, EXTRACTION)}/cell_fluorescence" in store else skipped).append(plane)
    if not planes:
        raise OutputError(f"{store.path}: no plane has extraction outputs (plane_k/extraction/cell_fluorescence); run the process phase first (`cindra-dask run`)")
    if skipped:
        warnings.warn(f"{store.path}: plane(s) {', '.join(map(str, skipped))} have no extraction outputs and are not exported", stacklevel=2)
    _check_output_folder(output)
    if not overwrite:
        existing = [output / f"plane{plane}" / "stat.npy" for plane in planes if (output / f"plane{plane}" / "stat.npy").exists()]
        if existing:
            raise OutputError(f"{existing[0]}: exists; export to an empty folder or pass overwrite=True (`--overwrite`)")
    written: list[Path] = []
    staged: list[tuple[Path, Path, list[str]]] = []  # (temporary folder, final folder, file names)
    try:
        for plane in planes:
            final = output / f"plane{plane}"
            temporary = output / f".plane{plane}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
            temporary.mkdir()  # permissions from the umask, as the final folder's (mkdtemp's would be 0700)
            staged.append((temporary, final, []))
            staged[-1][2].extend(_write_plane(store, plane, temporary, final, attributes=attributes, configuration=configuration))
        for temporary, final, names in staged:
            _move_into_place(temporary, final, names)
            written += [final / name for name in names]
    except OSError as error:
        raise OutputError(_write_failure(output, error)) from None
    finally:
        for temporary, _, _ in staged:
            if temporary.exists():
                shutil.rmtree(temporary, ignore_errors=True)
    return written
