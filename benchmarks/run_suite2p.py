"""Run suite2p 1.1.0 on a folder of TIFFs; executed by benchmarks/.suite2p-venv/bin/python.

Writes ``<out>/suite2p_result.json`` (wall time, suite2p's own per-stage times, the wall-clock
time each stage started, peak RSS) and ``<out>/suite2p_offsets.npz`` (rigid ``yoff``/``xoff``,
nonrigid ``yoff1``/``xoff1``, block ranges ``yblock``/``xblock``).

Stage start times come from suite2p's own log lines (``----------- REGISTRATION`` …), caught by a
handler on the root logger; with ``plane_times`` they give each stage's window, so a sampler
outside this process can attribute memory to stages. Everything from the call of ``run_s2p`` to
the first stage is the TIFF → binary conversion.

Usage: run_suite2p.py DATA_DIR OUT_DIR --fs HZ --tau S [--stage registration|full] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from peak_memory import lifetime_peak_rss_mib

STAGE_MARKERS = {"REGISTRATION": "registration", "ROI DETECTION": "detection", "EXTRACTION": "extraction", "SPIKE DECONVOLUTION": "deconvolution", "ROI CLASSIFICATION": "classification"}


class _StageMarks(logging.Handler):
    """Records the wall-clock time of suite2p's ``----------- STAGE`` log lines."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.marks: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = str(record.getMessage())
        if message.startswith("-----------"):
            stage = STAGE_MARKERS.get(message.strip("- ").strip())
            if stage is not None and stage not in self.marks:
                self.marks[stage] = record.created


def _block_size_px(data: Path, default: list[int]) -> list[int]:
    """suite2p's nonrigid block side, halved per axis until two blocks fit (its default 128 px fails on 128² frames)."""
    import tifffile

    first = sorted(data.glob("*.tif*"))[0]
    frame_shape = tifffile.TiffFile(first).pages[0].shape[-2:]
    return [int(side) if side * 2 <= length else max(16, int(length) // 2) for side, length in zip(default, frame_shape)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--fs", type=float, required=True)
    parser.add_argument("--tau", type=float, required=True)
    parser.add_argument("--stage", choices=["registration", "full"], default="registration")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nonrigid", type=int, default=1)
    arguments = parser.parse_args()

    import torch

    torch.set_num_threads(arguments.threads)
    from suite2p_shim import suite2p

    settings = suite2p.default_settings()
    settings["torch_device"] = "cpu"
    settings["fs"] = arguments.fs
    settings["tau"] = arguments.tau
    settings["registration"]["nimg_init"] = 500  # cindra's reference_frame_count, as ours
    settings["registration"]["nonrigid"] = bool(arguments.nonrigid)
    settings["registration"]["block_size"] = _block_size_px(arguments.data, settings["registration"]["block_size"])
    settings["run"]["do_regmetrics"] = False
    settings["io"]["combined"] = False
    if arguments.stage == "registration":
        settings["run"]["do_detection"] = False
        settings["run"]["do_deconvolution"] = False
    database = suite2p.default_db()
    database["data_path"] = [str(arguments.data)]
    database["save_path0"] = str(arguments.out)
    database["nplanes"] = 1
    database["nchannels"] = 1
    marks = _StageMarks()
    logging.getLogger("suite2p").setLevel(logging.INFO)  # unset, suite2p's INFO lines would be dropped (root: WARNING)
    logging.getLogger().addHandler(marks)
    started_epoch = time.time()
    started = time.perf_counter()
    suite2p.run_s2p(db=database, settings=settings)
    wall_s = time.perf_counter() - started
    plane = arguments.out / "suite2p" / "plane0"
    ops = np.load(plane / "ops.npy", allow_pickle=True).item()
    offsets = {key: np.asarray(ops[key]) for key in ("yoff", "xoff", "yoff1", "xoff1", "yblock", "xblock") if key in ops}
    np.savez(arguments.out / "suite2p_offsets.npz", **offsets)
    times = {key: float(value) for key, value in (ops.get("plane_times") or {}).items() if np.isscalar(value)}
    result = {
        "wall_s": wall_s,
        "started": started_epoch,
        "finished": started_epoch + wall_s,
        "plane_times": times,
        "stage_started": marks.marks,
        "peak_rss_mib": lifetime_peak_rss_mib(),
        "torch_threads": torch.get_num_threads(),
    }
    (arguments.out / "suite2p_result.json").write_text(json.dumps(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
