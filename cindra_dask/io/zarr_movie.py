"""Zarr movie input: one 3-D (frames, height, width) array per ``.zarr`` store (v2 or v3), read lazily with zarr.

Each ``.zarr`` directory directly in the data folder is one "file": the array at
``file_io.zarr_array`` inside it, or the store itself when it is an array, or its only array.
Frames follow the TIFF page cycle (plane-major / channel-minor along the first axis, continued
across stores in natural order). A cindra-dask recording store (a ``.zarr`` holding ``phases``
in its root attributes) is never taken as an input. Discovery checks the rank, pixel type and that
the first and last frames decode; a task reads one (strided) orthogonal selection of its own
frames and rows per store, so zarr decodes only the chunks they touch.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from cindra_dask.errors import InputError
from cindra_dask.io.arrays import ArrayFileInfo, BlockReader, listed_names, oriented_block, read_array_pages
from cindra_dask.io.tiff import SUPPORTED_KINDS, FrameReader
from cindra_dask.store import open_input_zarr

if TYPE_CHECKING:
    from cindra_dask.io.tiff import IngestPlan

ZARR_SUFFIXES = (".zarr",)


def _arrays_present(group: Any) -> list[tuple[str, Any]]:
    """(path, array) of every array under ``group``, sorted by path."""
    import zarr

    return sorted((name, node) for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array))


def inspect_zarr(path: Path, *, array: str | None) -> ArrayFileInfo:
    """Check one Zarr store and describe its movie array.

    Raises :class:`InputError`, one line naming the store and what to do, when it is not a
    readable Zarr store, the array is missing or ambiguous (the arrays present are listed), not
    3-D, of an unsupported pixel type, or its first or last frame does not decode.
    """
    import zarr

    skip = "or list its stem in file_io.ignored_file_names"
    try:
        node = open_input_zarr(path)
        if array is not None:
            target = node[array] if isinstance(node, zarr.Group) and array in node else None
            if not isinstance(target, zarr.Array):
                present = [f"'{name}' ({'×'.join(map(str, item.shape))} {item.dtype})" for name, item in _arrays_present(node)] if isinstance(node, zarr.Group) else ["the store itself"]
                raise InputError(f"{path}: no array '{array}' (arrays present: {listed_names(present)}); set file_io.zarr_array to the one holding the movie")
            name = array
        elif isinstance(node, zarr.Array):
            target, name = node, ""
        else:
            arrays = _arrays_present(node)
            if len(arrays) != 1:
                present = [f"'{item_name}' ({'×'.join(map(str, item.shape))} {item.dtype})" for item_name, item in arrays]
                raise InputError(f"{path}: {len(arrays)} arrays (arrays present: {listed_names(present)}); set file_io.zarr_array to the one holding the movie")
            name, target = arrays[0]
        shape, dtype = tuple(int(size) for size in target.shape), np.dtype(target.dtype)
        if len(shape) != 3:
            raise InputError(
                f"{path}: array '{name or '/'}' has shape {shape} ({len(shape)}-D); expected a 3-D (frames, height, width) movie with planes and channels "
                "interleaved along the first axis; rewrite it in that layout or point file_io.zarr_array at such an array"
            )
        if dtype.fields is not None or dtype.kind not in SUPPORTED_KINDS:
            raise InputError(f"{path}: array '{name or '/'}' has pixel type {dtype}, which is not supported; convert the frames to an integer or float type")
        if shape[0]:
            target[:1]  # decoding the first and last frames catches a missing codec or chunk before any task runs
            target[-1:]
    except InputError:
        raise
    except Exception as error:  # zarr raises many types for damaged or foreign folders
        raise InputError(f"{path}: not a readable Zarr store ({error.__class__.__name__}: {error}); replace or remove it, {skip}") from error
    return ArrayFileInfo(str(path), shape[0], (shape[1], shape[2]), dtype.newbyteorder("=").str, name, "tyx")


@contextmanager
def open_zarr_block_reader(info: ArrayFileInfo) -> Iterator[BlockReader]:
    """Open one Zarr store; yield the reader of its movie array's frames and rows (orthogonal selection)."""
    node = open_input_zarr(info.path)
    target = node[info.dataset] if info.dataset else node
    yield lambda frames, rows: oriented_block(target.oindex, frames, rows, frame_axes=info.frame_axes)


def read_zarr_pages(plan: IngestPlan, global_pages: np.ndarray, *, row_start: int = 0, row_stop: int | None = None) -> np.ndarray:
    """The Zarr reader: the given global frames (ascending; rows ``[row_start, row_stop)``) → (n, rows, width) array."""
    return read_array_pages(plan, global_pages, row_start=row_start, row_stop=row_stop, open_block_reader=open_zarr_block_reader)


ZARR_READER = FrameReader("zarr", "Zarr", "frames", read_zarr_pages)
"""The reader of Zarr movies (one frame per index along the array's first axis)."""
