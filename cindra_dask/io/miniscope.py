"""UCLA Miniscope AVI input (``file_io.input_format: avi``): discovery, inspection, timestamps and lazy frame reading (PyAV).

Conventions: a Miniscope recording folder holds its AVIs, V4 ``0.avi``, ``1.avi``, … or V3
``msCam1.avi``, ``msCam2.avi``, …, taken in natural sort order (``msCam2`` before ``msCam10``), and
one frame timestamp file: V4 ``timeStamps.csv`` (header ``Frame Number,Time Stamp (ms),…``), V3
``timestamp.dat`` (tab separated, ``camNum frameNum sysClock …``, sysClock in ms). A frame is one
8-bit grey image (colour AVIs are converted to grey); one plane, one channel. The frame rate is the
timestamps' (the inverse of their median interval), unless ``cindra_parameters.json`` or the
configuration's ``acquisition`` section gives one.

Discovery opens each AVI once (a video stream present, its frames counted from the demuxed
packets, the first one decoded) and reads the timestamps; an AVI that is not a video, frame sizes
that differ between files, a missing timestamp file, or timestamps that are not one per frame are
each one line of the `InputError`, before anything is written. A task decodes the AVIs its chunk
touches from their start up to its last frame (Miniscope files hold 1000 frames), never the whole movie.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NamedTuple, Sequence

import numpy as np

from cindra_dask.config import AcquisitionParameters
from cindra_dask.errors import InputError
from cindra_dask.io.acquisition import MINISCOPE, AcquisitionSource
from cindra_dask.io.arrays import ArrayFileInfo, BlockReader, read_array_pages
from cindra_dask.io.tiff import FrameReader

if TYPE_CHECKING:
    from cindra_dask.io.tiff import IngestPlan

AVI_SUFFIXES = (".avi",)
TIMESTAMP_FILES = ("timeStamps.csv", "timestamp.dat")
"""Frame timestamp files of the Miniscope V4 and V3 DAQ software, in the order they are looked for."""


class MiniscopeTimestamps(NamedTuple):
    """A recording's frame timestamps.

    Attributes
    ----------
    path : the file read.
    times_ms : (T,) float64 time of every frame, ms (as written; V3's sysClock may start anywhere).
    """

    path: Path
    times_ms: np.ndarray

    @property
    def frame_rate_hz(self) -> float:
        """1000 / the median interval between frames (0 with fewer than two frames)."""
        intervals = np.diff(self.times_ms)
        return float(1000.0 / np.median(intervals)) if intervals.size and np.median(intervals) > 0 else 0.0


def inspect_avi(path: Path) -> ArrayFileInfo:
    """Check one AVI and describe its frames (uint8, one grey image each).

    Raises :class:`InputError`, one line naming the file, when it is not a video PyAV (FFmpeg) can
    open, has no video stream, or no frame can be decoded.
    """
    import av

    skip = "replace or remove it, or list its stem in file_io.ignored_file_names"
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: holds no video stream; {skip}")
            stream = container.streams.video[0]
            frame_count = sum(1 for packet in container.demux(stream) if packet.size)
            container.seek(0)
            first = next(container.decode(video=0), None)
    except InputError:
        raise
    except (av.FFmpegError, OSError, StopIteration) as error:
        raise InputError(f"{path}: not a readable video ({error.__class__.__name__}: {error}); {skip}") from error
    if first is None or frame_count == 0:
        raise InputError(f"{path}: a video without frames; {skip}")
    return ArrayFileInfo(str(path), frame_count, (int(first.height), int(first.width)), np.dtype(np.uint8).str, "", "tyx")


def read_timestamps(directory: Path) -> MiniscopeTimestamps:
    """The frame timestamps of a Miniscope folder (see the module docstring).

    Raises :class:`InputError` (one line) when neither file is there or the file cannot be parsed.
    """
    for name in TIMESTAMP_FILES:
        path = directory / name
        if path.is_file():
            break
    else:
        raise InputError(f"{directory}: no Miniscope timestamps ({' or '.join(TIMESTAMP_FILES)}) beside the AVIs; copy the file the DAQ software wrote with them")
    try:
        delimiter = "," if path.suffix == ".csv" else None
        table = np.loadtxt(path, delimiter=delimiter, skiprows=1, ndmin=2)
        column = 1 if path.suffix == ".csv" else 2
        times = table[:, column].astype(np.float64)
    except (ValueError, IndexError) as error:
        raise InputError(f"{path}: not a Miniscope timestamp table ({error}); copy the file the DAQ software wrote again") from error
    return MiniscopeTimestamps(path, times)


def check_timestamps(timestamps: MiniscopeTimestamps, files: Sequence[ArrayFileInfo]) -> list[str]:
    """One line per problem of the timestamps against the AVIs' frames (count, order)."""
    frame_count = sum(info.page_count for info in files)
    problems = []
    if len(timestamps.times_ms) != frame_count:
        problems.append(f"{timestamps.path}: {len(timestamps.times_ms)} timestamps but the AVIs hold {frame_count} frames; copy the recording's files again (a file is missing or cut short)")
    elif frame_count > 1 and np.any(np.diff(timestamps.times_ms) <= 0):
        problems.append(f"{timestamps.path}: timestamps do not increase from frame to frame; copy the file the DAQ software wrote again")
    return problems


def miniscope_acquisition(timestamps: MiniscopeTimestamps) -> AcquisitionSource | None:
    """One plane, one channel at the timestamps' rate; None with fewer than two frames."""
    rate = timestamps.frame_rate_hz
    if rate <= 0:
        return None
    parameters = AcquisitionParameters(frame_rate=rate, plane_number=1, channel_number=1)
    return AcquisitionSource(MINISCOPE, timestamps.path, parameters, {"median_interval_ms": float(np.median(np.diff(timestamps.times_ms))), "frames": int(len(timestamps.times_ms))}, "")


@contextmanager
def open_avi_block_reader(info: ArrayFileInfo) -> Iterator[BlockReader]:
    """Open one AVI; yield the reader of its frames (decoded from the start up to the last one asked for) and rows."""
    import av

    with av.open(info.path) as container:

        def read(frames: slice | list[int], rows: slice) -> np.ndarray:
            wanted = np.arange(info.page_count)[frames] if isinstance(frames, slice) else np.asarray(frames)
            position = {int(frame): index for index, frame in enumerate(wanted)}
            block = np.empty((len(wanted), rows.stop - rows.start, info.page_shape[1]), np.uint8)
            container.seek(0)
            for index, frame in enumerate(container.decode(video=0)):
                if index in position:
                    block[position[index]] = frame.to_ndarray(format="gray")[rows]
                if index >= wanted[-1]:
                    break
            return block

        yield read


def read_avi_pages(plan: IngestPlan, global_pages: np.ndarray, *, row_start: int = 0, row_stop: int | None = None) -> np.ndarray:
    """The AVI reader: the given global frames (ascending; rows ``[row_start, row_stop)``) → (n, rows, width) uint8 array."""
    return read_array_pages(plan, global_pages, row_start=row_start, row_stop=row_stop, open_block_reader=open_avi_block_reader)


AVI_READER = FrameReader("avi", "AVI", "frames", read_avi_pages)
"""The reader of UCLA Miniscope AVIs (one 8-bit grey image per video frame)."""
