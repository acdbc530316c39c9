"""NWB export: a recording store's results as one Neurodata Without Borders file, written with pynwb.

``export_nwb(store, "session.nwb")`` (``cindra-dask export nwb STORE OUT.nwb``) writes, for every
plane whose extraction is complete (``k`` = the plane index); ``export_tracked_nwb(configuration,
folder)`` (``cindra-dask export nwb-tracked MULTI.yaml OUT_DIR``) writes one such file per recording
of a tracked dataset, ``<recording>.nwb``, with the track-id columns below:

``general``
    ``identifier`` a fresh UUID4 per file (two exports never share one), ``session_start_time`` and
    the rest of the configuration's ``metadata`` section (`resolve_metadata`), ``session_id`` = the
    recording name, ``Subject``, one ``Device`` (``metadata.device``); ``was_generated_by``
    cindra-dask and its version; ``notes`` the store's configuration YAML.
``general/optophysiology/ImagingPlanePlane{k}``
    one ``ImagingPlane`` per plane with its ``OpticalChannel``: indicator, location, excitation and
    emission wavelengths (nm), ``imaging_rate`` = the per-plane rate, ``grid_spacing`` =
    (pixel_size_um, pixel_size_um) µm when known, ``origin_coords`` = the MROI region's offset.
    Fields the metadata lacks are written as ``"unknown"`` / NaN (a warning names them).
``processing/ophys``
    ``ImageSegmentation/PlaneSegmentationPlane{k}``: one row per ROI (``id`` = the store's ROI index)
    with ``pixel_mask`` (x = column = ``xpix``, y = row = ``ypix``, weight = ``lam``), the classifier
    columns ``iscell`` (bool) and ``probability``, ``neuropil_coefficient``, ``estimated_tau_s``,
    ``colocalized``/``colocalization_probability`` (structural channel 2 only) and every per-ROI
    statistic of ``plane_k/rois`` under its store name. With ``tracking_dataset`` (the tracked export)
    also ``track_id`` (i8: the tracked cell of the dataset the ROI belongs to, the same id in every
    recording's file; `UNTRACKED` = −1 for an ROI in no tracked cell) and ``track_confidence`` (f4, NaN
    for −1), from ``multi_recording/<dataset>/rois`` (`tracking_columns`).
    ``Fluorescence/RoiResponseSeriesPlane{k}`` (F, ``cell_fluorescence``),
    ``Fluorescence/NeuropilPlane{k}`` (``neuropil_fluorescence``),
    ``Fluorescence/DeconvolvedPlane{k}`` (OASIS ``spikes``) and ``DfOverF/DfOverFPlane{k}``
    (``delta_f_over_f``, see the store contract): all (time, rois) float32 — the transpose of the
    store's (rois, time) — linked to that plane's segmentation.
    ``SummaryImagesPlane{k}`` (``Images``): ``mean``, ``enhanced_mean``, ``maximum_projection``,
    ``correlation`` (``plane_k/detection/*``).
    ``MotionCorrectionRigidOffsetsPlane{k}`` (T, 2) px, columns (dy, dx) exactly as
    ``plane_k/registration/rigid_offsets``: frame t shows the reference moved by +dy rows and +dx
    columns; ``MotionCorrectionNonrigidOffsetsPlane{k}`` (T, n_blocks, 2) px likewise, with the
    block centres (y, x) px in the table ``NonrigidBlocksPlane{k}``.
    ``TwoPhotonSeriesRegisteredPlane{k}`` with ``movie="registered"`` only: the motion-corrected
    frames in their source integer dtype.
``acquisition/TwoPhotonSeriesRawPlane0``
    with ``movie="external"`` only: the raw frames as the recording's TIFF files, ``external_file`` =
    their paths relative to the NWB file's folder, ``starting_frame`` = each file's first frame,
    ``format`` "external", nothing copied (`raw_movie_links`; one-plane, one-channel TIFF input only,
    since an external file holds consecutive frames of one series).

Orientation: NWB orders image axes (x, y) with x the column (its ``pixel_mask`` is (x, y, weight)),
so the movie is written (frame, x, y) and images (x, y), the transpose of the store's (t, y, x) and
(y, x); offsets and ROI statistics keep the store's (y, x) order, as their descriptions say. Time: a
plane's samples are at ``starting_time + i / rate`` with ``rate`` the per-plane rate and
``starting_time`` = physical plane / ``frame_rate`` (planes are interleaved).

Memory: traces are written by `ZarrTraceBlocks`, which decodes one Zarr chunk (roi_chunk, T) at a
time and hands HDF5 (time, roi) blocks of at most ``WRITE_BLOCK_BYTES``; the movie goes one Zarr
frame chunk at a time. Peak memory is about two Zarr chunks (the decoded one and Zarr's decoding
buffer; a chunk is at most ``runtime.max_chunk_memory``) plus one block, whatever T and n are; no
trace matrix or movie is ever whole in memory. Datasets are gzip-compressed (with shuffle).

The file is written to a hidden temporary file beside ``output_path`` and renamed into place only when
complete, so a failure leaves no partial ``.nwb`` (and an earlier file unchanged).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator, Literal, NamedTuple, Sequence

import numpy as np
import yaml
from pydantic import ValidationError

from cindra_dask.config import MetadataSettings, MultiRecordingConfiguration, SingleRecordingConfiguration, _describe_validation_error, load_configuration, missing_nwb_metadata, parse_overrides
from cindra_dask.errors import CindraError, ConfigurationError, OutputError
from cindra_dask.store import (
    COMBINED,
    DETECTION,
    EXTRACTION,
    REGISTERED,
    REGISTRATION,
    ROI_ARRAYS,
    ROIS,
    STORE_SUFFIX,
    RecordingStore,
    arrays_under,
    frames_path,
    input_file_attributes,
    multi_recording_datasets,
    multi_recording_path,
    open_existing_store,
    plane_indices,
    plane_path,
    stage_path,
)

NWB_INSTALL_HINT = "pip install 'cindra-dask[nwb]'"
HDF5_CHUNK_BYTES = 512 * 2**10
"""Target size of one HDF5 chunk of a trace or movie dataset (NWB's guidance: around 1 MiB or less)."""
WRITE_BLOCK_BYTES = 2**20
"""Most bytes of one (time, roi) block handed to HDF5 (a whole number of HDF5 chunks)."""
GZIP_LEVEL = 4
EXTERNAL = "external"
MOVIE_CHOICES = (REGISTERED, EXTERNAL, "none")

TRACES = (
    # store name, container, series name, unit, description
    ("cell_fluorescence", "Fluorescence", "RoiResponseSeries", "a.u.", "Mean fluorescence of each ROI's weighted pixels (F), in the movie's digitiser units; plane_k/extraction/cell_fluorescence."),
    ("neuropil_fluorescence", "Fluorescence", "Neuropil", "a.u.", "Mean fluorescence of each ROI's surrounding neuropil mask (Fneu), in the movie's digitiser units; plane_k/extraction/neuropil_fluorescence."),
    (
        "spikes",
        "Fluorescence",
        "Deconvolved",
        "a.u.",
        "OASIS deconvolution of the neuropil- and baseline-subtracted fluorescence: inferred spike amplitudes per frame, in fluorescence units; plane_k/extraction/spikes.",
    ),
    (
        "delta_f_over_f",
        "DfOverF",
        "DfOverF",
        "n.a.",
        "dF/F = (F_c - F0) / F0, F_c = F - neuropil_coefficient * Fneu, F0 the per-ROI baseline of F_c (spike_deconvolution.baseline_method); dimensionless, NaN where F0 <= 0; plane_k/extraction/delta_f_over_f.",
    ),
)
REQUIRED_TRACES = ("cell_fluorescence", "neuropil_fluorescence", "spikes")

SUMMARY_IMAGES = (
    ("mean_image", "mean", "Mean of the registered frames (good frames)."),
    ("enhanced_mean_image", "enhanced_mean", "Mean image high-pass filtered and normalised (suite2p's meanImgE)."),
    ("maximum_projection", "maximum_projection", "Maximum over time of the temporally binned, high-passed movie (suite2p's max_proj)."),
    ("correlation_map", "correlation", "Correlation of each pixel with its neighbours in the binned movie (suite2p's Vcorr)."),
)

ROI_COLUMN_DESCRIPTIONS = {
    "centroids": "(y, x) px: the ROI pixel nearest the median row and column of its pixels (store order, y = row first).",
    "footprint": "Spatial scale at which detection found the ROI (suite2p's footprint).",
    "detection_source": "Detector that found the ROI: 0 activity, 1 anatomy (mean image), 2 both.",
    "pixel_count": "Pixels of the ROI mask.",
    "soma_pixel_count": "Pixels of the soma crop of the ROI mask.",
    "mean_radius": "Mean distance of soma pixels from their coordinate median, in diameters.",
    "baseline_mean_radius": "Mean radius of the most compact set of as many pixels, in diameters.",
    "compactness": "max(1, mean_radius / baseline_mean_radius).",
    "solidity": "Soma pixels / convex-hull area.",
    "normalized_pixel_count": "Soma pixels / mean soma pixels of the first 100 ROIs.",
    "radius_px": "Major semi-axis (px) of the 2.5-sigma ellipse of the soma's weighted covariance.",
    "aspect_ratio": "2 major / (major + minor + 0.01); 1 for a disk.",
    "skewness": "Skewness over time of F - c Fneu (a classifier feature).",
}
PER_PIXEL_ROI_ARRAYS = ("soma_mask", "overlap_mask")


class NwbExport(NamedTuple):
    """What `export_nwb` wrote.

    Attributes
    ----------
    path : the ``.nwb`` file.
    identifier : its UUID4 ``identifier``.
    planes : the planes exported.
    roi_counts : ROIs per exported plane.
    movie : ``"registered"``, ``"external"`` or ``"none"``.
    missing_metadata : ``metadata.<field>`` names an NWB file needs that were not set.
    tracking_dataset : the multi-recording dataset whose track ids are a column, or None.
    """

    path: Path
    identifier: str
    planes: tuple[int, ...]
    roi_counts: tuple[int, ...]
    movie: str
    missing_metadata: tuple[str, ...]
    tracking_dataset: str | None = None


class RawMovieLinks(NamedTuple):
    """The recording's TIFF files as NWB external links (`raw_movie_links`).

    Attributes
    ----------
    external_file : each file's path relative to the NWB file's folder (POSIX separators), in ingest order.
    starting_frame : (n_files,) index of each file's first frame in the plane's series (0, then cumulative page counts).
    frame_counts : (n_files,) pages (= frames) of each file; they add up to the store's ``frames_per_plane``.
    """

    external_file: tuple[str, ...]
    starting_frame: tuple[int, ...]
    frame_counts: tuple[int, ...]


# ---------------------------------------------------------------------------------------------
# metadata
# ---------------------------------------------------------------------------------------------


def stored_configuration(store: RecordingStore) -> dict[str, Any]:
    """The configuration the store was processed with (root attribute ``configuration``, YAML), as a mapping."""
    try:
        payload = yaml.safe_load(store.attributes().get("configuration") or "") or {}
    except yaml.YAMLError:
        return {}
    return payload if isinstance(payload, dict) else {}


def resolve_metadata(store_path: RecordingStore | Path | str, *, configuration_path: Path | str | None = None, overrides: Sequence[str] = ()) -> MetadataSettings:
    """The ``metadata`` section for an export: the store's, replaced by a configuration file's, then overridden.

    Parameters
    ----------
    store_path : the recording store; its configuration's ``metadata`` section is the starting point
        (the configuration is recorded at ingest, so metadata added later is not in it).
    configuration_path : a single-recording configuration YAML whose ``metadata`` section replaces the store's.
    overrides : ``metadata.field=value`` strings (values read as YAML), applied last.

    Raises
    ------
    ConfigurationError : an override outside ``metadata``, or a value out of its bounds (one line each).
    """
    store = open_existing_store(store_path)
    values: dict[str, Any] = dict(stored_configuration(store).get("metadata") or {})
    source = f"{store.path} (recorded configuration)"
    if configuration_path is not None:
        configuration = load_configuration(configuration_path)
        if not isinstance(configuration, SingleRecordingConfiguration):
            raise ConfigurationError(f"{configuration_path}: a multi-recording configuration has no metadata section; give the recording's single-recording configuration")
        values = configuration.metadata.model_dump(mode="json")
        source = str(configuration_path)
    parsed = parse_overrides(list(overrides))
    for dotted, value in parsed:
        section, _, name = dotted.partition(".")
        if section != "metadata" or not name or "." in name:
            raise ConfigurationError(f"--set {dotted}: only metadata.<field> can be set for an export (see the metadata section of `cindra-dask configure`)")
        values[name] = value
    if parsed:
        source = f"{source} with --set"
    try:
        return MetadataSettings.model_validate(values)
    except ValidationError as error:
        raise ConfigurationError(*(line.replace(f"{source}: ", f"{source}: metadata.", 1) for line in _describe_validation_error(error, source=source))) from error


# ---------------------------------------------------------------------------------------------
# chunked sources (pure Python; wrapped into hdmf iterators at write time)
# ---------------------------------------------------------------------------------------------


def _largest_divisor_at_most(value: int, limit: int) -> int:
    """Largest divisor of ``value`` that is ≤ ``limit`` (at least 1)."""
    limit = max(1, min(value, limit))
    return next(divisor for divisor in range(limit, 0, -1) if value % divisor == 0)


class TraceLayout(NamedTuple):
    """How one (n, T) store trace array becomes a (T, n) HDF5 dataset.

    Attributes
    ----------
    chunk_shape : (time, rois) of one HDF5 chunk, about ``HDF5_CHUNK_BYTES``; its ROI side divides
        the Zarr chunk's rows, so every HDF5 chunk is filled from one decoded Zarr chunk.
    block_shape : (time, rois) of one block handed to HDF5: whole HDF5 chunks, at most ``WRITE_BLOCK_BYTES``.
    """

    chunk_shape: tuple[int, int]
    block_shape: tuple[int, int]


def trace_layout(*, frame_count: int, roi_count: int, row_chunk: int, itemsize: int, chunk_bytes: int = HDF5_CHUNK_BYTES, block_bytes: int = WRITE_BLOCK_BYTES) -> TraceLayout:
    """HDF5 chunk and write-block shapes of a (T, n) trace dataset stored as Zarr (n, T) with ``row_chunk`` ROIs per chunk.

    The chunk's ROI side is the largest divisor of ``row_chunk`` up to 64 when it is at least 16
    (one ROI's trace and one time window of every ROI both read few chunks), else ``row_chunk``
    itself (a prime number of ROIs per Zarr chunk), at most n; its time side fills ``chunk_bytes``.
    Blocks stack whole chunks along time up to ``block_bytes``.
    """
    frame_count, roi_count, row_chunk = max(1, frame_count), max(1, roi_count), max(1, min(row_chunk, roi_count))
    divisor = _largest_divisor_at_most(row_chunk, 64)
    roi_side = divisor if divisor >= 16 or row_chunk <= 64 else row_chunk
    chunk_frames = int(min(frame_count, max(1, chunk_bytes // (itemsize * roi_side))))
    block_frames = int(min(frame_count, max(1, block_bytes // (itemsize * roi_side * chunk_frames)) * chunk_frames))
    return TraceLayout((chunk_frames, roi_side), (block_frames, roi_side))


class ZarrTraceBlocks:
    """(time, roi) blocks of a store's (n, T) trace array, in the order HDF5 writes them.

    Decodes one Zarr chunk of ROI rows at a time and cuts it into blocks of whole HDF5 chunks
    (`trace_layout` makes the chunks' ROI side divide the Zarr chunk's rows), so one decoded chunk
    and one transposed block are in memory. Yields ``(selection, block)`` with ``block``
    C-contiguous ``(t, r)`` float32.
    """

    def __init__(self, array: Any, layout: TraceLayout) -> None:
        self.array = array
        self.layout = layout
        self.roi_count, self.frame_count = (int(size) for size in array.shape)
        self.row_chunk = max(1, int(array.chunks[0]))

    def __iter__(self) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
        block_frames, block_rois = self.layout.block_shape
        for chunk_start in range(0, self.roi_count, self.row_chunk):
            chunk_stop = min(chunk_start + self.row_chunk, self.roi_count)
            rows = np.asarray(self.array[chunk_start:chunk_stop], dtype=np.float32)
            for roi_start in range(chunk_start, chunk_stop, block_rois):
                roi_stop = min(roi_start + block_rois, chunk_stop)
                for frame_start in range(0, self.frame_count, block_frames):
                    frame_stop = min(frame_start + block_frames, self.frame_count)
                    block = np.ascontiguousarray(rows[roi_start - chunk_start : roi_stop - chunk_start, frame_start:frame_stop].T)
                    yield (slice(frame_start, frame_stop), slice(roi_start, roi_stop)), block
                    del block  # written: do not hold it while the next one (or the next chunk) is made
            del rows


class ZarrMovieBlocks:
    """(frame, x, y) blocks of a store's (T, Ly, Lx) movie: one Zarr frame chunk at a time, transposed."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.frame_count = int(array.shape[0])
        self.chunk_frames = max(1, int(array.chunks[0]))

    @property
    def hdf5_chunk_shape(self) -> tuple[int, int, int]:
        """(frames, x, y): a divisor of the Zarr chunk's frames, about ``HDF5_CHUNK_BYTES``."""
        _, height, width = (int(size) for size in self.array.shape)
        frame_bytes = max(1, height * width * np.dtype(self.array.dtype).itemsize)
        frames = _largest_divisor_at_most(self.chunk_frames, max(1, HDF5_CHUNK_BYTES // frame_bytes))
        return (min(frames, max(1, self.frame_count)), width, height)

    def __iter__(self) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
        _, height, width = (int(size) for size in self.array.shape)
        for start in range(0, self.frame_count, self.chunk_frames):
            stop = min(start + self.chunk_frames, self.frame_count)
            frames = np.asarray(self.array[start:stop])
            block = np.ascontiguousarray(frames.transpose(0, 2, 1))
            del frames
            yield (slice(start, stop), slice(0, width), slice(0, height)), block  # explicit stops: hdmf extends the dataset to them
            del block


@functools.lru_cache(maxsize=1)
def _iterator_class() -> type:
    """An hdmf ``AbstractDataChunkIterator`` over ``(selection, block)`` pairs (hdmf imported on first use)."""
    from hdmf.data_utils import AbstractDataChunkIterator, DataChunk

    class BlockIterator(AbstractDataChunkIterator):
        """Hands ``(selection, block)`` pairs to HDF5 as ``DataChunk``s; the dataset has a fixed shape."""

        def __init__(self, blocks: Any, *, shape: tuple[int, ...], dtype: Any, chunk_shape: tuple[int, ...]) -> None:
            self._blocks, self._shape, self._dtype, self._chunk_shape = blocks, tuple(shape), np.dtype(dtype), tuple(chunk_shape)
            self._iterator: Iterator[Any] | None = None

        def __iter__(self) -> "BlockIterator":
            return self

        def __next__(self) -> Any:
            if self._iterator is None:
                self._iterator = iter(self._blocks)
            selection, block = next(self._iterator)
            return DataChunk(data=block, selection=selection)

        def recommended_chunk_shape(self) -> tuple[int, ...]:
            return self._chunk_shape

        def recommended_data_shape(self) -> tuple[int, ...]:
            return self._shape

        @property
        def dtype(self) -> np.dtype:
            return self._dtype

        @property
        def maxshape(self) -> tuple[int, ...]:
            return self._shape

    return BlockIterator


def _compressed(data: Any, **options: Any) -> Any:
    from pynwb import H5DataIO

    return H5DataIO(data=data, compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True, **options)


def trace_data(array: Any) -> Any:
    """A compressed, chunk-by-chunk (T, n) float32 dataset of a store's (n, T) trace array."""
    roi_count, frame_count = (int(size) for size in array.shape)
    layout = trace_layout(frame_count=frame_count, roi_count=roi_count, row_chunk=int(array.chunks[0]), itemsize=4)
    iterator = _iterator_class()(ZarrTraceBlocks(array, layout), shape=(frame_count, roi_count), dtype=np.float32, chunk_shape=layout.chunk_shape)
    return _compressed(iterator)


def movie_data(array: Any) -> Any:
    """A compressed, chunk-by-chunk (T, x, y) dataset of a store's (T, Ly, Lx) movie."""
    blocks = ZarrMovieBlocks(array)
    frame_count, height, width = (int(size) for size in array.shape)
    iterator = _iterator_class()(blocks, shape=(frame_count, width, height), dtype=array.dtype, chunk_shape=blocks.hdf5_chunk_shape)
    return _compressed(iterator)


# ---------------------------------------------------------------------------------------------
# checks before writing
# ---------------------------------------------------------------------------------------------


def _require_pynwb() -> None:
    try:
        import pynwb  # noqa: F401
    except ImportError as error:
        raise OutputError(f"export nwb needs pynwb, which is not installed; install the 'nwb' extra ({NWB_INSTALL_HINT})") from error


def _check_output(output: Path, store: RecordingStore, *, overwrite: bool) -> None:
    if output.suffix.lower() != ".nwb":
        raise OutputError(f"{output}: an NWB file's name ends in .nwb; give OUT.nwb")
    if output.is_dir():
        raise OutputError(f"{output}: is a folder; give the path of the .nwb file to write")
    store_folder = store.path.absolute()
    if output == store_folder or store_folder in output.parents:
        raise OutputError(f"{output}: inside the store {store.path}; write the NWB file outside it")
    if output.exists() and not overwrite:
        raise OutputError(f"{output}: exists; pass --overwrite (overwrite=True) to replace it")
    if not output.parent.is_dir():
        raise OutputError(f"{output.parent}: folder does not exist; create it first")


def exported_planes(store: RecordingStore, *, movie: str) -> list[int]:
    """Planes to export: a complete extraction and every array the file needs.

    Raises
    ------
    OutputError : no plane has a complete extraction, an extraction is still running (or was
        interrupted), an array it wrote is missing, or ``movie="registered"`` finds no registered movie.
    """
    planes, skipped = [], []
    for plane in plane_indices(store):
        record = store.phase_record(f"{EXTRACTION}/{plane_path(plane)}")  # the runner's record key of the plane's extraction step
        if record is None:
            skipped.append(plane)
            continue
        if not record.complete:
            raise OutputError(f"{store.path}: plane {plane}'s extraction did not finish (interrupted run); run `cindra-dask run` again to complete it")
        movie_path = frames_path(plane, _functional_channel(store), kind="registered")
        needed = [f"{stage_path(plane, EXTRACTION)}/{name}" for name in REQUIRED_TRACES] + [f"{stage_path(plane, ROIS)}/{name}" for name in ROI_ARRAYS]
        if movie == REGISTERED:
            needed.append(movie_path)
        missing = [path for path in needed if path not in store]
        if missing:
            hint = "export with --movie none, or rerun registration (`cindra-dask run --phase process --force`)" if missing[0] == movie_path else "rerun the process phase (`cindra-dask run --phase process --force`)"
            raise OutputError(f"{store.path}: {missing[0]} is missing although plane {plane} is processed; {hint}")
        planes.append(plane)
    if not planes:
        raise OutputError(f"{store.path}: no plane has a complete extraction (plane_k/extraction); run the process phase first (`cindra-dask run`)")
    if skipped:
        warnings.warn(f"{store.path}: plane(s) {', '.join(map(str, skipped))} have no extraction (flyback or not processed) and are not exported", stacklevel=3)
    return planes


def _functional_channel(store: RecordingStore) -> int:
    main = stored_configuration(store).get("main") or {}
    return 0 if main.get("first_channel_functional", True) else 1


def raw_movie_links(store: RecordingStore, *, output_folder: Path) -> RawMovieLinks:
    """The store's input TIFFs as external links of an NWB file in ``output_folder``, checked against the store.

    External files hold whole, consecutive frames of one series, so only a recording whose every
    page is a frame of its one plane qualifies: TIFF (or Bruker TIFF) input, one plane, one channel,
    no MROI and no crop. Each file's pages are counted from its header (`inspect_tiff`).

    Raises
    ------
    OutputError : another input format, interleaved planes or channels, an MROI or cropped plane, a
        file missing or unreadable, or files whose frame size or total page count is not the store's.
    """
    from cindra_dask.io.tiff import inspect_tiff

    attributes = store.attributes()
    hint = "export with --movie registered (movie='registered') instead"
    input_format = attributes.get("input_format") or "tiff"
    if input_file_attributes(input_format) != "tiff":
        raise OutputError(f"{store.path}: input_format is {input_format!r}; --movie external links TIFF files only; {hint}")
    acquisition = attributes.get("acquisition") or {}
    plane_number, channel_number = int(acquisition.get("plane_number") or 1), int(acquisition.get("channel_number") or 1)
    if plane_number * channel_number != 1:
        raise OutputError(
            f"{store.path}: the TIFF pages interleave {plane_number} plane(s) x {channel_number} channel(s), and an NWB external file must hold "
            f"consecutive frames of one series; --movie external needs a one-plane, one-channel recording; {hint}"
        )
    directory, names = attributes.get("tiff_directory"), list(attributes.get("tiff_files") or [])
    if not directory or not names:
        raise OutputError(f"{store.path}: the root attributes tiff_directory / tiff_files do not name the input files (a store ingested before they were recorded); {hint}")
    planes = attributes.get("planes") or [{}]
    if len(planes) != 1 or int(planes[0].get("row_start", 0)) != 0:
        part = f"one of {len(planes)} MROI strips" if len(planes) != 1 else f"rows from {planes[0].get('row_start')} (cropped)"
        raise OutputError(f"{store.path}: plane 0 is {part} of the TIFF pages, and an external file must hold the series' frames whole; {hint}")
    height, width = _frame_shape(store, 0)
    frames_per_plane = int(attributes.get("frames_per_plane") or store.array(f"{stage_path(0, EXTRACTION)}/cell_fluorescence").shape[1])
    counts = []
    for name in names:
        path = Path(directory) / name
        if not path.is_file():
            raise OutputError(f"{path}: input TIFF listed in the store's tiff_files is gone; --movie external links the original files: restore it, or {hint}")
        try:
            info = inspect_tiff(path)
        except CindraError as error:
            raise OutputError(f"{error.problems[0]}; {hint}") from error
        if tuple(info.page_shape) != (height, width):
            raise OutputError(
                f"{path}: pages are {info.page_shape[0]}x{info.page_shape[1]} px but the store's plane 0 is {height}x{width} px (cropped at ingest, or another file); "
                f"an external file must hold the series' frames as they are; {hint}"
            )
        counts.append(int(info.page_count))
    if sum(counts) != frames_per_plane:
        raise OutputError(f"{directory}: the TIFFs hold {sum(counts)} pages but the store has {frames_per_plane} frames (files changed since ingest); {hint}")
    relative = tuple(Path(os.path.relpath(Path(directory).absolute() / name, output_folder.absolute())).as_posix() for name in names)
    return RawMovieLinks(relative, tuple(int(start) for start in np.cumsum([0, *counts[:-1]])), tuple(counts))


UNTRACKED = -1
"""``track_id`` of a ROI in no tracked cell of the dataset (not selected for tracking, or left in no cluster)."""


def tracking_columns(store: RecordingStore, dataset_name: str, planes: Sequence[int]) -> dict[int, list[tuple[str, str, np.ndarray]]]:
    """Per exported plane, the segmentation columns ``track_id`` (n,) i8 and ``track_confidence`` (n,) f4 of a dataset.

    ``multi_recording/<dataset>/rois`` lists the recording's selected ROIs by their row in
    ``combined/rois`` (``source_roi_index``), which concatenates the planes in order
    (``combined/rois/plane_index``); a plane's ROI ``i`` is the ``i``-th row of its plane there.
    ROIs in no tracked cell get `UNTRACKED` (−1) and confidence NaN.

    Raises
    ------
    OutputError : the dataset's ``discover`` is not complete in this store, or ``combined/`` does not match the planes' ROIs.
    """
    from cindra_dask.multirecording.graph import DISCOVER, SOURCE_ROI_INDEX, TRACK_CONFIDENCE, TRACK_ID, phase_key

    record = store.phase_record(phase_key(dataset_name, DISCOVER))
    if record is None or not record.complete:
        known = ", ".join(multi_recording_datasets(store)) or "none"
        raise OutputError(f"{store.path}: no complete tracking of dataset {dataset_name!r} (datasets here: {known}); run `cindra-dask run` on the multi-recording configuration first")
    root = multi_recording_path(dataset_name)
    track_ids = store.read(f"{root}/{ROIS}/{TRACK_ID}")
    confidence = store.read(f"{root}/{ROIS}/{TRACK_CONFIDENCE}")
    source_rows = store.read(f"{root}/{ROIS}/{SOURCE_ROI_INDEX}")
    plane_index = _read_optional(store, f"{COMBINED}/{ROIS}/plane_index")
    stale = "rerun `cindra-dask run` on the recording (combine), then on the multi-recording configuration"
    if plane_index is None or (len(source_rows) and int(source_rows.max()) >= len(plane_index)):
        raise OutputError(f"{store.path}: combined/rois/plane_index is missing or shorter than multi_recording/{dataset_name}/rois/source_roi_index refers to; {stale}")
    columns: dict[int, list[tuple[str, str, np.ndarray]]] = {}
    for plane in planes:
        roi_count = int(store.array(f"{stage_path(plane, EXTRACTION)}/cell_fluorescence").shape[0])
        rows = np.flatnonzero(plane_index == plane)
        if len(rows) != roi_count:
            raise OutputError(f"{store.path}: combined/rois holds {len(rows)} ROIs of plane {plane} but plane_{plane}/extraction {roi_count}; {stale}")
        position = np.full(len(plane_index), -1, np.int64)
        position[rows] = np.arange(roi_count)
        local = position[source_rows]
        mine = local >= 0
        plane_tracks = np.full(roi_count, UNTRACKED, np.int64)
        plane_confidence = np.full(roi_count, np.nan, np.float32)
        plane_tracks[local[mine]] = track_ids[mine]
        plane_confidence[local[mine]] = np.where(track_ids[mine] >= 0, confidence[mine], np.nan)
        columns[plane] = [
            (TRACK_ID, f"Tracked cell of multi-recording dataset {dataset_name!r} this ROI belongs to (the same id in every recording's file); {UNTRACKED}: in no tracked cell (not selected for tracking, or not clustered). multi_recording/{dataset_name}/rois/track_id.", plane_tracks),
            (TRACK_CONFIDENCE, f"Confidence of the ROI's tracked cell (cindra-dask tracking), NaN where track_id is {UNTRACKED}. multi_recording/{dataset_name}/rois/track_confidence.", plane_confidence),
        ]
    return columns


# ---------------------------------------------------------------------------------------------
# building the file
# ---------------------------------------------------------------------------------------------


def _read_optional(store: RecordingStore, array_path: str) -> np.ndarray | None:
    return store.read(array_path) if array_path in store else None


def _version() -> str:
    from cindra_dask import __version__

    return __version__


def _recording_name(store: RecordingStore) -> str:
    name = store.path.name
    return name[: -len(STORE_SUFFIX)] if name.endswith(STORE_SUFFIX) else name


class _Timing(NamedTuple):
    rate_hz: float
    starting_time_s: float


def _frame_shape(store: RecordingStore, plane: int) -> tuple[int, int]:
    """(Ly, Lx) px of a plane's frames, from its mean or reference image ((0, 0) when it has neither)."""
    for path in (f"{stage_path(plane, DETECTION)}/mean_image", f"{stage_path(plane, REGISTRATION)}/reference_image"):
        if path in store:
            height, width = store.array(path).shape
            return int(height), int(width)
    return 0, 0


def _plane_timing(attributes: dict[str, Any], plane: int) -> _Timing:
    acquisition = attributes.get("acquisition") or {}
    frame_rate = float(acquisition.get("frame_rate") or 0.0)
    if frame_rate <= 0:
        raise OutputError("store attribute acquisition.frame_rate is missing; the store was not written by `cindra-dask run` (rerun ingest)")
    plane_number = int(acquisition.get("plane_number") or 1)
    info = next((entry for entry in attributes.get("planes") or [] if int(entry.get("index", -1)) == plane), {})
    physical = int(info.get("physical_plane", plane))
    return _Timing(frame_rate / plane_number, physical / frame_rate)


def _unknown(value: Any, fallback: Any) -> Any:
    return fallback if value in (None, "", ()) else value


def _subject(metadata: MetadataSettings) -> Any:
    from pynwb.file import Subject

    fields = {
        "subject_id": metadata.subject_id,
        "species": metadata.species,
        "sex": metadata.sex,
        "age": metadata.age,
        "strain": metadata.strain,
        "genotype": metadata.genotype,
        "description": metadata.subject_description,
    }
    given = {name: value for name, value in fields.items() if value is not None}
    return Subject(**given) if given else None


def _session_description(metadata: MetadataSettings, store: RecordingStore, planes: Sequence[int], frame_counts: Sequence[int], timings: Sequence[_Timing]) -> str:
    if metadata.session_description:
        return metadata.session_description
    frames = ", ".join(f"{count} frames" for count in frame_counts) if len(set(frame_counts)) > 1 else f"{frame_counts[0]} frames"
    return (
        f"Two-photon calcium imaging of recording {_recording_name(store)}: {len(planes)} plane(s), {frames} per plane at {timings[0].rate_hz:g} Hz; "
        f"motion correction, ROIs, fluorescence, dF/F and deconvolved spikes from cindra-dask {_version()}."
    )


def _add_plane(
    nwbfile: Any,
    ophys: Any,
    store: RecordingStore,
    plane: int,
    *,
    device: Any,
    metadata: MetadataSettings,
    attributes: dict[str, Any],
    timing: _Timing,
    movie: str,
    raw_links: RawMovieLinks | None,
    extra_columns: Sequence[tuple[str, str, np.ndarray]],
) -> int:
    """One plane's imaging plane, movie, images, offsets, segmentation (with ``extra_columns``) and traces; returns its ROI count."""
    from hdmf.common import DynamicTable, VectorData
    from pynwb.base import Images, TimeSeries
    from pynwb.image import GrayscaleImage
    from pynwb.ophys import DfOverF, Fluorescence, ImageSegmentation, OpticalChannel, RoiResponseSeries, TwoPhotonSeries

    suffix = f"Plane{plane}"
    registration, detection, rois_group, extraction = (stage_path(plane, stage) for stage in (REGISTRATION, DETECTION, ROIS, EXTRACTION))
    traces = store.array(f"{extraction}/cell_fluorescence")
    roi_count, frame_count = (int(size) for size in traces.shape)
    info = next((entry for entry in attributes.get("planes") or [] if int(entry.get("index", -1)) == plane), {})
    height, width = _frame_shape(store, plane)
    pixel_size = metadata.pixel_size_um
    spatial: dict[str, Any] = {}
    if pixel_size is not None:
        spatial = {"grid_spacing": [pixel_size, pixel_size], "grid_spacing_unit": "micrometers"}
        if info:
            spatial.update({"origin_coords": [float(info.get("x_offset", 0.0)) * pixel_size, float(info.get("y_offset", 0.0)) * pixel_size], "origin_coords_unit": "micrometers"})
    channel = OpticalChannel(name="OpticalChannel", description="Functional channel (the one cindra-dask detects and extracts).", emission_lambda=float(_unknown(metadata.emission_wavelength_nm, math.nan)))
    imaging_plane = nwbfile.create_imaging_plane(
        name=f"ImagingPlane{suffix}",
        optical_channel=channel,
        description=f"Plane {plane} of the recording (physical plane {info.get('physical_plane', plane)}), {height} x {width} px (rows x columns).",
        device=device,
        excitation_lambda=float(_unknown(metadata.excitation_wavelength_nm, math.nan)),
        indicator=_unknown(metadata.indicator, "unknown"),
        location=_unknown(metadata.location, "unknown"),
        imaging_rate=timing.rate_hz,
        **spatial,
    )
    timing_options = {"rate": timing.rate_hz, "starting_time": timing.starting_time_s}

    field_of_view = [width * pixel_size * 1e-6, height * pixel_size * 1e-6] if pixel_size is not None else None
    if movie == EXTERNAL and raw_links is not None:
        nwbfile.add_acquisition(
            TwoPhotonSeries(
                name=f"TwoPhotonSeriesRaw{suffix}",
                description=(
                    f"Raw (not motion-corrected) frames of plane {plane}: the recording's TIFF files, linked by path relative to this file, "
                    "one frame per page, pages (rows, columns) as the files store them; starting_frame = each file's first frame."
                ),
                external_file=list(raw_links.external_file),
                starting_frame=list(raw_links.starting_frame),
                format="external",
                imaging_plane=imaging_plane,
                unit="a.u.",
                field_of_view=field_of_view,
                dimension=[width, height],
                **timing_options,
            )
        )
    if movie == REGISTERED:
        frames = store.array(frames_path(plane, _functional_channel(store), kind="registered"))
        ophys.add(
            TwoPhotonSeries(
                name=f"TwoPhotonSeriesRegistered{suffix}",
                description=f"Motion-corrected frames of plane {plane} (plane_k/registered), (frame, x, y) with x the column: the transpose of the store's (t, y, x).",
                data=movie_data(frames),
                imaging_plane=imaging_plane,
                unit="a.u.",
                field_of_view=field_of_view,
                dimension=[int(frames.shape[2]), int(frames.shape[1])],
                **timing_options,
            )
        )

    images = []
    for store_name, nwb_name, description in SUMMARY_IMAGES:
        image = _read_optional(store, f"{detection}/{store_name}")
        if image is not None:
            extra = {"resolution": 1e4 / pixel_size} if pixel_size is not None else {}
            images.append(GrayscaleImage(name=nwb_name, data=np.ascontiguousarray(np.asarray(image, np.float32).T), description=f"{description} (x, y) with x the column.", **extra))
    if images:
        ophys.add(Images(name=f"SummaryImages{suffix}", images=images, description=f"Summary images of plane {plane} (plane_k/detection)."))

    rigid = _read_optional(store, f"{registration}/rigid_offsets")
    if rigid is not None:
        ophys.add(
            TimeSeries(
                name=f"MotionCorrectionRigidOffsets{suffix}",
                description="Rigid motion per frame, columns (dy, dx) px: frame t showed the reference moved by +dy rows and +dx columns; registration moved it back by (-dy, -dx). plane_k/registration/rigid_offsets.",
                data=_compressed(np.asarray(rigid, np.float32)),
                unit="pixels",
                **timing_options,
            )
        )
    nonrigid = _read_optional(store, f"{registration}/nonrigid_offsets")
    centers = _read_optional(store, f"{registration}/block_centers")
    if nonrigid is not None and nonrigid.ndim == 3 and nonrigid.shape[1] > 0:
        ophys.add(
            TimeSeries(
                name=f"MotionCorrectionNonrigidOffsets{suffix}",
                description=f"Nonrigid motion per frame and block (relative to the rigid offsets), (frame, block, [dy, dx]) px, same sign as the rigid offsets; block centres in NonrigidBlocks{suffix}. plane_k/registration/nonrigid_offsets.",
                data=_compressed(np.asarray(nonrigid, np.float32)),
                unit="pixels",
                **timing_options,
            )
        )
        if centers is not None and len(centers) == nonrigid.shape[1]:
            centers = np.asarray(centers, np.float32).reshape(-1, 2)
            ophys.add(
                DynamicTable(
                    name=f"NonrigidBlocks{suffix}",
                    description=f"Centres of the nonrigid registration blocks of plane {plane}, one row per block of MotionCorrectionNonrigidOffsets{suffix}.",
                    id=list(range(len(centers))),
                    columns=[
                        VectorData(name="center_y_px", description="Block centre row, px.", data=centers[:, 0]),
                        VectorData(name="center_x_px", description="Block centre column, px.", data=centers[:, 1]),
                    ],
                )
            )

    if roi_count == 0:
        warnings.warn(f"{store.path}: plane {plane} has no ROIs; its segmentation and traces are left out of the NWB file", stacklevel=3)
        return 0
    segmentation = ophys.data_interfaces.get("ImageSegmentation")
    if segmentation is None:
        segmentation = ImageSegmentation(name="ImageSegmentation")
        ophys.add(segmentation)
    plane_segmentation = segmentation.create_plane_segmentation(
        name=f"PlaneSegmentation{suffix}",
        description=f"ROIs of plane {plane} (plane_k/rois): pixel_mask rows (x = column, y = row, weight); id = the store's ROI index.",
        imaging_plane=imaging_plane,
    )
    rois = store.read_rois(rois_group)
    for index in range(rois.count):
        ypix, xpix, lam = rois.roi(index)
        plane_segmentation.add_roi(id=index, pixel_mask=list(zip(xpix.astype(np.uint32).tolist(), ypix.astype(np.uint32).tolist(), lam.astype(np.float32).tolist())))
    for name, description, values in [*roi_columns(store, plane, roi_count), *extra_columns]:
        plane_segmentation.add_column(name=name, description=description, data=values)
    region = plane_segmentation.create_roi_table_region(region=list(range(roi_count)), description=f"Every ROI of plane {plane}.")

    containers: dict[str, Any] = {}
    for store_name, container_name, series_name, unit, description in TRACES:
        array_path = f"{extraction}/{store_name}"
        if array_path not in store:
            warnings.warn(f"{store.path}: {array_path} is missing (a store processed before it existed); {container_name}/{series_name}{suffix} is left out — rerun the process phase (`cindra-dask run --phase process --force`) to add it", stacklevel=3)
            continue
        array = store.array(array_path)
        if tuple(array.shape) != (roi_count, frame_count):
            raise OutputError(f"{store.path}: {array_path} has shape {tuple(array.shape)}, not ({roi_count}, {frame_count}) like cell_fluorescence; rerun the process phase")
        if container_name not in containers:
            containers[container_name] = ophys.data_interfaces.get(container_name) or (Fluorescence(name=container_name) if container_name == "Fluorescence" else DfOverF(name=container_name))
            if container_name not in ophys.data_interfaces:
                ophys.add(containers[container_name])
        with warnings.catch_warnings():
            # hdmf checks the region's table against the series' ancestors while the series is built, before it
            # joins the file; the table is this file's PlaneSegmentation (nwbinspector checks the link)
            warnings.filterwarnings("ignore", message="The linked table for DynamicTableRegion")
            series = RoiResponseSeries(name=f"{series_name}{suffix}", description=f"{description} (time, rois).", data=trace_data(array), rois=region, unit=unit, **timing_options)
        containers[container_name].add_roi_response_series(series)
    return roi_count


def roi_columns(store: RecordingStore, plane: int, roi_count: int) -> list[tuple[str, str, np.ndarray]]:
    """(name, description, (n, ...) values) of the segmentation table's extra columns."""
    extraction, rois_group = stage_path(plane, EXTRACTION), stage_path(plane, ROIS)
    columns: list[tuple[str, str, np.ndarray]] = []
    classification = _read_optional(store, f"{extraction}/cell_classification")
    if classification is not None:
        classification = np.asarray(classification, np.float32).reshape(roi_count, 2)
        columns.append(("iscell", "Classified as a cell (suite2p's iscell[:, 0]); plane_k/extraction/cell_classification[:, 0].", classification[:, 0] > 0.5))
        columns.append(("probability", "Classifier's cell probability (suite2p's iscell[:, 1]); plane_k/extraction/cell_classification[:, 1].", classification[:, 1]))
    for name, description in (
        ("neuropil_coefficient", "c of F - c Fneu for this ROI (dimensionless)."),
        ("estimated_tau_s", "Indicator decay time constant estimated from this ROI's trace, s (NaN: not estimated)."),
    ):
        values = _read_optional(store, f"{extraction}/{name}")
        if values is not None and values.shape[:1] == (roi_count,) and not (values.dtype.kind == "f" and np.isnan(values).all()):
            columns.append((name, f"{description} plane_k/extraction/{name}.", np.asarray(values)))
    colocalization = _read_optional(store, f"{extraction}/cell_colocalization")
    if colocalization is not None:
        colocalization = np.asarray(colocalization, np.float32).reshape(roi_count, 2)
        columns.append(("colocalized", "Labelled in the structural channel 2; plane_k/extraction/cell_colocalization[:, 0].", colocalization[:, 0] > 0.5))
        columns.append(("colocalization_probability", "Channel-2 colocalization score; plane_k/extraction/cell_colocalization[:, 1].", colocalization[:, 1]))
    taken = {name for name, _, _ in columns}
    for path in arrays_under(store, rois_group):
        name = path.rsplit("/", 1)[1]
        if path.count("/") != rois_group.count("/") + 1 or name in ROI_ARRAYS or name in PER_PIXEL_ROI_ARRAYS or name in taken:
            continue
        values = store.read(path)
        if values.ndim >= 1 and values.shape[0] == roi_count:
            description = ROI_COLUMN_DESCRIPTIONS.get(name, f"ROI statistic {name!r}.")
            columns.append((name, f"{description} plane_k/rois/{name}.", values))
    return columns


def export_nwb(
    store_path: RecordingStore | Path | str,
    output_path: Path | str,
    *,
    metadata: MetadataSettings | None = None,
    movie: Literal["registered", "external", "none"] = "none",
    tracking_dataset: str | None = None,
    overwrite: bool = False,
) -> NwbExport:
    """Write a store's results as one NWB file (see the module docstring for its contents).

    Parameters
    ----------
    store_path : the recording store (``<recording>.zarr``).
    output_path : the ``.nwb`` file to write (its folder must exist).
    metadata : session, subject and microscope; None reads the store's recorded configuration
        (`resolve_metadata` adds a configuration file and ``--set`` overrides).
    movie : ``"registered"`` also writes the motion-corrected movie (chunk by chunk, gzip);
        ``"external"`` links the recording's TIFF files instead (`raw_movie_links`: paths relative to
        the NWB file, nothing copied; one-plane, one-channel TIFF recordings); ``"none"`` (default)
        keeps the file small.
    tracking_dataset : a multi-recording dataset this store was tracked in: adds its ``track_id`` and
        ``track_confidence`` columns to the segmentation (`tracking_columns`); None: none.
    overwrite : replace an existing file (otherwise refused).

    Returns
    -------
    `NwbExport` (path, its fresh identifier, planes, ROI counts, the metadata fields it lacked).

    Raises
    ------
    OutputError : pynwb is not installed, the store is not a store, a run holds its lock or its extraction is incomplete,
        the output exists (without ``overwrite``), is inside the store or does not end in ``.nwb``, the movie
        asked for cannot be written (`raw_movie_links`), or the store has no complete tracking of ``tracking_dataset``.
    ConfigurationError : ``metadata.session_start_time`` is not set (NWB requires it).
    Every refusal happens before anything is written; a failure while writing removes the temporary file.
    """
    return _write_export(_plan_export(store_path, output_path, metadata=metadata, movie=movie, tracking_dataset=tracking_dataset, overwrite=overwrite))


def export_tracked_nwb(
    configuration: MultiRecordingConfiguration,
    output_folder: Path | str,
    *,
    movie: Literal["registered", "external", "none"] = "none",
    overrides: Sequence[str] = (),
    overwrite: bool = False,
) -> list[NwbExport]:
    """One NWB file per recording of a multi-recording dataset, each segmentation with the dataset's track ids.

    ``<output_folder>/<recording name>.nwb`` (names as in `cindra_dask.export.tracked`) is `export_nwb`
    of that recording's store with ``tracking_dataset`` = the configuration's dataset: its
    ``PlaneSegmentation`` has the column ``track_id`` (the tracked cell of each ROI, the same id in
    every recording's file; −1 = in no tracked cell) and ``track_confidence``. Each file takes its
    recording's recorded ``metadata`` with ``overrides`` (``metadata.field=value``) applied.

    Parameters
    ----------
    configuration : the `MultiRecordingConfiguration` whose ``discover`` and ``extract`` are complete.
    output_folder : an existing folder receiving the files.
    movie, overwrite : as in `export_nwb`, for every file.
    overrides : ``metadata.field=value`` strings applied to every recording's metadata.

    Raises
    ------
    InputError : a recording without complete ``discover`` and ``extract``.
    OutputError, ConfigurationError : as `export_nwb`, for any recording; every recording is checked
        before the first file is written.
    """
    from cindra_dask.export.tracked import tracked_cells

    cells = tracked_cells(configuration)
    folder = Path(output_folder).expanduser().absolute()
    if not folder.is_dir():
        raise OutputError(f"{folder}: {'is a file' if folder.exists() else 'folder does not exist'}; give an existing folder for the NWB files (create it first)")
    plans = [
        _plan_export(
            path,
            folder / f"{name.replace('/', '_')}.nwb",
            metadata=resolve_metadata(path, overrides=overrides),
            movie=movie,
            tracking_dataset=cells.dataset_name,
            overwrite=overwrite,
        )
        for name, path in zip(cells.recording_names, cells.recording_paths)
    ]
    return [_write_export(plan) for plan in plans]


class _ExportPlan(NamedTuple):
    """Everything `_write_export` needs, checked by `_plan_export`."""

    store: RecordingStore
    output: Path
    planes: list[int]
    metadata: MetadataSettings
    missing_metadata: tuple[str, ...]
    attributes: dict[str, Any]
    timings: list[_Timing]
    frame_counts: list[int]
    movie: str
    raw_links: RawMovieLinks | None
    extra_columns: dict[int, list[tuple[str, str, np.ndarray]]]
    tracking_dataset: str | None


def _plan_export(
    store_path: RecordingStore | Path | str, output_path: Path | str, *, metadata: MetadataSettings | None, movie: str, tracking_dataset: str | None, overwrite: bool
) -> _ExportPlan:
    """Every check of `export_nwb`, before anything is written."""
    _require_pynwb()
    if movie not in MOVIE_CHOICES:
        raise OutputError(f"movie: {movie!r} is not one of {', '.join(MOVIE_CHOICES)}")
    store = open_existing_store(store_path)
    store.check_unlocked()  # a running pipeline rewrites what would be exported
    output = Path(output_path).expanduser().absolute()
    _check_output(output, store, overwrite=overwrite)
    planes = exported_planes(store, movie=movie)
    raw_links = raw_movie_links(store, output_folder=output.parent) if movie == EXTERNAL else None
    extra_columns = tracking_columns(store, tracking_dataset, planes) if tracking_dataset is not None else {}
    metadata = resolve_metadata(store) if metadata is None else metadata
    if metadata.session_start_time is None:
        raise ConfigurationError(
            f"{store.path}: metadata.session_start_time: not set, and every NWB file needs the session's start time; add it to the configuration's metadata section "
            "or pass --set metadata.session_start_time=2024-05-01T10:30:00+02:00 (with the UTC offset)"
        )
    missing = tuple(name for name in missing_nwb_metadata(metadata) if name != "metadata.session_start_time")
    if missing:
        warnings.warn(
            f"{store.path}: {', '.join(missing)} not set: the NWB file gets 'unknown' / NaN or no subject in their place and will not pass nwbinspector or DANDI; "
            "set them in the configuration's metadata section or with --set metadata.<field>=<value>",
            stacklevel=3,
        )
    attributes = store.attributes()
    timings = [_plane_timing(attributes, plane) for plane in planes]
    frame_counts = [int(store.array(f"{stage_path(plane, EXTRACTION)}/cell_fluorescence").shape[1]) for plane in planes]
    return _ExportPlan(store, output, planes, metadata, missing, attributes, timings, frame_counts, movie, raw_links, extra_columns, tracking_dataset)


def _write_export(plan: _ExportPlan) -> NwbExport:
    """Write a checked export to a hidden temporary file beside its output and rename it into place."""
    identifier = str(uuid.uuid4())
    output = plan.output
    temporary = _reserve_temporary(output)
    try:
        roi_counts = _write_file(temporary, plan, identifier=identifier)
        os.replace(temporary, output)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"{output}: could not be written ({error.strerror or error}); nothing was left behind") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return NwbExport(output, identifier, tuple(plan.planes), tuple(roi_counts), plan.movie, plan.missing_metadata, plan.tracking_dataset)


def _reserve_temporary(output: Path) -> Path:
    """A new hidden ``.<stem>.partial.<random>.nwb`` beside ``output`` (created empty with the umask's permissions, unlike mkstemp's private file)."""
    for _ in range(100):
        candidate = output.with_name(f".{output.stem}.partial.{uuid.uuid4().hex[:12]}.nwb")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        except OSError as error:
            raise OutputError(f"{output.parent}: cannot write there ({error.strerror or error})") from error
        return candidate
    raise OutputError(f"{output.parent}: could not create a temporary file beside {output.name}")


def _write_file(path: Path, plan: _ExportPlan, *, identifier: str) -> list[int]:
    from pynwb import NWBHDF5IO, NWBFile

    store, planes, metadata, attributes = plan.store, plan.planes, plan.metadata, plan.attributes
    start = metadata.session_start_time
    assert start is not None
    optional = {
        "experiment_description": metadata.experiment_description,
        "institution": metadata.institution,
        "lab": metadata.lab,
        "experimenter": list(metadata.experimenter) or None,
        "keywords": list(metadata.keywords) or None,
    }
    nwbfile = NWBFile(
        session_description=_session_description(metadata, store, planes, plan.frame_counts, plan.timings),
        identifier=identifier,
        session_start_time=start,
        file_create_date=dt.datetime.now(dt.timezone.utc),
        session_id=_recording_name(store).replace("/", "_"),
        was_generated_by=[["cindra-dask", _version()]],
        notes=f"Processed by cindra-dask {_version()}; the configuration it recorded (YAML):\n{attributes.get('configuration') or '(none recorded)'}",
        subject=_subject(metadata),
        **{name: value for name, value in optional.items() if value is not None},
    )
    device_name = _unknown(metadata.device, "Microscope")
    model = nwbfile.create_device_model(name=device_name, manufacturer=metadata.device_manufacturer, description="Microscope model.") if metadata.device_manufacturer else None
    device = nwbfile.create_device(
        name=device_name,
        description="Two-photon microscope." if metadata.device else "Two-photon microscope (metadata.device not set).",
        **({"model": model} if model is not None else {}),
    )
    ophys = nwbfile.create_processing_module(name="ophys", description="Optical physiology processed by cindra-dask: motion correction, ROIs, fluorescence, dF/F, deconvolved spikes, summary images.")
    roi_counts = [
        _add_plane(nwbfile, ophys, store, plane, device=device, metadata=metadata, attributes=attributes, timing=timing, movie=plan.movie, raw_links=plan.raw_links, extra_columns=plan.extra_columns.get(plane, []))
        for plane, timing in zip(planes, plan.timings)
    ]
    with NWBHDF5IO(str(path), mode="w") as io:
        io.write(nwbfile)
    return roi_counts
