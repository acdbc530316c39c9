"""A simulated recording on disk: TIFF files, ``cindra_parameters.json`` and ``ground_truth.npz``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cindra_dask.errors import OutputError
from cindra_dask.simulate.parameters import GroundTruth, SimulationParameters
from cindra_dask.simulate.render import check_truth, volume_chunks
from cindra_dask.simulate.truth import generate_ground_truth

ACQUISITION_FILE_NAME = "cindra_parameters.json"
GROUND_TRUTH_FILE_NAME = "ground_truth.npz"


def file_page_counts(total_pages: int, *, file_count: int, cycle_pages: int) -> np.ndarray:
    """Pages per TIFF file: unequal (growing ~25 % per file) and, when ``cycle_pages`` > 1, no
    file boundary falls on a whole plane×channel cycle.

    Returns
    -------
    (k,) int64 page counts summing to ``total_pages`` (k = ``file_count``, fewer only when there
    are too few pages).
    """
    weights = 1.0 + 0.25 * np.arange(file_count)
    boundaries = np.floor(total_pages * np.cumsum(weights)[:-1] / weights.sum()).astype(np.int64)
    if cycle_pages > 1:
        boundaries += (boundaries % cycle_pages == 0) & (boundaries + 1 < total_pages)
    boundaries = np.unique(boundaries[(boundaries > 0) & (boundaries < total_pages)])
    return np.diff(np.concatenate([[0], boundaries, [total_pages]])).astype(np.int64)


def acquisition_parameters(parameters: SimulationParameters) -> dict[str, object]:
    """The ``cindra_parameters.json`` content of a simulated recording."""
    return {
        "frame_rate": parameters.frame_rate_hz,
        "plane_number": parameters.plane_count,
        "channel_number": parameters.channel_count,
        "roi_number": 1,
        "roi_lines": [],
        "roi_x_coordinates": [],
        "roi_y_coordinates": [],
    }


SIMULATED_TIFF_PATTERN = "recording_[0-9][0-9][0-9].tif"
"""Names of the TIFF files `write_recording` writes."""


def prepare_output_directory(directory: Path | str, *, overwrite: bool) -> Path:
    """Make ``directory`` ready for `write_recording`: new or empty, or (``overwrite``) holding a previous simulation.

    A folder that holds anything is refused unless ``overwrite``; then the previous simulation's
    files (``recording_NNN.tif``, ``cindra_parameters.json``, ``ground_truth.npz``) are removed first,
    so no file of it survives next to the new ones (a new recording with fewer files or another frame
    size would otherwise be ingested together with the old files). Other TIFF files are never
    removed: a folder holding any is refused. Other files are left alone. Returns ``directory``.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory}: is a file, not a folder; give a folder to write the simulated recording into")
    entries = sorted(directory.iterdir()) if directory.is_dir() else []
    if not entries:
        return directory
    names = ", ".join(entry.name for entry in entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    if not overwrite:
        raise OutputError(f"{directory}: not empty ({names}); simulate into a new or empty folder, or pass --overwrite to replace the simulated recording there")
    ours = {*directory.glob(SIMULATED_TIFF_PATTERN), directory / ACQUISITION_FILE_NAME, directory / GROUND_TRUTH_FILE_NAME}
    foreign = [entry.name for entry in entries if entry.suffix.lower() in (".tif", ".tiff") and entry not in ours]
    if foreign:
        raise OutputError(f"{directory}: holds TIFF files the simulator did not write ({', '.join(foreign[:3])}{' …' if len(foreign) > 3 else ''}), which would be read with the simulated ones; simulate into another folder")
    for path in ours:
        path.unlink(missing_ok=True)
    return directory


def write_recording(parameters: SimulationParameters, directory: Path | str, *, truth: GroundTruth | None = None) -> Path:
    """Render and write a recording chunk by chunk (memory does not grow with frame_count).

    Writes ``recording_000.tif``, … (pages p0c0, p0c1, p1c0, … per volume, the cycle continuing
    across files; page counts from ``file_page_counts``), ``cindra_parameters.json`` and
    ``ground_truth.npz``. Returns ``directory``.
    """
    import tifffile

    directory = Path(directory)
    truth = generate_ground_truth(parameters) if truth is None else truth
    check_truth(parameters, truth)
    directory.mkdir(parents=True, exist_ok=True)
    page_bytes = parameters.frame_height * parameters.frame_width * np.dtype(parameters.dtype).itemsize
    cycle = parameters.plane_count * parameters.channel_count
    counts = file_page_counts(parameters.frame_count * cycle, file_count=parameters.file_count, cycle_pages=cycle)
    file_index, written_in_file, writer = 0, 0, None
    try:
        for _, volumes in volume_chunks(parameters, truth):
            pages = volumes.reshape(-1, parameters.frame_height, parameters.frame_width)
            position = 0
            while position < len(pages):
                if writer is None:
                    path = directory / f"recording_{file_index:03d}.tif"
                    writer = tifffile.TiffWriter(path, bigtiff=bool(counts[file_index] * page_bytes > 2**31))
                take = min(len(pages) - position, int(counts[file_index]) - written_in_file)
                writer.write(pages[position : position + take], contiguous=True, photometric="minisblack", metadata=None)
                position += take
                written_in_file += take
                if written_in_file == counts[file_index]:
                    writer.close()
                    writer, file_index, written_in_file = None, file_index + 1, 0
    finally:
        if writer is not None:
            writer.close()
    (directory / ACQUISITION_FILE_NAME).write_text(json.dumps(acquisition_parameters(parameters), indent=2))
    save_ground_truth(truth, directory / GROUND_TRUTH_FILE_NAME)
    return directory


_SCALAR_TYPES = {"parameters_json": str, "bidirectional_offset_px": int, "tau_s": float, "frame_rate_hz": float, "scene_padding_px": int}


def save_ground_truth(truth: GroundTruth, path: Path | str) -> Path:
    """Write the truth to ``path`` (``np.savez_compressed``, no pickles); keys = the field names."""
    path = Path(path)
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **{name: np.asarray(value) for name, value in truth._asdict().items()})
    return path


def load_ground_truth(path: Path | str) -> GroundTruth:
    """Read a truth written by ``save_ground_truth``."""
    with np.load(Path(path), allow_pickle=False) as archive:
        values = {name: (_SCALAR_TYPES[name](archive[name][()]) if name in _SCALAR_TYPES else archive[name]) for name in GroundTruth._fields}
    return GroundTruth(**values)
