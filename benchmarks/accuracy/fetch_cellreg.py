"""Fetch the real spatial footprints of zivlab/CellReg's sample data (GPL-2.0) for the tracking bench.

CellReg (Sheintuch et al. 2017, public repository zivlab/CellReg @ 70668513c665) ships five sessions of
one field (``SampleData/spatial_footprints_0{1..5}.mat``: ``allFiltersMat``, n × 255 × 324 float64,
each cell's footprint non-zero on its pixels only; 2.35 µm per px). ``bench_tracking.py`` takes the
cells of one of them as the true cells of semi-synthetic sessions.

Usage::

    python benchmarks/accuracy/fetch_cellreg.py <CellReg git dir or checkout> [--cache DIR]

The files are read with ``git show HEAD:<path>`` (a bare clone is enough), checked against their
SHA-256 and copied to ``$CINDRA_DASK_DATA/cellreg`` (if that variable is set) or
``~/.cache/cindra-dask/cellreg``; nothing is written inside this repository.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from cindra_dask.rois import RaggedRois

import data_cache  # the sibling module of benchmarks/accuracy

# (path in the CellReg repository, SHA-256 at 70668513c665)
FILES: tuple[tuple[str, str], ...] = (
    ("SampleData/spatial_footprints_01.mat", "2f367e2620a7275a798b11f332a89d412205fa595d46b271de3478c4ea31c98f"),
    ("SampleData/spatial_footprints_02.mat", "ffc37806ca70a5103302821dedf3b681650c9e9c80d950b4c1348b0d8ee72937"),
    ("SampleData/spatial_footprints_03.mat", "2325ad7d1a6c83dab743e247f6db5acb1b98cf39a35b8d3be97f0f68e923531d"),
    ("SampleData/spatial_footprints_04.mat", "b044627d5767e7c96212efaf461cbf88bceef420ae5e6b83b7b03eda942b4842"),
    ("SampleData/spatial_footprints_05.mat", "6b0ac85a1e2e2472263e46ec86a424df0d573a5cfcc20fa995b7a644c9e200e9"),
)


def cache_directory() -> Path:
    """``$CINDRA_DASK_DATA/cellreg`` or ``~/.cache/cindra-dask/cellreg``."""
    return data_cache.cache_directory("cellreg")


def footprint_path(session: int, cache: Path | None = None) -> Path:
    """Cached file of session ``session`` (1–5)."""
    return (cache or cache_directory()) / Path(FILES[session - 1][0]).name


def fetch(git_dir: Path, cache: Path) -> list[Path]:
    """Copy every file of `FILES` from the repository into ``cache`` after checking its SHA-256."""
    return data_cache.copy_checked(git_dir, FILES, source_of=lambda name: name, target_of=lambda name: cache / Path(name).name)


def load_footprints(path: Path) -> tuple[RaggedRois, tuple[int, int]]:
    """One session's footprints as ragged masks (weights = the footprint values) and the (H, W) frame."""
    from scipy.io import loadmat

    footprints = np.asarray(loadmat(str(path))["allFiltersMat"], np.float32)
    masks = [(*np.nonzero(footprint), footprint[footprint > 0]) for footprint in footprints]
    return RaggedRois.from_masks(masks), (footprints.shape[1], footprints.shape[2])


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("git_dir", type=Path, help="a CellReg git directory or checkout")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: $CINDRA_DASK_DATA/cellreg or ~/.cache/cindra-dask/cellreg)")
    options = parser.parse_args(arguments)
    for path in fetch(options.git_dir, options.cache or cache_directory()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
