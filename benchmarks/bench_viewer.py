"""Issue 23: the viewer never loads a whole movie. Peak RSS of a process that builds the viewer's
document on a store and uses it (selects ROIs, scrubs the slider across the whole movie, averages a
window, opens the other plane's tab data) for a short and a long recording of the same frame size;
the long one's peak should stay below 2× the short one's.

Each store is written directly with `RecordingStore` (no pipeline run): raw and registered movies
(int16, chunks of 100 frames), detection images, 20 disc ROIs with their traces, registration vectors.
Each measurement runs in a fresh process (`--child`) and reports ``VmHWM``.

    .venv/bin/python benchmarks/bench_viewer.py --frames 100 20000 --size 128
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK_FRAMES = 100
ROI_COUNT = 20


def write_store(path: Path, *, frames: int, size: int) -> None:
    """A single-plane store of ``frames`` × ``size``² written chunk by chunk (bounded memory)."""
    from cindra_dask.rois import RaggedRois
    from cindra_dask.store import RecordingStore

    rng = np.random.default_rng(0)
    store = RecordingStore(path)
    store.update_attributes(acquisition={"frame_rate": 30.0, "plane_number": 1, "channel_number": 1}, frames_per_plane=frames)
    reference = (200 + 50 * rng.random((size, size))).astype(np.float32)
    for kind in ("raw", "registered"):
        array = store.create_array(f"plane_0/{kind}/channel_0", shape=(frames, size, size), dtype=np.int16, chunks=(CHUNK_FRAMES, size, size))
        for start in range(0, frames, CHUNK_FRAMES):
            count = min(CHUNK_FRAMES, frames - start)
            array[start : start + count] = (reference[None] + 5 * rng.standard_normal((count, size, size))).astype(np.int16)
    for name in ("mean_image", "enhanced_mean_image", "maximum_projection", "correlation_map"):
        store.write_array(f"plane_0/detection/{name}", reference)
    centres = rng.integers(8, size - 8, (ROI_COUNT, 2))
    yy, xx = np.mgrid[-3:4, -3:4]
    inside = yy**2 + xx**2 <= 9
    rois = RaggedRois.from_masks([(yy[inside] + y, xx[inside] + x, np.ones(int(inside.sum()), np.float32)) for y, x in centres])
    store.write_rois("plane_0/rois", rois, centroids=centres.astype(np.int32), skewness=rng.random(ROI_COUNT).astype(np.float32))
    for name in ("cell_fluorescence", "neuropil_fluorescence", "delta_f_over_f", "spikes"):
        array = store.create_array(f"plane_0/extraction/{name}", shape=(ROI_COUNT, frames), dtype=np.float32, chunks=(4, frames))
        array[...] = rng.random((ROI_COUNT, frames)).astype(np.float32)
    store.write_array("plane_0/extraction/cell_classification", np.column_stack([np.ones(ROI_COUNT), rng.random(ROI_COUNT)]).astype(np.float32))
    store.write_array("plane_0/registration/rigid_offsets", rng.standard_normal((frames, 2)).astype(np.float32))
    store.write_array("plane_0/registration/rigid_correlations", rng.random(frames).astype(np.float32))
    store.write_array("plane_0/registration/bad_frames", np.zeros(frames, bool))


def child(store_path: Path) -> dict[str, float]:
    """Use the viewer on the store; its peak RSS (MiB) and the time it took (s)."""
    from bokeh.document import Document

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from peak_memory import lifetime_peak_rss_mib

    from cindra_dask.store import RecordingStore
    from cindra_dask.view.app import build_viewer

    started = time.perf_counter()
    viewer = build_viewer(Document(), store=RecordingStore(store_path))
    for selection in ([0], [1, 2, 3], list(range(ROI_COUNT))):
        viewer.roi_source.selected.indices = selection
    frame_count = int(viewer.frame_slider.end) + 1
    for t in np.linspace(0, frame_count - 1, 40).astype(int):
        viewer.frame_slider.value = int(t)
    viewer.window_slider.value = int(viewer.window_slider.end)
    viewer.frame_slider.value = 0
    return {"peak_rss_mib": round(lifetime_peak_rss_mib(), 1), "seconds": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 20000])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(child(arguments.child)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for frames in arguments.frames:
            path = Path(folder) / f"viewer_{frames}.zarr"
            write_store(path, frames=frames, size=arguments.size)
            result = json.loads(subprocess.run([sys.executable, __file__, "--child", str(path)], check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            rows.append({"frames": frames, "size": arguments.size, **result})
            print(json.dumps(rows[-1]))
    base = rows[0]["peak_rss_mib"]
    lines = ["| frames | frame (px) | peak RSS (MiB) | × the first | viewer use (s) |", "|---|---|---|---|---|"]
    lines += [f"| {row['frames']} | {row['size']}² | {row['peak_rss_mib']} | {row['peak_rss_mib'] / base:.2f} | {row['seconds']} |" for row in rows]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "viewer.md").write_text("# Viewer memory (issue 23)\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
