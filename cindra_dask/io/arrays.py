"""Movies stored as arrays (HDF5 and NWB datasets, Zarr arrays): the file description and the lazy page reader they share.

An index along an array's first axis is what a TIFF page is in ``io/tiff.py``: one frame of one
plane and channel, in the same plane-major / channel-minor cycle, continued across files in natural
order. Frames are stored (T, y, x) (``frame_axes`` ``tyx``: HDF5, Zarr) or, by NWB's convention
and our own NWB export, (T, x, y) (``txy``); the reader hands out (n, rows, width) either way.
A task opens the files its chunk touches and reads one (strided) selection of its own frames and
rows per file, never the whole movie.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Callable, Literal, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from cindra_dask.io.tiff import IngestPlan

FrameAxes = Literal["tyx", "txy"]
LISTED_NAMES = 8
"""How many of a file's datasets (arrays, series) a message about a missing one lists."""


class ArrayFileInfo(NamedTuple):
    """What discovery learned about one file (HDF5, NWB) or store (Zarr) holding a movie array.

    Attributes
    ----------
    path : file or store path (str, so the plan pickles small).
    page_count : frames along the array's first axis (pages, in TIFF terms).
    page_shape : (height, width) of every frame, px.
    dtype : numpy dtype string of the pixels, native byte order (big-endian data are converted on read).
    dataset : path of the movie array inside the file or store ("" for a store that is itself the array).
    frame_axes : ``tyx`` (frames, rows, columns) or ``txy`` (frames, columns, rows: NWB).
    """

    path: str
    page_count: int
    page_shape: tuple[int, int]
    dtype: str
    dataset: str
    frame_axes: FrameAxes


BlockReader = Callable[[slice | list[int], slice], np.ndarray]
"""``read(frames, rows)``: the array's frames ``frames`` (a slice or ascending list) and rows ``rows`` as (n, rows, width)."""


def frame_selection(local_frames: np.ndarray) -> slice | list[int]:
    """An array selection of ascending frame indices: a (strided) slice when evenly spaced, else a list."""
    first = int(local_frames[0])
    if len(local_frames) == 1:
        return slice(first, first + 1)
    steps = np.diff(local_frames)
    if np.all(steps == steps[0]) and steps[0] > 0:
        return slice(first, int(local_frames[-1]) + 1, int(steps[0]))
    return [int(frame) for frame in local_frames]


def read_array_pages(
    plan: IngestPlan, global_pages: np.ndarray, *, row_start: int, row_stop: int | None, open_block_reader: Callable[[ArrayFileInfo], AbstractContextManager[BlockReader]]
) -> np.ndarray:
    """The given global frames (ascending; rows ``[row_start, row_stop)``) → (n, rows, width) array of the plan's dtype.

    ``open_block_reader(info)`` opens one file and yields its :data:`BlockReader`; each file the
    frames touch is opened once and read with one selection.
    """
    row_stop = row_stop if row_stop is not None else plan.files[0].page_shape[0]
    dtype = np.dtype(plan.dtype)
    frames = np.empty((len(global_pages), row_stop - row_start, plan.frame_width), dtype=dtype)
    file_indices = np.searchsorted(plan.file_first_page, global_pages, side="right") - 1
    for file_index in np.unique(file_indices):
        info = plan.files[int(file_index)]
        positions = np.flatnonzero(file_indices == file_index)
        local_frames = global_pages[positions] - plan.file_first_page[file_index]
        with open_block_reader(info) as read_block:
            block = read_block(frame_selection(local_frames), slice(row_start, row_stop))
        frames[positions] = block[:, :, plan.column_start : plan.column_start + plan.frame_width].astype(dtype, copy=False)
    return frames


def oriented_block(array: Any, frames: slice | list[int], rows: slice, *, frame_axes: FrameAxes) -> np.ndarray:
    """``array[frames, rows, :]`` for a (T, y, x) array, ``array[frames, :, rows]`` transposed for a (T, x, y) one: (n, rows, width)."""
    if frame_axes == "txy":
        return np.asarray(array[frames, :, rows]).transpose(0, 2, 1)
    return np.asarray(array[frames, rows, :])


def listed_names(names: list[str]) -> str:
    """The first `LISTED_NAMES` of ``names`` joined with commas (``and N more`` past them), or ``none``."""
    listed = ", ".join(names[:LISTED_NAMES])
    return (listed + (f" and {len(names) - LISTED_NAMES} more" if len(names) > LISTED_NAMES else "")) or "none"
