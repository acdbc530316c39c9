"""HDF5 movie input: discovery, inspection and lazy frame reading (h5py).

Conventions: every ``.h5``/``.hdf5`` file of the recording holds one 3-D dataset (T, H, W) at
``file_io.hdf5_dataset`` (suite2p's ``h5py_key``; default ``data``). An index along T is what a
TIFF page is in ``io/tiff.py``: one frame of one plane and channel; frames cycle plane-major /
channel-minor (p0c0, p0c1, p1c0, ...) and the cycle continues across files, taken in natural sort
order; MROI regions are row strips, as for TIFFs. The acquisition parameters come from
``cindra_parameters.json`` or the configuration's ``acquisition`` section, as for TIFFs.

Discovery opens each file once to check it (an HDF5 file, the dataset present, 3-D, a supported
pixel type, complete, its first and last frames decodable) and records only its shape and type.
A task opens the files its chunk touches and reads a strided selection of its own frames (every
planes × channels-th index) and rows, never the whole movie; with a chunked dataset HDF5 decodes
only the dataset chunks that hold them.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from cindra_dask.errors import InputError
from cindra_dask.io.arrays import ArrayFileInfo, BlockReader, listed_names, oriented_block, read_array_pages
from cindra_dask.io.tiff import SUPPORTED_KINDS, FrameReader

if TYPE_CHECKING:
    from cindra_dask.io.tiff import IngestPlan

HDF5_SUFFIXES = (".h5", ".hdf5")


def _datasets_present(handle: Any) -> str:
    """``'name' (T×H×W dtype)`` for the file's first datasets, or ``none``."""
    import h5py

    found: list[str] = []

    def visit(name: str, node: Any) -> None:
        if isinstance(node, h5py.Dataset):
            found.append(f"'{name}' ({'×'.join(str(size) for size in node.shape) or 'scalar'} {node.dtype})")

    handle.visititems(visit)
    return listed_names(found)


def inspect_hdf5(path: Path, *, dataset: str) -> ArrayFileInfo:
    """Check one HDF5 file and describe its movie dataset.

    Raises :class:`InputError`, one line naming the file and what to do, when the file is not
    HDF5, is truncated or unreadable, lacks ``dataset`` (the line lists the datasets present), the
    dataset is not 3-D (frames, height, width), or its pixel type is not an integer or float type.
    """
    import h5py

    skip = "or list its stem in file_io.ignored_file_names"
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file (no HDF5 signature); replace or remove it, {skip}")
    try:
        with h5py.File(path, "r") as handle:
            node = handle.get(dataset)
            if not isinstance(node, h5py.Dataset):
                what = "is a group, not a dataset" if node is not None else "is missing"
                raise InputError(f"{path}: dataset '{dataset}' {what} (datasets present: {_datasets_present(handle)}); set file_io.hdf5_dataset to the one holding the movie")
            shape, dtype = tuple(int(size) for size in node.shape), np.dtype(node.dtype)
            if len(shape) != 3:
                raise InputError(
                    f"{path}: dataset '{dataset}' has shape {shape} ({len(shape)}-D); expected a 3-D (frames, height, width) movie with planes and channels "
                    "interleaved along the first axis; rewrite it in that layout or point file_io.hdf5_dataset at such a dataset"
                )
            if dtype.fields is not None or dtype.kind not in SUPPORTED_KINDS:
                raise InputError(f"{path}: dataset '{dataset}' has pixel type {dtype}, which is not supported; convert the frames to an integer or float type")
            if shape[0]:
                node[:1]  # decoding the first and last frames catches a missing compression filter or
                node[-1:]  # data past the end of the file before any task runs
    except InputError:
        raise
    except Exception as error:  # h5py raises OSError, KeyError, RuntimeError... for damaged files
        message = str(error)
        if "truncated" in message:
            raise InputError(f"{path}: truncated HDF5 file ({message}); copy the file again {skip}") from error
        raise InputError(f"{path}: not a readable HDF5 file ({error.__class__.__name__}: {message}); replace or remove it, {skip}") from error
    return ArrayFileInfo(str(path), shape[0], (shape[1], shape[2]), dtype.newbyteorder("=").str, dataset, "tyx")


@contextmanager
def open_hdf5_block_reader(info: ArrayFileInfo) -> Iterator[BlockReader]:
    """Open one HDF5 (or NWB) file; yield the reader of its movie dataset's frames and rows (HDF5 decodes only the chunks they touch)."""
    import h5py

    with h5py.File(info.path, "r") as handle:
        dataset = handle[info.dataset]
        yield lambda frames, rows: oriented_block(dataset, frames, rows, frame_axes=info.frame_axes)


def read_hdf5_pages(plan: IngestPlan, global_pages: np.ndarray, *, row_start: int = 0, row_stop: int | None = None) -> np.ndarray:
    """The HDF5 reader: the given global frames (ascending; rows ``[row_start, row_stop)``) → (n, rows, width) array.

    Opens each file once and reads one (strided) selection of its frames and rows.
    """
    return read_array_pages(plan, global_pages, row_start=row_start, row_stop=row_stop, open_block_reader=open_hdf5_block_reader)


HDF5_READER = FrameReader("hdf5", "HDF5", "frames", read_hdf5_pages)
"""The reader of HDF5 movies (one frame per index along the dataset's first axis)."""
