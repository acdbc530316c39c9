"""NWB movie input: one TwoPhotonSeries per ``.nwb`` file, found with pynwb, read lazily with h5py.

Discovery opens each file with pynwb (``pip install 'cindra-dask[nwb]'``), picks its
TwoPhotonSeries (``file_io.nwb_series`` by name, or the only one; in ``acquisition`` or a processing
module), checks it is a 3-D movie stored in the file (not in external files) and records the HDF5
path of its ``data``. NWB stores frames (frames, x, y), x the column (NWB's convention and our own
export's), so a frame is ``data[t].T``; tasks read through the HDF5 reader with that orientation
(``io/arrays.py``). Frames of several planes or channels interleaved along the first axis follow
the TIFF page cycle, but an NWB file usually holds one plane and channel per series.

Acquisition metadata: the series' ``rate`` (Hz; or 1 / the median interval of its first
timestamps) with 1 plane and 1 channel, used when ``cindra_parameters.json`` is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cindra_dask.config import ACQUISITION_FILE_NAME, AcquisitionParameters
from cindra_dask.errors import InputError
from cindra_dask.io.acquisition import NWB, AcquisitionSource
from cindra_dask.io.arrays import ArrayFileInfo, listed_names
from cindra_dask.io.hdf5 import inspect_hdf5, read_hdf5_pages
from cindra_dask.io.tiff import FrameReader

NWB_SUFFIXES = (".nwb",)
TIMESTAMPS_FOR_RATE = 1000
"""Leading timestamps whose median interval gives the rate of a series without ``rate``."""


class NwbMovie(NamedTuple):
    """One NWB file's movie.

    Attributes
    ----------
    info : the file description the reader uses (dataset: the HDF5 path of the series' data; frames (T, x, y)).
    series : the TwoPhotonSeries' name.
    rate_hz : its sampling rate (None when it has neither rate nor timestamps).
    """

    info: ArrayFileInfo
    series: str
    rate_hz: float | None


def _rate(series: Any) -> float | None:
    if series.rate is not None:
        return float(series.rate)
    timestamps = series.timestamps
    if timestamps is None or len(timestamps) < 2:
        return None
    intervals = np.diff(np.asarray(timestamps[:TIMESTAMPS_FOR_RATE], dtype=float))
    return float(1.0 / np.median(intervals)) if np.median(intervals) > 0 else None


def inspect_nwb(path: Path, *, series: str | None) -> NwbMovie:
    """Check one NWB file and describe its movie (see the module docstring).

    Raises :class:`InputError`, one line naming the file and what to do: not NWB, pynwb missing,
    no or several TwoPhotonSeries (listed by name), data in external files, not 3-D.
    """
    try:
        from pynwb import NWBHDF5IO
        from pynwb.ophys import TwoPhotonSeries
    except ImportError as error:
        raise InputError(f"{path}: reading NWB files needs pynwb; pip install 'cindra-dask[nwb]'") from error
    skip = "or list its stem in file_io.ignored_file_names"
    try:
        with NWBHDF5IO(str(path), "r", load_namespaces=True) as io:
            nwbfile = io.read()
            found = sorted((item for item in nwbfile.objects.values() if isinstance(item, TwoPhotonSeries)), key=lambda item: item.name)
            names = [item.name for item in found]
            chosen = [item for item in found if series is None or item.name == series]
            if series is not None and not chosen:
                raise InputError(f"{path}: no TwoPhotonSeries '{series}' (series present: {listed_names(names)}); set file_io.nwb_series to one of them")
            if not chosen:
                raise InputError(f"{path}: no TwoPhotonSeries; an NWB movie input needs one ({skip})")
            if len(chosen) > 1:
                raise InputError(f"{path}: {len(chosen)} TwoPhotonSeries ({listed_names(names)}); set file_io.nwb_series to the one to process")
            movie = chosen[0]
            data = movie.data
            if not hasattr(data, "name") or data.shape[0] == 0:
                raise InputError(f"{path}: TwoPhotonSeries '{movie.name}' holds no frames in the file (external_file: {list(movie.external_file or [])}); convert the movie into the file or read the external files as TIFFs")
            shape = tuple(int(size) for size in data.shape)
            dataset, rate = str(data.name).lstrip("/"), _rate(movie)
    except InputError:
        raise
    except Exception as error:  # pynwb/h5py raise many types for files that are not NWB
        raise InputError(f"{path}: not a readable NWB file ({error.__class__.__name__}: {error}); replace or remove it, {skip}") from error
    if len(shape) != 3:
        raise InputError(
            f"{path}: TwoPhotonSeries '{movie.name}' data has shape {shape} ({len(shape)}-D); expected a 3-D (frames, x, y) movie, one series per plane "
            f"(a 4-D (frames, x, y, z) volume is not read: write one series per plane, or {ACQUISITION_FILE_NAME} with the planes interleaved along frames)"
        )
    info = inspect_hdf5(path, dataset=dataset)
    return NwbMovie(info._replace(page_shape=(info.page_shape[1], info.page_shape[0]), frame_axes="txy"), movie.name, rate)


def nwb_acquisition(movie: NwbMovie) -> AcquisitionSource | None:
    """The acquisition of the series (1 plane, 1 channel at its rate), or None without a rate."""
    if movie.rate_hz is None or movie.rate_hz <= 0:
        return None
    parameters = AcquisitionParameters(frame_rate=movie.rate_hz, plane_number=1, channel_number=1)
    return AcquisitionSource(NWB, Path(movie.info.path), parameters, {"series": movie.series, "rate": movie.rate_hz, "data": movie.info.dataset}, f"'{movie.series}'")


NWB_READER = FrameReader("nwb", "NWB", "frames", read_hdf5_pages)
"""The reader of NWB movies (an HDF5 dataset of (frames, x, y))."""
