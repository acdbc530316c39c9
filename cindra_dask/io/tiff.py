"""TIFF discovery, page indexing and lazy page reading; the ingest plan.

Conventions (cindra §3.1): one TIFF page is one frame of one plane and channel; pages cycle
plane-major / channel-minor (p0c0, p0c1, p1c0, ...) and the cycle continues across files, which
are taken in natural sort order. In MROI mode each physical plane's frame holds ``roi_number``
regions stacked along the rows; region ``r`` of physical plane ``z`` is virtual plane
``v = r * plane_number + z`` with rows ``[roi_lines[r][0], roi_lines[r][-1]]``.

Discovery records every page's IFD offset, so a task decodes any page in O(1) (a 50 000-page
file is never walked per task) and reads only the pages of its own chunk.

The plan is format-neutral: it holds the files' descriptions and a :class:`FrameReader` that
decodes global pages, so other inputs (``io/bruker.py``: TIFFs in an XML's order; ``io/arrays.py``:
one frame per index of a 3-D HDF5/NWB dataset or Zarr array, in the same interleaving) reuse the
plan, its checks and the ingest graph with their own reader.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from cindra_dask.config import ACQUISITION_FILE_NAME, AcquisitionParameters
from cindra_dask.errors import ConfigurationError, InputError

TIFF_SUFFIXES = (".tif", ".tiff")
SUPPORTED_KINDS = "iuf"


def natural_sort_key(name: str) -> list[int | str]:
    """Key sorting ``file_2`` before ``file_10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class TiffFileInfo(NamedTuple):
    """What discovery learned about one TIFF file.

    Attributes
    ----------
    path : file path (str, so the plan pickles small).
    page_count : pages (frames) in the file.
    page_shape : (height, width) of every page, px.
    dtype : numpy dtype string of the pixels.
    ifd_offsets : (page_count,) int64 byte offset of each page's IFD.
    """

    path: str
    page_count: int
    page_shape: tuple[int, int]
    dtype: str
    ifd_offsets: np.ndarray


class VirtualPlane(NamedTuple):
    """A plane as processed: a physical plane, or one MROI region of it.

    Attributes
    ----------
    index : virtual plane index (``plane_k`` in the store).
    physical_plane : z-plane whose pages hold it.
    row_start, row_stop : rows of the raw page it occupies (stop exclusive).
    y_offset, x_offset : its position in the combined field of view, px.
    """

    index: int
    physical_plane: int
    row_start: int
    row_stop: int
    y_offset: float
    x_offset: float


class FrameReader(NamedTuple):
    """How one input format's frames are decoded.

    Attributes
    ----------
    input_format : the format's name (``file_io.input_format``: ``tiff``, ``bruker``, ``hdf5``, ``nwb``, ``zarr``, ``avi``).
    label : how messages call its files (``TIFF``, ``HDF5``, ...).
    unit : what one frame of one plane and channel is called in its files (``pages``, ``frames``).
    read : ``read(plan, global_pages, *, row_start, row_stop)`` → (n, rows, width) array of the
        plan's dtype: the given global pages (ascending), rows ``[row_start, row_stop)``.
    """

    input_format: str
    label: str
    unit: str
    read: Callable[..., np.ndarray]


class IngestPlan(NamedTuple):
    """Everything an ingest task needs: files, page layout, planes, chunking, the reader.

    Attributes
    ----------
    files : discovered input files in natural order (:class:`TiffFileInfo`, or another format's
        description with the same ``path``, ``page_count``, ``page_shape`` and ``dtype``).
    file_first_page : (n_files + 1,) int64 global index of each file's first page (and the total).
    plane_number, channel_number : interleaving of the pages.
    frames_per_plane : frames per plane and channel (whole cycles only).
    frame_width : page width, px.
    dtype : pixel dtype stored in the raw arrays.
    virtual_planes : the planes written to the store.
    chunk_frames : frames per Zarr chunk / Dask task.
    reader : decodes the files' pages (:data:`TIFF_READER` for TIFFs).
    column_start : first page column stored; the columns ``[column_start, column_start + frame_width)`` are (`crop_ingest_plan`).
    """

    files: tuple[Any, ...]
    file_first_page: np.ndarray
    plane_number: int
    channel_number: int
    frames_per_plane: int
    frame_width: int
    dtype: str
    virtual_planes: tuple[VirtualPlane, ...]
    chunk_frames: int
    reader: FrameReader
    column_start: int = 0

    @property
    def pages_per_cycle(self) -> int:
        """Pages in one volume: planes × channels."""
        return self.plane_number * self.channel_number

    def global_pages(self, *, physical_plane: int, channel: int, frame_start: int, frame_stop: int) -> np.ndarray:
        """(n,) int64 global page index of frames ``[frame_start, frame_stop)`` of a plane/channel."""
        frames = np.arange(frame_start, frame_stop, dtype=np.int64)
        return frames * self.pages_per_cycle + physical_plane * self.channel_number + channel


def find_acquisition_file(data_path: Path) -> Path | None:
    """The single ``cindra_parameters.json`` under ``data_path`` (searched recursively), or None when there is none."""
    if not data_path.is_dir():
        raise InputError(f"file_io.data_path: {data_path} is not an existing directory; point it at the folder holding the movie files")
    found = sorted(data_path.rglob(ACQUISITION_FILE_NAME))
    if len(found) > 1:
        listed = ", ".join(str(path) for path in found[:5])
        raise InputError(f"{data_path}: {len(found)} {ACQUISITION_FILE_NAME} files found ({listed}); point file_io.data_path at one recording")
    return found[0] if found else None


def is_movie_candidate(path: Path, *, suffixes: Sequence[str], ignored: set[str]) -> bool:
    """A movie file (or, for ``.zarr``, a store directory that is not a cindra-dask recording store) with one of ``suffixes``, its stem not ignored."""
    from cindra_dask.store import is_recording_store

    if path.suffix.lower() not in suffixes or path.stem in ignored:
        return False
    return path.is_dir() and not is_recording_store(path) if path.suffix.lower() == ".zarr" else path.is_file()


def discover_movie_files(directory: Path, *, suffixes: Sequence[str], ignored_file_names: Sequence[str], note: str = "") -> list[Path]:
    """Movie files (`is_movie_candidate`) directly in ``directory`` (not recursive), natural-sorted, minus
    ignored stems; none is an `InputError` (``note`` prefixes its parenthesis, e.g. the chosen format)."""
    ignored = set(ignored_file_names)
    candidates = [path for path in directory.iterdir() if is_movie_candidate(path, suffixes=suffixes, ignored=ignored)]
    if not candidates:
        raise InputError(f"{directory}: no {'/'.join(suffixes)} files found ({note}ignored stems: {sorted(ignored) or 'none'}); check file_io.data_path")
    return sorted(candidates, key=lambda path: natural_sort_key(path.name))


class _TiffLogCapture(logging.Handler):
    """Collects what tifffile logs while indexing (it logs, rather than raises, on bad IFD offsets)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def inspect_tiff(path: Path) -> TiffFileInfo:
    """Count pages, record their IFD offsets and check the file is complete.

    A file of one uncompressed page (Bruker folders hold one per frame and channel) is read from
    its header and IFD (`single_page_info`); any other file is opened with tifffile
    (`inspect_with_tifffile`). Raises :class:`InputError` naming the file when it is not a TIFF, is
    truncated, or holds pages that are not single-sample 2-D images.
    """
    single = single_page_info(path)
    return single if single is not None else inspect_with_tifffile(path)


_IFD_ENTRY = struct.Struct("<HHI4s")
_TIFF_VALUE_FORMATS = {3: "H", 4: "I"}
"""TIFF field types read by `single_page_info` (SHORT, LONG); any other type of a tag it reads sends the file to tifffile."""
_SAMPLE_KINDS = {1: "u", 2: "i", 3: "f"}
"""TIFF SampleFormat → numpy kind."""


def single_page_info(path: Path) -> TiffFileInfo | None:
    """The `TiffFileInfo` of a little-endian classic TIFF holding exactly one page that is uncompressed,
    in strips, one sample of 8, 16, 32 or 64 bits per pixel, with all its data inside the file, read from
    the header and the IFD alone (0.18 ms a file vs tifffile's 1.06 ms: benchmarks/bench_bruker_discovery.py); None for any other
    file (big-endian, BigTIFF, several pages, tiles, compression, damage), which tifffile inspects."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(8)
            if len(head) != 8 or head[:4] != b"II*\x00":
                return None
            ifd_offset = struct.unpack_from("<I", head, 4)[0]
            stream.seek(ifd_offset)
            count_bytes = stream.read(2)
            if len(count_bytes) != 2:
                return None
            entry_count = struct.unpack("<H", count_bytes)[0]
            entries = stream.read(12 * entry_count + 4)
            if len(entries) != 12 * entry_count + 4 or struct.unpack_from("<I", entries, 12 * entry_count)[0] != 0:
                return None
            tags = {tag: (kind, count, value) for tag, kind, count, value in (_IFD_ENTRY.unpack_from(entries, 12 * index) for index in range(entry_count))}

            def values(tag: int, default: tuple[int, ...] | None = None) -> tuple[int, ...] | None:
                if tag not in tags:
                    return default
                kind, count, value = tags[tag]
                if kind not in _TIFF_VALUE_FORMATS or count == 0:
                    return None
                layout = f"<{count}{_TIFF_VALUE_FORMATS[kind]}"
                size = struct.calcsize(layout)
                if size > 4:
                    stream.seek(struct.unpack("<I", value)[0])
                    value = stream.read(size)
                    if len(value) != size:
                        return None
                return struct.unpack_from(layout, value)

            width, height, bits, compression, samples, sample_format = (values(256), values(257), values(258), values(259, (1,)), values(277, (1,)), values(339, (1,)))
            offsets, byte_counts = values(273), values(279)
            file_size = os.fstat(stream.fileno()).st_size
    except OSError:
        return None
    if any(tag in tags for tag in (322, 323, 324, 325, 330, 32997)):  # tiles, SubIFDs, SGI ImageDepth
        return None
    if offsets is None or byte_counts is None or any(field is None or len(field) != 1 for field in (width, height, bits, compression, samples, sample_format)):
        return None
    if compression != (1,) or samples != (1,) or bits[0] not in (8, 16, 32, 64) or sample_format[0] not in _SAMPLE_KINDS or len(offsets) != len(byte_counts):
        return None
    data_end = max(offset + count for offset, count in zip(offsets, byte_counts))
    if data_end > file_size or sum(byte_counts) != width[0] * height[0] * bits[0] // 8:
        return None
    dtype = np.dtype(f"<{_SAMPLE_KINDS[sample_format[0]]}{bits[0] // 8}")
    if dtype.kind not in SUPPORTED_KINDS:
        return None
    return TiffFileInfo(str(path), 1, (int(height[0]), int(width[0])), dtype.str, np.array([ifd_offset], dtype=np.int64))


def inspect_with_tifffile(path: Path) -> TiffFileInfo:
    """`inspect_tiff` of any file, opened with tifffile (every page walked)."""
    import tifffile

    file_size = path.stat().st_size
    logged = _TiffLogCapture()
    logger = logging.getLogger("tifffile")
    logger.addHandler(logged)
    try:
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages
            pages.useframes = True
            pages.cache = False
            first = pages.first
            if first.samplesperpixel != 1 or len(first.shape) != 2:
                raise InputError(f"{path}: pages have shape {first.shape} with {first.samplesperpixel} samples per pixel; expected one 2-D grayscale frame per page")
            dtype = np.dtype(first.dtype)
            if dtype.kind not in SUPPORTED_KINDS:
                raise InputError(f"{path}: pixel type {dtype} is not supported; convert the frames to an integer or float type")
            ifd_offsets = np.empty(len(pages), dtype=np.int64)
            data_end = 0
            for index, page in enumerate(pages):
                ifd_offsets[index] = page.offset
                if page.dataoffsets:
                    data_end = max(data_end, max(offset + count for offset, count in zip(page.dataoffsets, page.databytecounts)))
            shape = (int(first.shape[0]), int(first.shape[1]))
    except InputError:
        raise
    except Exception as error:  # tifffile raises many types for damaged files
        raise InputError(f"{path}: not a readable TIFF ({error.__class__.__name__}: {error}); replace or remove the file (or list its stem in file_io.ignored_file_names)") from error
    finally:
        logger.removeHandler(logged)
    if logged.messages:
        raise InputError(f"{path}: damaged or truncated TIFF ({logged.messages[0]}); copy the file again or list its stem in file_io.ignored_file_names")
    if data_end > file_size:
        raise InputError(f"{path}: truncated: pages reference {data_end} bytes but the file has {file_size}; copy the file again or list its stem in file_io.ignored_file_names")
    return TiffFileInfo(str(path), int(len(ifd_offsets)), shape, dtype.str, ifd_offsets)


def virtual_planes(acquisition: AcquisitionParameters, *, frame_height: int, source: str = ACQUISITION_FILE_NAME) -> tuple[VirtualPlane, ...]:
    """Planes as processed; MROI regions become virtual planes (``v = region·planes + z``). ``source`` names where the acquisition comes from, for messages."""
    if not acquisition.is_mroi:
        return tuple(VirtualPlane(z, z, 0, frame_height, 0.0, 0.0) for z in range(acquisition.plane_number))
    planes = []
    for region, lines in enumerate(acquisition.roi_lines):
        first, last = int(lines[0]), int(lines[-1])
        if last >= frame_height:
            raise InputError(f"acquisition roi_lines[{region}]: last row {last} is outside the {frame_height}-row frames; fix roi_lines in {source}")
        for z in range(acquisition.plane_number):
            planes.append(VirtualPlane(region * acquisition.plane_number + z, z, first, last + 1, float(acquisition.roi_y_coordinates[region]), float(acquisition.roi_x_coordinates[region])))
    return tuple(sorted(planes, key=lambda plane: plane.index))


def build_ingest_plan(files: Sequence[Any], acquisition: AcquisitionParameters, *, chunk_frames: int, reader: FrameReader | None = None, source: str = ACQUISITION_FILE_NAME) -> IngestPlan:
    """Check the files against the acquisition parameters and lay out the ingest.

    ``files`` are :class:`TiffFileInfo` (``reader`` None or :data:`TIFF_READER`) or another
    format's descriptions with its reader; ``source`` names where the acquisition comes from (the
    messages say what to fix there). Raises :class:`InputError` with one line per problem
    (inconsistent shapes or dtypes, a page count that is not a whole number of volumes, MROI rows
    out of range).
    """
    reader = reader or TIFF_READER
    label, unit = reader.label, reader.unit
    problems = []
    first = files[0]
    for info in files[1:]:
        if info.page_shape != first.page_shape:
            problems.append(f"{info.path}: frames are {info.page_shape[0]}×{info.page_shape[1]} but {first.path} has {first.page_shape[0]}×{first.page_shape[1]}; all {label} files of a recording must share one frame size (list odd files in file_io.ignored_file_names)")
        elif info.dtype != first.dtype:
            problems.append(f"{info.path}: pixel type {np.dtype(info.dtype)} differs from {np.dtype(first.dtype)} in {first.path}; all {label} files must share one pixel type")
    total_pages = sum(info.page_count for info in files)
    cycle = acquisition.plane_number * acquisition.channel_number
    if total_pages % cycle:
        problems.append(
            f"{Path(first.path).parent}: {total_pages} {unit} in {len(files)} files is not a multiple of plane_number × channel_number = {cycle} "
            f"({total_pages % cycle} {unit} left over); check plane_number/channel_number in {source} or remove incomplete files"
        )
    frames_per_plane = total_pages // cycle
    if frames_per_plane == 0:
        problems.append(f"{Path(first.path).parent}: fewer {unit} ({total_pages}) than one volume ({cycle}); nothing to ingest")
    try:
        planes = virtual_planes(acquisition, frame_height=first.page_shape[0], source=source)
    except InputError as error:
        problems.extend(error.problems)
        planes = ()
    if problems:
        raise InputError(*problems)
    file_first_page = np.concatenate([[0], np.cumsum([info.page_count for info in files])]).astype(np.int64)
    return IngestPlan(
        tuple(files), file_first_page, acquisition.plane_number, acquisition.channel_number, frames_per_plane, first.page_shape[1], first.dtype, planes, max(1, min(chunk_frames, frames_per_plane)), reader
    )


def read_pages(plan: IngestPlan, global_pages: np.ndarray, *, row_start: int = 0, row_stop: int | None = None) -> np.ndarray:
    """Decode the given global pages (rows ``[row_start, row_stop)``) → (n, rows, width) array, with the plan's reader."""
    return plan.reader.read(plan, global_pages, row_start=row_start, row_stop=row_stop)


def read_tiff_pages(plan: IngestPlan, global_pages: np.ndarray, *, row_start: int = 0, row_stop: int | None = None) -> np.ndarray:
    """The TIFF reader: decode the given global pages (rows ``[row_start, row_stop)``) → (n, rows, width) array.

    Opens each file once and decodes only the requested pages (via their recorded IFD offsets).
    """
    import tifffile

    rows = (row_stop if row_stop is not None else plan.files[0].page_shape[0]) - row_start
    frames = np.empty((len(global_pages), rows, plan.frame_width), dtype=np.dtype(plan.dtype))
    file_indices = np.searchsorted(plan.file_first_page, global_pages, side="right") - 1
    for file_index in np.unique(file_indices):
        info = plan.files[int(file_index)]
        positions = np.flatnonzero(file_indices == file_index)
        local_pages = global_pages[positions] - plan.file_first_page[file_index]
        with tifffile.TiffFile(info.path) as tif:
            keyframe = tif.pages.first
            for position, local in zip(positions, local_pages):
                page = keyframe if local == 0 else tifffile.TiffFrame(tif, index=int(local), offset=int(info.ifd_offsets[local]), keyframe=keyframe)
                frames[position] = page.asarray()[row_start:row_stop, plan.column_start : plan.column_start + plan.frame_width]
    return frames


TIFF_READER = FrameReader("tiff", "TIFF", "pages", read_tiff_pages)
"""The reader of TIFF pages (one frame per page)."""


def crop_ingest_plan(plan: IngestPlan, *, crop_coords: tuple[int, int, int, int]) -> IngestPlan:
    """``plan`` storing only the pixels of ``file_io.crop_coords`` (x0, y0, x1, y1: columns min(x)..max(x),
    rows height − max(y)..height − min(y), ends exclusive; the miniscope pipeline's GUI convention, y up from
    the bottom edge).

    Raises
    ------
    ConfigurationError : the crop leaves the frame, is empty, or the recording is MROI.
    """
    height, width = plan.files[0].page_shape
    x_start, x_stop = sorted(crop_coords[0::2])
    y_low, y_high = sorted(crop_coords[1::2])
    if len(plan.virtual_planes) != plan.plane_number:
        raise ConfigurationError("file_io.crop_coords: cropping MROI recordings is not supported; remove the line")
    if not (x_stop <= width and y_high <= height and x_start < x_stop and y_low < y_high):
        raise ConfigurationError(f"file_io.crop_coords {tuple(crop_coords)}: needs x0 ≠ x1 within 0..{width} and y0 ≠ y1 within 0..{height} (the frames are {height}×{width} px)")
    planes = tuple(plane._replace(row_start=height - y_high, row_stop=height - y_low) for plane in plan.virtual_planes)
    return plan._replace(virtual_planes=planes, frame_width=x_stop - x_start, column_start=x_start)


def read_plane_frames(plan: IngestPlan, *, plane: VirtualPlane, channel: int, frame_start: int, frame_stop: int) -> np.ndarray:
    """Frames ``[frame_start, frame_stop)`` of one virtual plane and channel: (n, rows, width)."""
    pages = plan.global_pages(physical_plane=plane.physical_plane, channel=channel, frame_start=frame_start, frame_stop=frame_stop)
    return read_pages(plan, pages, row_start=plane.row_start, row_stop=plane.row_stop)
