"""Real movies without labels (issue 24, item 1): does the pipeline run on them, and are its ROIs plausible?

For each movie of ``fetch_real_movies.MOVIES`` found in the cache (fetch them first), the whole
single-recording pipeline runs three times, in-process on one threaded Dask worker:

(a) ``defaults``: only ``file_io`` set (the data folder, and ``hdf5_dataset`` where the movie's
    dataset is not ``data``), so ``main.tau`` is cindra's 0.4 s;
(b) ``tau``: ``main.tau`` = the movie's indicator decay (`RealMovie.tau_s`: 0.7 s, suite2p's value
    for GCaMP6f, for the Allen crops; 1.0 s for the sima clip, whose indicator is not stated);
(c) ``tau + anatomical``: (b) with ``roi_detection.anatomical: true`` (off by default and, its
    description says, unchecked on real movies);
(d), (e) suite2p 1.1.0 with tau 0.4 s and with the movie's tau, when its venv exists
    (``benchmarks/setup_suite2p.sh``, or ``--suite2p-python``): ``benchmarks/run_suite2p.py`` on
    the movie written as one TIFF, rigid registration only (its 128² nonrigid blocks do not fit
    these frames), defaults otherwise; its ``stat.npy`` / ``iscell.npy`` measured like ours
    (sizes: ``npix``). suite2p raises when it finds no ROI; that counts as 0 ROIs.

Measured per run: the warnings and refusals preflight gives (one line each), the ROI count, ROI
sizes in pixels (median, 5th / 95th percentile, smallest), how many ROIs are below a quarter of
the expected soma area π·(d/2)² (d: `RealMovie.cell_diameter_px`, read off the mean images),
the classified cells (``extraction/cell_classification[:, 0]``), the detection's own diameter and
temporal bins, and the ROIs' sources (activity / anatomy / both). One PNG per movie
(``results/real_movies/<movie>.png``) shows the mean image of each run that wrote one, left to
right in the order above (the report's caption names them), with the ROI outlines: green a
classified cell, red not a cell; anatomy-only ROIs in cyan (cell) or magenta (not a cell).

    .venv/bin/python benchmarks/accuracy/fetch_real_movies.py --allen <git dir> --sima <git dir>   # once
    .venv/bin/python benchmarks/accuracy/bench_real_movies.py [--movies NAME ...] [--cache DIR]

Writes ``benchmarks/accuracy/results/real_movies.md`` and the PNGs; the stores go to
``benchmarks/results/scratch/real_movies/`` (outside git).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import struct
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fetch_real_movies  # noqa: E402  (the sibling module; it imports data_cache)
from fetch_real_movies import MOVIES, RealMovie  # noqa: E402

ROOT = HERE.parents[1]
RESULT_PATH = HERE / "results" / "real_movies.md"
PICTURES = HERE / "results" / "real_movies"
SCRATCH = ROOT / "benchmarks" / "results" / "scratch" / "real_movies"
SUITE2P_PYTHON = ROOT / "benchmarks" / ".suite2p-venv" / "bin" / "python"
RUN_SUITE2P = ROOT / "benchmarks" / "run_suite2p.py"
DEFAULT_TAU_S = 0.4  # cindra's main.tau default (cindra_dask.config)
PANEL_GAP_PX = 4
COLOURS = {(0, True): (40, 220, 40), (0, False): (235, 40, 40), (1, True): (40, 220, 230), (1, False): (230, 40, 220)}
"""Outline colour by (anatomy-only source, classified as a cell)."""


class Run(NamedTuple):
    """One configuration of the bench: its key, its label, the tool, the sections it sets beyond ``file_io`` (cindra-dask) or the tau (suite2p)."""

    key: str
    label: str
    tool: str
    sections: dict[str, Any]
    tau_s: float


def runs_for(movie: RealMovie, *, suite2p: bool = True) -> tuple[Run, ...]:
    """(a) defaults, (b) the movie's tau, (c) its tau with anatomical detection; (d), (e) suite2p with tau 0.4 s and the movie's tau."""
    runs = (
        Run("defaults", f"defaults (tau {DEFAULT_TAU_S} s)", "cindra", {}, DEFAULT_TAU_S),
        Run("tau", f"main.tau {movie.tau_s} s", "cindra", {"main": {"tau": movie.tau_s}}, movie.tau_s),
        Run("tau_anatomical", f"main.tau {movie.tau_s} s + anatomical", "cindra", {"main": {"tau": movie.tau_s}, "roi_detection": {"anatomical": True}}, movie.tau_s),
    )
    if suite2p:
        runs += (
            Run("suite2p_default_tau", f"suite2p 1.1.0, tau {DEFAULT_TAU_S} s", "suite2p", {}, DEFAULT_TAU_S),
            Run("suite2p_tau", f"suite2p 1.1.0, tau {movie.tau_s} s", "suite2p", {}, movie.tau_s),
        )
    return runs


def configuration_payload(movie: RealMovie, run: Run, *, data: Path, output: Path) -> dict[str, Any]:
    """The configuration of one run, as a user would write it."""
    file_io: dict[str, Any] = {"data_path": str(data), "output_path": str(output)}
    if movie.hdf5_dataset and movie.hdf5_dataset != "data":
        file_io["hdf5_dataset"] = movie.hdf5_dataset
    return {"runtime": {"display_progress_bars": False}, "file_io": file_io, **{name: dict(values) for name, values in run.sections.items()}}


def expected_area_px(movie: RealMovie) -> float:
    """π·(d/2)² for the movie's expected soma diameter d."""
    return math.pi * (movie.cell_diameter_px / 2) ** 2


def size_record(sizes: np.ndarray, cells: np.ndarray, *, expected_area: float) -> dict[str, Any]:
    """Count, classified cells and size statistics of a set of ROIs (``sizes``: pixels per ROI)."""
    count = len(sizes)
    return {
        "roi_count": int(count),
        "cells": int(np.count_nonzero(cells)),
        "below_quarter_area": int((sizes < expected_area / 4).sum()),
        "single_pixel": int((sizes <= 1).sum()),
        "size_median_px": float(np.median(sizes)) if count else math.nan,
        "size_p5_px": float(np.percentile(sizes, 5)) if count else math.nan,
        "size_p95_px": float(np.percentile(sizes, 95)) if count else math.nan,
        "size_min_px": int(sizes.min()) if count else 0,
    }


def measure_store(store_path: Path, *, expected_area: float) -> dict[str, Any]:
    """ROI count, sizes, cells and detection facts of plane 0 of a finished store."""
    from cindra_dask.store import RecordingStore

    store = RecordingStore(store_path)
    rois = store.read_rois("plane_0/rois")
    sizes = np.diff(rois.pixel_offsets).astype(np.int64)
    classification = store.read("plane_0/extraction/cell_classification") if rois.count else np.zeros((0, 2), np.float32)
    source = store.read("plane_0/rois/detection_source") if "plane_0/rois/detection_source" in store else np.zeros(rois.count, np.int8)
    attributes = store.group_attributes("plane_0/rois")
    record: dict[str, Any] = {
        **size_record(sizes, classification[:, 0] > 0.5, expected_area=expected_area),
        "from_activity": int(np.isin(source, (0, 2)).sum()),
        "from_anatomy_only": int((source == 1).sum()),
        "detection_diameter_px": attributes.get("diameter_px"),
        "bin_size_frames": attributes.get("bin_size"),
        "binned_frames": attributes.get("binned_frame_count"),
    }
    return record


def run_movie(movie: RealMovie, run: Run, *, data: Path, client: Any) -> dict[str, Any]:
    """Validate and run one configuration; the record holds the measures or the refusal line."""
    from cindra_dask.config import configuration_from_mapping
    from cindra_dask.errors import CindraError
    from cindra_dask.pipeline import run_single_recording

    output = SCRATCH / movie.name / run.key
    configuration = configuration_from_mapping(configuration_payload(movie, run, data=data, output=output), source=f"{movie.name}/{run.key}")
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = run_single_recording(configuration, client=client, force=True)
        except CindraError as error:
            return {"refused": "; ".join(error.problems), "warnings": [str(item.message) for item in caught], "wall_s": time.perf_counter() - started}
    record = measure_store(report.store_path, expected_area=expected_area_px(movie))
    record.update(warnings=sorted({str(item.message).split(": ", 1)[-1] for item in caught if issubclass(item.category, UserWarning)}), wall_s=time.perf_counter() - started, store_path=str(report.store_path))
    return record


def suite2p_tiff(movie: RealMovie, data: Path) -> Path:
    """A folder holding the movie as one TIFF (suite2p's input here; HDF5 movies are converted once)."""
    import tifffile

    folder = SCRATCH / movie.name / "suite2p_input"
    target = folder / f"{movie.name}.tif"
    if not target.exists():
        source = fetch_real_movies.movie_file(movie, data.parent)
        if movie.hdf5_dataset:
            import h5py

            with h5py.File(source, "r") as handle:
                frames = handle[movie.hdf5_dataset][()]
            folder.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(target, frames, photometric="minisblack")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    return folder


def run_suite2p_movie(movie: RealMovie, run: Run, *, data: Path, python: Path) -> dict[str, Any]:
    """suite2p 1.1.0 on the movie (rigid registration, defaults otherwise); its ROIs measured like ours."""
    output = SCRATCH / movie.name / run.key
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    started = time.perf_counter()
    command = [str(python), str(RUN_SUITE2P), str(suite2p_tiff(movie, data)), str(output), "--fs", str(movie.frame_rate_hz), "--tau", str(run.tau_s), "--stage", "full", "--threads", "2", "--nonrigid", "0"]
    completed = subprocess.run(command, cwd=RUN_SUITE2P.parent, env={"PYTHONPATH": str(RUN_SUITE2P.parent), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    (output / "suite2p.log").write_text(completed.stdout + completed.stderr)
    plane = output / "suite2p" / "plane0"
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
        if "no ROIs were found" in last:
            return {**size_record(np.zeros(0, np.int64), np.zeros(0, bool), expected_area=expected_area_px(movie)), "warnings": [f"raised {last}"], "wall_s": wall_s}
        return {"refused": f"suite2p failed: {last}", "warnings": [], "wall_s": wall_s}
    stat = np.load(plane / "stat.npy", allow_pickle=True)
    iscell = np.load(plane / "iscell.npy")
    sizes = np.array([int(entry["npix"]) for entry in stat], np.int64)
    record = size_record(sizes, iscell[:, 0] > 0.5, expected_area=expected_area_px(movie))
    record.update(warnings=[], wall_s=wall_s, suite2p_plane=str(plane), from_activity=len(sizes), from_anatomy_only=0)
    ops = np.load(plane / "ops.npy", allow_pickle=True).item()
    record.update(detection_diameter_px=int(np.ravel(ops.get("diameter", [0]))[0]), spatial_scale_px=ops.get("spatscale_pix"))
    return record


# -- pictures ------------------------------------------------------------------------------------------------


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image as an 8-bit RGB PNG (zlib only; no imaging dependency)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    height, width, _ = rgb.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), np.ascontiguousarray(rgb, np.uint8).reshape(height, width * 3)], axis=1)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)) + chunk(b"IEND", b""))


def outline_panel(mean_image: np.ndarray, rois: Any, *, cells: np.ndarray, anatomy_only: np.ndarray, scale: int) -> np.ndarray:
    """(H·scale, W·scale, 3) uint8: the mean image (1st–99.5th percentile stretch of its non-zero pixels: registration
    leaves a zero border) with each ROI's outline in its colour."""
    from scipy.ndimage import binary_erosion

    inside = mean_image[mean_image != 0]
    low, high = np.percentile(inside if inside.size else mean_image, [1, 99.5])
    grey = np.clip((mean_image - low) / max(high - low, 1e-6), 0, 1)
    grey = np.kron(grey, np.ones((scale, scale)))
    panel = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    for index in range(rois.count):
        start, stop = rois.pixel_offsets[index], rois.pixel_offsets[index + 1]
        mask = np.zeros(mean_image.shape, bool)
        mask[rois.ypix[start:stop], rois.xpix[start:stop]] = True
        big = np.kron(mask, np.ones((scale, scale), bool))
        edge = big & ~binary_erosion(big)
        panel[edge] = COLOURS[(int(anatomy_only[index]), bool(cells[index]))]
    return panel


def _suite2p_panel_inputs(plane: Path) -> tuple[np.ndarray, Any, np.ndarray, np.ndarray]:
    """suite2p's mean image, ROIs (ragged, ``lam`` weights), cell flags and (no) anatomy flags."""
    from cindra_dask.rois import RaggedRois

    ops = np.load(plane / "ops.npy", allow_pickle=True).item()
    stat = np.load(plane / "stat.npy", allow_pickle=True)
    iscell = np.load(plane / "iscell.npy")
    rois = RaggedRois.from_masks([(entry["ypix"], entry["xpix"], entry["lam"]) for entry in stat])
    return np.asarray(ops["meanImg"], np.float32), rois, iscell[:, 0] > 0.5, np.zeros(len(stat), bool)


def movie_picture(movie: RealMovie, records: dict[str, dict[str, Any]], path: Path, runs: Sequence[Run]) -> list[str]:
    """One PNG of the movie's runs side by side; returns the labels of the panels drawn (none: no PNG)."""
    from cindra_dask.store import RecordingStore

    panels, labels = [], []
    for run in runs:
        record = records.get(run.key, {})
        if "suite2p_plane" in record:
            mean_image, rois, cells, anatomy_only = _suite2p_panel_inputs(Path(record["suite2p_plane"]))
        elif "store_path" in record:
            store = RecordingStore(Path(record["store_path"]))
            if "plane_0/detection/mean_image" not in store:
                continue
            mean_image = store.read("plane_0/detection/mean_image")
            rois = store.read_rois("plane_0/rois")
            cells = store.read("plane_0/extraction/cell_classification")[:, 0] > 0.5 if rois.count else np.zeros(0, bool)
            anatomy_only = (store.read("plane_0/rois/detection_source") == 1) if "plane_0/rois/detection_source" in store else np.zeros(rois.count, bool)
        else:
            continue
        scale = max(1, math.ceil(300 / max(mean_image.shape)))
        panels.append(outline_panel(mean_image, rois, cells=cells, anatomy_only=anatomy_only, scale=scale))
        labels.append(run.label)
    if not panels:
        return []
    gap = np.full((panels[0].shape[0], PANEL_GAP_PX, 3), 255, np.uint8)
    picture = panels[0]
    for panel in panels[1:]:
        picture = np.concatenate([picture, gap, panel], axis=1)
    write_png(path, picture)
    return labels


# -- report --------------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def commit() -> str:
    """HEAD, marked ``-modified`` when the measured code (the package, this bench) differs from it (the results themselves may)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip() or "unknown"
    changed = subprocess.run(["git", "status", "--porcelain", "--", "cindra_dask", "benchmarks/accuracy/bench_real_movies.py", "benchmarks/accuracy/fetch_real_movies.py"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return f"{head}-modified" if changed else head


def report(results: dict[str, dict[str, dict[str, Any]]], movies: Sequence[RealMovie], pictures: dict[str, list[str]], missing: Sequence[str], *, suite2p: bool) -> str:
    lines = [
        "# Real movies without labels",
        "",
        f"Generated by `benchmarks/accuracy/bench_real_movies.py` at commit {commit()} (its docstring defines every column). The movies",
        "have no labels: the figures say whether the pipeline runs and whether its ROIs are plausible (counts, sizes,",
        "no specks), not how accurate it is. Expected soma area: π·(d/2)² with d read off the mean image (`fetch_real_movies.MOVIES`).",
        "" if suite2p else "suite2p was not run (no venv: `benchmarks/setup_suite2p.sh`).",
        "",
        "| movie | run | preflight / notes | ROIs | cells | size median px | p5 / p95 px | smallest px | below ¼ expected area | activity / anatomy-only | detection d px, bins (suite2p: d) | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for movie in movies:
        for run in runs_for(movie, suite2p=suite2p):
            record = results.get(movie.name, {}).get(run.key)
            if record is None:
                continue
            notes = "; ".join(record.get("warnings") or []) or "OK"
            if "refused" in record:
                lines.append(f"| {movie.name} | {run.label} | refused: {record['refused']} | — | — | — | — | — | — | — | — | {record['wall_s']:.1f} |")
                continue
            if run.tool == "cindra":
                bins = f"{record.get('detection_diameter_px')}, {record.get('binned_frames')} × {record.get('bin_size_frames')} frames"
            else:
                bins = f"{record.get('detection_diameter_px', '—')} (spatial scale {record.get('spatial_scale_px', '—')} px)"
            lines.append(
                f"| {movie.name} | {run.label} | {notes} | {record['roi_count']} | {record['cells']} | {fmt(record['size_median_px'])} | "
                f"{fmt(record['size_p5_px'])} / {fmt(record['size_p95_px'])} | {record['size_min_px'] if record['roi_count'] else '—'} | "
                f"{record['below_quarter_area']} (< {expected_area_px(movie) / 4:.0f} px) | {record.get('from_activity', 0)} / {record.get('from_anatomy_only', 0)} | "
                f"{bins} | {record['wall_s']:.1f} |"
            )
    lines += ["", "## Movies", ""]
    for movie in movies:
        lines += [
            f"### {movie.name}",
            "",
            f"{movie.description}. Source: `{movie.path}` ({movie.source}). Frame rate {movie.frame_rate_hz} Hz ({movie.frame_rate_note}). "
            f"Indicator: {movie.indicator}; bench tau {movie.tau_s} s. Expected soma diameter {movie.cell_diameter_px:.0f} px.",
            "",
        ]
        labels = pictures.get(movie.name) or []
        if labels:
            lines += [
                f"![{movie.name}: ROI outlines on the mean image](real_movies/{movie.name}.png)",
                "",
                f"Left to right: {'; '.join(labels)}. Green: classified cell; red: not a cell; cyan / magenta: anatomy-only ROI, cell / not a cell.",
                "",
            ]
    if missing:
        lines += [f"Not in the cache (run `fetch_real_movies.py`): {', '.join(missing)}.", ""]
    return "\n".join(lines)


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", nargs="*", default=None, help="movie names (default: every movie of fetch_real_movies.MOVIES in the cache)")
    parser.add_argument("--cache", type=Path, default=None, help="the fetch script's cache folder")
    parser.add_argument("--suite2p-python", type=Path, default=SUITE2P_PYTHON, help="python of a suite2p 1.1.0 venv (default: benchmarks/.suite2p-venv; absent: suite2p is not run)")
    options = parser.parse_args(arguments)
    from distributed import Client
    from threadpoolctl import threadpool_limits

    cache = options.cache or fetch_real_movies.cache_directory()
    suite2p = options.suite2p_python.is_file()
    selected = [movie for movie in MOVIES if options.movies is None or movie.name in options.movies]
    present = [movie for movie in selected if fetch_real_movies.movie_file(movie, cache).is_file()]
    missing = [movie.name for movie in selected if movie not in present]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    pictures: dict[str, list[str]] = {}
    with threadpool_limits(limits=1, user_api="blas"), Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as client:
        for movie in present:
            data = fetch_real_movies.movie_folder(movie, cache)
            runs = runs_for(movie, suite2p=suite2p)
            results[movie.name] = {
                run.key: run_movie(movie, run, data=data, client=client) if run.tool == "cindra" else run_suite2p_movie(movie, run, data=data, python=options.suite2p_python) for run in runs
            }
            pictures[movie.name] = movie_picture(movie, results[movie.name], PICTURES / f"{movie.name}.png", runs)
            for key, record in results[movie.name].items():
                print(movie.name, key, {name: value for name, value in record.items() if name not in ("store_path", "suite2p_plane")})
    RESULT_PATH.write_text(report(results, present, pictures, missing, suite2p=suite2p) + "\n")
    (SCRATCH / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {RESULT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
