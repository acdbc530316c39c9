"""Fetch small real two-photon movies without labels (Allen ophys_etl_pipelines, sima) for the robustness bench.

Movies, copied out of git snapshots of their public repositories and checked against their SHA-256:

- ``allen_movie_100``: ``tests/modules/suite2p_wrapper/resources/movie_100x100x100.h5`` of
  AllenInstitute/ophys_etl_pipelines @ 9d35cb9bfe11 (Allen Institute licence): 100 consecutive
  frames of a 100 × 100 px crop of an Allen Brain Observatory two-photon movie, dataset ``data``,
  int16; somata visible on the mean image.
- ``allen_792757260_frames``: ``tests/modules/suite2p_registration/resources/792757260_test_data.h5``
  of the same snapshot: 100 frames of a 100 × 100 px crop of experiment 792757238 (its stored suite2p
  ops name ``792686600_plane0.h5``), dataset ``input_frames``, int16. The frames are spread over the
  session, not consecutive (lag-1 correlation of 5 × 5 px pixel blocks 0.004, against 0.16 for
  ``allen_movie_100``): a real-noise null, where activity detection should find next to nothing.
- ``sima_example``: ``sima/tests/data/example.tif`` of losonczylab/sima @ 0b16818d9ba4 (GPL-2.0):
  20 × 128 × 256 uint16 frames; below the 50 frames per plane the pipeline needs.

Usage::

    python benchmarks/accuracy/fetch_real_movies.py --allen <ophys_etl_pipelines git dir> [--sima <sima git dir>] [--cache DIR]

Files are read with ``git show HEAD:<path>`` (a bare clone is enough). Each movie becomes a
recording folder ``<cache>/<name>/`` holding the file and a ``cindra_parameters.json`` (the
acquisition: 1 plane, 1 channel, the frame rate in `MOVIES`). The cache is
``$CINDRA_DASK_DATA/real_movies`` if that variable is set, else ``~/.cache/cindra-dask/real_movies``;
nothing is written inside this repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

import data_cache  # the sibling module of benchmarks/accuracy


class RealMovie(NamedTuple):
    """One real movie: where it comes from, its checksum and what is known of its acquisition.

    Attributes
    ----------
    name : recording folder (and store) name.
    source : ``allen`` or ``sima``: which repository (command-line option) it comes from.
    path : path inside that repository.
    sha256 : SHA-256 of the file at the snapshot named in the module docstring.
    hdf5_dataset : the movie's dataset in an HDF5 file ("" for a TIFF).
    frame_rate_hz : frame rate written to ``cindra_parameters.json``.
    frame_rate_note : where that rate comes from.
    indicator : the calcium indicator, as far as it is known.
    tau_s : the indicator decay the bench also runs with (``main.tau``).
    cell_diameter_px : expected soma diameter, px, for the size statistics.
    description : one line for the report.
    """

    name: str
    source: str
    path: str
    sha256: str
    hdf5_dataset: str
    frame_rate_hz: float
    frame_rate_note: str
    indicator: str
    tau_s: float
    cell_diameter_px: float
    description: str


MOVIES: tuple[RealMovie, ...] = (
    RealMovie(
        "allen_movie_100",
        "allen",
        "tests/modules/suite2p_wrapper/resources/movie_100x100x100.h5",
        "63962c1a06abc4066cc88003a3bf56fb539b91558f6eb3f9362f6ff28d713fd8",
        "data",
        31.0,
        "Allen Brain Observatory two-photon rate (ophys_etl's default input_fps 31.0); the repository's own CI passes 1.0 as a placeholder",
        "GCaMP6f (the Allen pipelines' Ai93/Ai148 lines; not stated for this crop)",
        0.7,
        12.0,
        "Allen ophys_etl_pipelines test crop: 100 consecutive frames, 100 × 100 px (≈ 0.78 µm/px), int16",
    ),
    RealMovie(
        "allen_792757260_frames",
        "allen",
        "tests/modules/suite2p_registration/resources/792757260_test_data.h5",
        "12a0ff35c6a0fd9e2459b162fb2f3173d1163a237fc12775b7fb252fea7a3740",
        "input_frames",
        31.0,
        "Allen two-photon rate; the frames are spread over the session, so no rate describes their spacing",
        "GCaMP6f (as above)",
        0.7,
        12.0,
        "Allen ophys_etl_pipelines registration test frames: 100 frames sampled across a session (not consecutive), 100 × 100 px, int16",
    ),
    RealMovie(
        "sima_example",
        "sima",
        "sima/tests/data/example.tif",
        "0d7f4c23ad888e09b8acb81b6f2a509f8b472415bd15f84623e493ea375b95a3",
        "",
        7.5,
        "not stated by sima; a typical galvo-scan rate, assumed",
        "unknown (Losonczy lab hippocampal imaging)",
        1.0,
        10.0,
        "sima example: 20 frames, 128 × 256 px, uint16",
    ),
)

SOURCES = ("allen", "sima")


def cache_directory() -> Path:
    """``$CINDRA_DASK_DATA/real_movies`` or ``~/.cache/cindra-dask/real_movies``."""
    return data_cache.cache_directory("real_movies")


def movie_folder(movie: RealMovie, cache: Path | None = None) -> Path:
    """The recording folder of ``movie`` in the cache (file + ``cindra_parameters.json``)."""
    return (cache or cache_directory()) / movie.name


def movie_file(movie: RealMovie, cache: Path | None = None) -> Path:
    """The cached movie file."""
    return movie_folder(movie, cache) / Path(movie.path).name


def fetch(repositories: dict[str, Path], cache: Path) -> list[Path]:
    """Copy the movies of the given sources (``{"allen": git dir, ...}``) into ``cache`` with their parameters files."""
    written = []
    for movie in MOVIES:
        repository = repositories.get(movie.source)
        if repository is None:
            continue
        data_cache.copy_checked(repository, ((movie.path, movie.sha256),), source_of=lambda name: name, target_of=lambda name, movie=movie: movie_file(movie, cache))
        parameters = movie_folder(movie, cache) / "cindra_parameters.json"
        parameters.write_text(json.dumps({"frame_rate": movie.frame_rate_hz, "plane_number": 1, "channel_number": 1}))
        written.append(movie_folder(movie, cache))
    return written


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--allen", type=Path, default=None, help="an AllenInstitute/ophys_etl_pipelines git directory or checkout")
    parser.add_argument("--sima", type=Path, default=None, help="a losonczylab/sima git directory or checkout")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: $CINDRA_DASK_DATA/real_movies or ~/.cache/cindra-dask/real_movies)")
    options = parser.parse_args(arguments)
    repositories = {source: getattr(options, source) for source in SOURCES if getattr(options, source) is not None}
    if not repositories:
        parser.error("give --allen and/or --sima")
    for folder in fetch(repositories, options.cache or cache_directory()):
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
