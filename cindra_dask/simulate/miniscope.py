"""One-photon (miniscope) recordings: the preset of a low-resolution microendoscopic field and its
files as a UCLA Miniscope writes them (8-bit AVIs with frame timestamps).

The preset (`one_photon_parameters`) turns on the simulator's one-photon mode (out-of-focus glow
``one_photon_background_ratio`` × the cells' resting brightness, half of it moving with the
tissue, its modes fluctuating slowly; footprints blurred by a quarter of the cell diameter;
vignetting) at a miniscope's scale: cells about 10 px across, 20 Hz, 8-bit frames. With the
defaults the glow is about 20× a spike's dF.

Layouts (`write_miniscope_recording`), ``frames_per_file`` frames per AVI (the DAQ software's 1000):

- ``v4`` (Miniscope V4 DAQ software): ``0.avi``, ``1.avi``, … and ``timeStamps.csv`` with the
  header ``Frame Number,Time Stamp (ms),Buffer Index``, one row per frame, and ``metaData.json``.
- ``v3`` (Miniscope V3 DAQ software): ``msCam1.avi``, ``msCam2.avi``, … and ``timestamp.dat``, tab
  separated, header ``camNum frameNum sysClock buffer``, one row per frame (sysClock in ms).

Frames are encoded with FFV1 in ``gray`` (lossless, as the V4 software's default); the loss is the
8-bit quantisation of ``photons_per_gray_level``. ``ground_truth.npz`` is written as by
`cindra_dask.simulate.write_recording` (photons, not gray levels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cindra_dask.simulate.files import GROUND_TRUTH_FILE_NAME, save_ground_truth
from cindra_dask.simulate.parameters import GroundTruth, SimulationParameters
from cindra_dask.simulate.render import check_truth, volume_chunks
from cindra_dask.simulate.truth import generate_ground_truth

MINISCOPE_V4_TIMESTAMPS = "timeStamps.csv"
MINISCOPE_V3_TIMESTAMPS = "timestamp.dat"
MINISCOPE_V4_METADATA = "metaData.json"
MINISCOPE_CODEC = "ffv1"

ONE_PHOTON_PRESET: dict[str, Any] = {
    "frame_height": 128,
    "frame_width": 128,
    "frame_rate_hz": 20.0,
    "cell_count": 40,
    "non_cell_count": 0,
    "cell_diameter_px": 10.0,
    "baseline_photons": 600.0,
    "one_photon": True,
    "one_photon_background_ratio": 8.0,
    "vessel_count": 1,
    "rigid_shift_px": 2.0,
    "nonrigid_shift_px": 0.0,
    "read_noise": 20.0,
    "file_count": 1,
    "dtype": "uint8",
    "photons_per_gray_level": 60.0,
}
"""`SimulationParameters` of a low-resolution one-photon field (see the module docstring)."""


def one_photon_parameters(**changes: Any) -> SimulationParameters:
    """`SimulationParameters` of `ONE_PHOTON_PRESET` with ``changes``."""
    return SimulationParameters(**{**ONE_PHOTON_PRESET, **changes})


def miniscope_file_name(index: int, *, version: Literal["v3", "v4"]) -> str:
    """Name of the ``index``-th (from 0) AVI of a Miniscope recording: ``msCam{index + 1}.avi`` (V3) or ``{index}.avi`` (V4)."""
    return f"msCam{index + 1}.avi" if version == "v3" else f"{index}.avi"


def write_timestamps(directory: Path, *, frame_count: int, frame_rate_hz: float, version: Literal["v3", "v4"]) -> Path:
    """Write the frame timestamps of a Miniscope recording (ms from the first frame); returns the file."""
    times_ms = np.rint(np.arange(frame_count) * 1000.0 / frame_rate_hz).astype(np.int64)
    if version == "v4":
        path = directory / MINISCOPE_V4_TIMESTAMPS
        rows = [f"{frame},{time},{frame % 7}" for frame, time in enumerate(times_ms)]
        path.write_text("Frame Number,Time Stamp (ms),Buffer Index\n" + "\n".join(rows) + "\n")
    else:
        path = directory / MINISCOPE_V3_TIMESTAMPS
        rows = [f"0\t{frame + 1}\t{time}\t{frame % 7}" for frame, time in enumerate(times_ms)]
        path.write_text("camNum\tframeNum\tsysClock\tbuffer\n" + "\n".join(rows) + "\n")
    return path


def write_miniscope_recording(
    parameters: SimulationParameters,
    directory: Path | str,
    *,
    version: Literal["v3", "v4"] = "v4",
    frames_per_file: int = 1000,
    truth: GroundTruth | None = None,
) -> Path:
    """Render a one-plane, one-channel uint8 recording and write it as a Miniscope folder (see the module docstring); returns ``directory``."""
    import av

    if parameters.dtype != "uint8" or parameters.plane_count != 1 or parameters.channel_count != 1:
        raise ValueError("a Miniscope recording has one plane, one channel and uint8 frames (dtype='uint8')")
    directory = Path(directory)
    truth = generate_ground_truth(parameters) if truth is None else truth
    check_truth(parameters, truth)
    directory.mkdir(parents=True, exist_ok=True)
    container, stream, written = None, None, 0
    try:
        for _, volumes in volume_chunks(parameters, truth):
            for frame in volumes[:, 0, 0]:
                if written % frames_per_file == 0:
                    if container is not None:
                        container.mux(stream.encode())
                        container.close()
                    container = av.open(str(directory / miniscope_file_name(written // frames_per_file, version=version)), "w")
                    stream = container.add_stream(MINISCOPE_CODEC, rate=max(1, int(round(parameters.frame_rate_hz))))
                    stream.width, stream.height, stream.pix_fmt = parameters.frame_width, parameters.frame_height, "gray"
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="gray")))
                written += 1
    finally:
        if container is not None:
            container.mux(stream.encode())
            container.close()
    write_timestamps(directory, frame_count=parameters.frame_count, frame_rate_hz=parameters.frame_rate_hz, version=version)
    if version == "v4":
        metadata = {"deviceType": "Miniscope_V4_BNO", "frameRate": f"{parameters.frame_rate_hz:g}FPS", "framesPerFile": frames_per_file, "ROI": {"height": parameters.frame_height, "width": parameters.frame_width}}
        (directory / MINISCOPE_V4_METADATA).write_text(json.dumps(metadata, indent=2))
    save_ground_truth(truth, directory / GROUND_TRUTH_FILE_NAME)
    return directory
