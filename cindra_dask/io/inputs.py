"""Which movie files a recording has: the input format (``file_io.input_format``) and each file's description.

``auto`` takes whichever kind the folder holds: TIFFs (``io/tiff.py``) or HDF5 files
(``io/hdf5.py``); a folder holding both is refused, since mixing them in one frame sequence is
almost certainly a mistake. Either way the files become the same :class:`IngestPlan`, read by the
format's :class:`FrameReader`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Sequence

from cindra_dask.config import InputFormat
from cindra_dask.errors import InputError
from cindra_dask.io.hdf5 import HDF5_READER, HDF5_SUFFIXES, inspect_hdf5
from cindra_dask.io.tiff import TIFF_READER, TIFF_SUFFIXES, FrameReader, discover_movie_files, inspect_tiff

READERS: dict[InputFormat, FrameReader] = {InputFormat.TIFF: TIFF_READER, InputFormat.HDF5: HDF5_READER}


class InspectedInputs(NamedTuple):
    """The recording's movie files, checked.

    Attributes
    ----------
    input_format : the format in force (``auto`` resolved).
    reader : its frame reader.
    files : one description per readable file, natural order (``TiffFileInfo`` / ``Hdf5FileInfo``).
    problems : one line per unusable file (the ingest must not start unless it is empty).
    """

    input_format: InputFormat
    reader: FrameReader
    files: list[Any]
    problems: list[str]


def resolve_input_format(directory: Path, *, input_format: InputFormat, ignored_file_names: Sequence[str]) -> InputFormat:
    """``input_format``, or for ``auto`` the one kind of movie file found directly in ``directory``.

    Raises :class:`InputError` (one line) when ``auto`` finds both TIFF and HDF5 files, or neither.
    """
    if input_format is not InputFormat.AUTO:
        return input_format
    ignored = set(ignored_file_names)
    found = {InputFormat.TIFF: 0, InputFormat.HDF5: 0}
    for path in directory.iterdir():
        if path.is_file() and path.stem not in ignored:
            suffix = path.suffix.lower()
            if suffix in TIFF_SUFFIXES:
                found[InputFormat.TIFF] += 1
            elif suffix in HDF5_SUFFIXES:
                found[InputFormat.HDF5] += 1
    if found[InputFormat.TIFF] and found[InputFormat.HDF5]:
        raise InputError(
            f"{directory}: holds both TIFF ({found[InputFormat.TIFF]}) and HDF5 ({found[InputFormat.HDF5]}) movie files; "
            "set file_io.input_format to 'tiff' or 'hdf5' (or list the other files' stems in file_io.ignored_file_names)"
        )
    if not any(found.values()):
        raise InputError(f"{directory}: no .tif/.tiff files (nor .h5/.hdf5 files) found (ignored stems: {sorted(ignored) or 'none'}); check file_io.data_path")
    return InputFormat.TIFF if found[InputFormat.TIFF] else InputFormat.HDF5


def inspect_inputs(directory: Path, *, input_format: InputFormat, hdf5_dataset: str, ignored_file_names: Sequence[str]) -> InspectedInputs:
    """Find and inspect the movie files of one recording (see :func:`resolve_input_format`).

    Raises :class:`InputError` when no file of the format is found; problems with individual files
    are collected in ``problems`` so that every bad file is reported at once.
    """
    resolved = resolve_input_format(directory, input_format=input_format, ignored_file_names=ignored_file_names)
    files, problems = [], []
    if resolved is InputFormat.TIFF:
        paths, inspect = discover_movie_files(directory, suffixes=TIFF_SUFFIXES, ignored_file_names=ignored_file_names), inspect_tiff
    else:
        paths, inspect = discover_movie_files(directory, suffixes=HDF5_SUFFIXES, ignored_file_names=ignored_file_names, note="file_io.input_format is 'hdf5'; "), lambda path: inspect_hdf5(path, dataset=hdf5_dataset)
    for path in paths:
        try:
            files.append(inspect(path))
        except InputError as error:
            problems.extend(error.problems)
    return InspectedInputs(resolved, READERS[resolved], files, problems)
