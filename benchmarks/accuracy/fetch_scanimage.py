"""Fetch a real ScanImage 3.8 TIFF (its header is the truth) for the ScanImage metadata test.

File, copied out of a git snapshot of its public repository and checked against its SHA-256:

- ``si38_blank``: ``inst/extdata/Blank-IPA_1s_16r_032.tif`` of jefferis/scanimage @ 4dd0d0a7b2b8
  (R package by G. Jefferis; GPL-3): 30 pages of 64 × 64 uint16, ScanImage 3.8 ``state.*``
  header in the ImageDescription: ``state.acq.frameRate=8.13802083333333``,
  ``state.acq.numberOfZSlices=1``, one saved channel (``state.acq.savingChannel2=1``).

Usage::

    python benchmarks/accuracy/fetch_scanimage.py --scanimage <jefferis/scanimage git dir> [--cache DIR]

The file is read with ``git show HEAD:<path>`` (a bare clone is enough) into the recording folder
``<cache>/si38_blank/`` (no ``cindra_parameters.json``: the acquisition comes from the header). The
cache is ``$CINDRA_DASK_DATA/scanimage`` if that variable is set, else
``~/.cache/cindra-dask/scanimage``; nothing is written inside this repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import data_cache  # the sibling module of benchmarks/accuracy


class ScanImageFile(NamedTuple):
    """One real ScanImage file and what its header says.

    Attributes
    ----------
    name : recording folder name.
    path : path inside jefferis/scanimage.
    sha256 : SHA-256 of the file at the snapshot named in the module docstring.
    frame_rate_hz : ``state.acq.frameRate``.
    page_count, page_shape : pages and their (height, width), px.
    saved_channel : the one channel saved (ScanImage numbering).
    """

    name: str
    path: str
    sha256: str
    frame_rate_hz: float
    page_count: int
    page_shape: tuple[int, int]
    saved_channel: int


FILES: tuple[ScanImageFile, ...] = (
    ScanImageFile("si38_blank", "inst/extdata/Blank-IPA_1s_16r_032.tif", "68670089ac5c9d8589d81a68c04f5c91a278d0a96aa6f2e18ebb6a1c67d66171", 8.13802083333333, 30, (64, 64), 2),
)


def cache_directory() -> Path:
    """``$CINDRA_DASK_DATA/scanimage`` or ``~/.cache/cindra-dask/scanimage``."""
    return data_cache.cache_directory("scanimage")


def cached_file(entry: ScanImageFile, cache: Path | None = None) -> Path:
    """Where ``entry`` is cached: ``<cache>/<name>/<file name>``."""
    return (cache or cache_directory()) / entry.name / Path(entry.path).name


def fetch(repository: Path, cache: Path) -> list[Path]:
    """Copy every file of `FILES` out of the jefferis/scanimage git directory into ``cache``."""
    by_path = {entry.path: entry for entry in FILES}
    return data_cache.copy_checked(repository, [(entry.path, entry.sha256) for entry in FILES], source_of=lambda name: name, target_of=lambda name: cached_file(by_path[name], cache))


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scanimage", type=Path, required=True, help="a jefferis/scanimage git directory or checkout")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: $CINDRA_DASK_DATA/scanimage or ~/.cache/cindra-dask/scanimage)")
    options = parser.parse_args(arguments)
    for path in fetch(options.scanimage, options.cache or cache_directory()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
