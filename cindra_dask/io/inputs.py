"""Which movie files a recording has: the input format (``file_io.input_format``), each file's description and the files' own acquisition metadata.

``auto`` takes whichever kind the folder holds: a PrairieView XML (``io/bruker.py``; its TIFFs are
its frames), else TIFFs (``io/tiff.py``, ScanImage headers read by ``io/scanimage.py``), HDF5
files (``io/hdf5.py``), NWB files (``io/nwb.py``), Zarr stores (``io/zarr_movie.py``) or UCLA
Miniscope AVIs with their timestamps (``io/miniscope.py``); a folder
holding two of these kinds is refused, since mixing them in one frame sequence is almost certainly
a mistake. Every kind becomes the same :class:`IngestPlan`, read by the format's
:class:`FrameReader`; the acquisition in force is settled by ``io/acquisition.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from cindra_dask.config import InputFormat
from cindra_dask.errors import InputError
from cindra_dask.io.acquisition import AcquisitionRecord, AcquisitionSource, settle_acquisition
from cindra_dask.io.bruker import BRUKER_READER, find_prairie_xml, prairie_acquisition, prairie_files, read_prairie_xml
from cindra_dask.io.hdf5 import HDF5_READER, HDF5_SUFFIXES, inspect_hdf5
from cindra_dask.io.miniscope import AVI_READER, AVI_SUFFIXES, check_timestamps, inspect_avi, miniscope_acquisition, read_timestamps
from cindra_dask.io.nwb import NWB_READER, NWB_SUFFIXES, inspect_nwb, nwb_acquisition
from cindra_dask.io.scanimage import recording_scanimage_acquisition
from cindra_dask.io.tiff import TIFF_READER, TIFF_SUFFIXES, FrameReader, discover_movie_files, inspect_tiff, is_movie_candidate
from cindra_dask.io.zarr_movie import ZARR_READER, ZARR_SUFFIXES, inspect_zarr

READERS: dict[InputFormat, FrameReader] = {
    InputFormat.TIFF: TIFF_READER,
    InputFormat.SCANIMAGE: TIFF_READER,
    InputFormat.BRUKER: BRUKER_READER,
    InputFormat.HDF5: HDF5_READER,
    InputFormat.NWB: NWB_READER,
    InputFormat.ZARR: ZARR_READER,
    InputFormat.AVI: AVI_READER,
}
SUFFIXES: dict[InputFormat, tuple[str, ...]] = {
    InputFormat.TIFF: TIFF_SUFFIXES, InputFormat.HDF5: HDF5_SUFFIXES, InputFormat.NWB: NWB_SUFFIXES, InputFormat.ZARR: ZARR_SUFFIXES, InputFormat.AVI: AVI_SUFFIXES,
}
"""The kinds ``auto`` tells apart by name (a Bruker folder by its XML), in the order they are named in messages."""


class InspectedInputs(NamedTuple):
    """The recording's movie files, checked, and the acquisition in force.

    Attributes
    ----------
    input_format : the format in force (``auto`` resolved).
    reader : its frame reader.
    files : one description per readable file, ingest order (``TiffFileInfo`` / ``ArrayFileInfo``).
    problems : one line per unusable file or acquisition problem (the ingest must not start unless it is empty).
    acquisition : the acquisition in force and what else was read (None when ``problems`` prevent it).
    """

    input_format: InputFormat
    reader: FrameReader
    files: list[Any]
    problems: list[str]
    acquisition: AcquisitionRecord | None


def _quoted(formats: Sequence[InputFormat]) -> str:
    names = [f"'{kind.value}'" for kind in formats]
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def resolve_input_format(directory: Path, *, input_format: InputFormat, ignored_file_names: Sequence[str]) -> InputFormat:
    """``input_format``, or for ``auto`` the one kind of movie input found directly in ``directory``.

    Raises :class:`InputError` (one line) when ``auto`` finds two kinds, or none.
    """
    if input_format is not InputFormat.AUTO:
        return input_format
    if find_prairie_xml(directory, ignored_file_names=ignored_file_names) is not None:
        return InputFormat.BRUKER
    ignored = set(ignored_file_names)
    found = {kind: sum(is_movie_candidate(path, suffixes=suffixes, ignored=ignored) for path in directory.iterdir()) for kind, suffixes in SUFFIXES.items()}
    present = [kind for kind, count in found.items() if count]
    if len(present) > 1:
        counts = [f"{READERS[kind].label} ({found[kind]})" for kind in present]
        listed = " and ".join([", ".join(counts[:-1]), counts[-1]])
        raise InputError(
            f"{directory}: holds {'both ' if len(present) == 2 else ''}{listed} movie files; "
            f"set file_io.input_format to {_quoted(present)} (or list the other files' stems in file_io.ignored_file_names)"
        )
    if not present:
        raise InputError(
            f"{directory}: no .tif/.tiff files (nor .h5/.hdf5, .nwb, .zarr, .avi, or a PrairieView .xml) found (ignored stems: {sorted(ignored) or 'none'}); check file_io.data_path"
        )
    return present[0]


def _inspect_all(paths: Sequence[Path], inspect: Callable[[Path], Any], problems: list[str]) -> list[Any]:
    """``inspect(path)`` of every path; each file's `InputError` lines go to ``problems``."""
    results = []
    for path in paths:
        try:
            results.append(inspect(path))
        except InputError as error:
            problems.extend(error.problems)
    return results


def _bruker_files(directory: Path, *, ignored_file_names: Sequence[str], problems: list[str]) -> tuple[list[Any], Callable[[], AcquisitionSource | None]]:
    xml = find_prairie_xml(directory, ignored_file_names=ignored_file_names)
    if xml is None:
        raise InputError(f"{directory}: no PrairieView XML (root element PVScan) found (file_io.input_format is 'bruker'); point file_io.data_path at the T-series folder")
    scan = read_prairie_xml(xml)
    paths, page_counts = prairie_files(scan)
    files = _inspect_all(paths, inspect_tiff, problems)
    named = dict(zip(map(str, paths), page_counts))
    for info in files:
        if info.page_count != named[info.path]:
            problems.append(f"{info.path}: {info.page_count} pages but {xml.name} names {named[info.path]}; copy the file again or fix the XML")
    return files, lambda: prairie_acquisition(scan)


def inspect_inputs(
    directory: Path,
    *,
    input_format: InputFormat,
    hdf5_dataset: str,
    nwb_series: str | None,
    zarr_array: str | None,
    ignored_file_names: Sequence[str],
    explicit: AcquisitionSource | None,
) -> InspectedInputs:
    """Find and inspect the movie files of one recording (see :func:`resolve_input_format`) and settle the acquisition.

    ``explicit`` is the configuration's or ``cindra_parameters.json``'s acquisition, if any; the
    files' own metadata (ScanImage headers of the TIFFs, checked to agree, the Bruker XML, the first NWB series)
    are read either way. Raises :class:`InputError` when no file of the format is found (or a
    Bruker XML names missing files); problems with individual files are collected in
    ``problems`` so that every bad file is reported at once.
    """
    resolved = resolve_input_format(directory, input_format=input_format, ignored_file_names=ignored_file_names)
    problems: list[str] = []
    read_metadata: Callable[[], AcquisitionSource | None] = lambda: None
    note = f"file_io.input_format is '{resolved.value}'; " if resolved is not InputFormat.TIFF else ""
    if resolved is InputFormat.BRUKER:
        files, read_metadata = _bruker_files(directory, ignored_file_names=ignored_file_names, problems=problems)
    elif resolved in (InputFormat.TIFF, InputFormat.SCANIMAGE):
        files = _inspect_all(discover_movie_files(directory, suffixes=TIFF_SUFFIXES, ignored_file_names=ignored_file_names, note=note), inspect_tiff, problems)
        if files:
            read_metadata = lambda: recording_scanimage_acquisition([Path(info.path) for info in files], page_height=files[0].page_shape[0])
    elif resolved is InputFormat.NWB:
        movies = _inspect_all(discover_movie_files(directory, suffixes=NWB_SUFFIXES, ignored_file_names=ignored_file_names, note=note), lambda path: inspect_nwb(path, series=nwb_series), problems)
        files = [movie.info for movie in movies]
        if movies:
            read_metadata = lambda: nwb_acquisition(movies[0])
    elif resolved is InputFormat.AVI:
        files = _inspect_all(discover_movie_files(directory, suffixes=AVI_SUFFIXES, ignored_file_names=ignored_file_names, note=note), inspect_avi, problems)
        try:
            timestamps = read_timestamps(directory)
        except InputError as error:
            problems.extend(error.problems)
        else:
            if not problems:
                problems.extend(check_timestamps(timestamps, files))
            read_metadata = lambda: miniscope_acquisition(timestamps)
    else:
        paths = discover_movie_files(directory, suffixes=SUFFIXES[resolved], ignored_file_names=ignored_file_names, note=note)
        inspect = (lambda path: inspect_hdf5(path, dataset=hdf5_dataset)) if resolved is InputFormat.HDF5 else (lambda path: inspect_zarr(path, array=zarr_array))
        files = _inspect_all(paths, inspect, problems)
    metadata_problems: list[str] = []
    try:
        metadata = read_metadata()
    except InputError as error:
        metadata, metadata_problems = None, list(error.problems)
    if resolved is InputFormat.SCANIMAGE and files and metadata is None and not metadata_problems:
        problems.append(f"{files[0].path}: no ScanImage header (file_io.input_format is 'scanimage'); set file_io.input_format to 'tiff' for other TIFFs")
    acquisition = None
    if not problems:
        try:
            acquisition = settle_acquisition(explicit, metadata, metadata_problems=metadata_problems, directory=directory, label=READERS[resolved].label)
        except InputError as error:
            problems.extend(error.problems)
    return InspectedInputs(resolved, READERS[resolved], files, problems, acquisition)
