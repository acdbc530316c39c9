"""Bruker / PrairieView folder discovery: what `validate` and `run` spend before ingest on a T-series
folder of single-page TIFFs (one per frame and channel), as PrairieView writes it.

Times, on the same folder and in one process, each best of ``--repeats``: finding the XML among the
folder's files, parsing it, checking the files it names, and inspecting every TIFF (page count, IFD
offsets, shape, dtype, truncation) two ways: `cindra_dask.io.tiff.inspect_tiff` (a single-page
uncompressed file is read from its header and IFD) and `cindra_dask.io.tiff.inspect_with_tifffile`
(every file opened with tifffile, as every file was before); then the whole `inspect_inputs`, both ways.

Usage: python benchmarks/bench_bruker_discovery.py [--frames 5000] [--size 64] [--repeats 3] [--data /tmp/cindra-bench-bruker] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Callable

import numpy as np

from common import write_table

STEM = "TSeries-12012025-1200-001"


def write_folder(directory: Path, *, frames: int, size: int) -> Path:
    """A PrairieView T-series folder (1 plane, 1 channel): the XML and one single-page OME-TIFF per frame; reused when complete."""
    import tifffile

    xml = directory / f"{STEM}.xml"
    if xml.is_file() and len(list(directory.glob("*.ome.tif"))) == frames:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    root = ElementTree.Element("PVScan", version="5.6.64.400")
    shard = ElementTree.SubElement(root, "PVStateShard")
    ElementTree.SubElement(shard, "PVStateValue", key="framePeriod", value=repr(1 / 30))
    sequence = ElementTree.SubElement(root, "Sequence", type="TSeries Timed Element", cycle="1")
    rng = np.random.default_rng(0)
    distinct = rng.integers(0, 4000, size=(16, size, size)).astype(np.uint16)
    for index in range(frames):
        name = f"{STEM}_Cycle00001_Ch1_{index + 1:06d}.ome.tif"
        frame = ElementTree.SubElement(sequence, "Frame", index=str(index + 1), relativeTime=f"{index / 30:.4f}")
        ElementTree.SubElement(frame, "File", channel="1", channelName="Ch1", filename=name)
        tifffile.imwrite(directory / name, distinct[index % 16], photometric="minisblack", metadata={"axes": "YX"}, ome=True)
    ElementTree.ElementTree(root).write(xml, xml_declaration=True, encoding="utf-8")
    return directory


def best_of(repeats: int, function: Callable[[], Any]) -> tuple[float, Any]:
    """Fastest wall time (s) of ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    from cindra_dask.config import InputFormat
    from cindra_dask.io.bruker import find_prairie_xml, prairie_files, read_prairie_xml
    from cindra_dask.io import inputs
    from cindra_dask.io.inputs import inspect_inputs
    from cindra_dask.io.tiff import inspect_tiff, inspect_with_tifffile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("/tmp/cindra-bench-bruker"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    arguments = parser.parse_args()

    folder = write_folder(arguments.data / f"{arguments.frames}x{arguments.size}", frames=arguments.frames, size=arguments.size)
    repeats = arguments.repeats
    find_s, xml = best_of(repeats, lambda: find_prairie_xml(folder, ignored_file_names=()))
    parse_s, scan = best_of(repeats, lambda: read_prairie_xml(xml))
    check_s, (paths, _) = best_of(repeats, lambda: prairie_files(scan))
    fast_s, fast = best_of(repeats, lambda: [inspect_tiff(path) for path in paths])
    tifffile_s, slow = best_of(repeats, lambda: [inspect_with_tifffile(path) for path in paths])
    same = all(a.path == b.path and a.page_count == b.page_count and a.page_shape == b.page_shape and a.dtype == b.dtype and np.array_equal(a.ifd_offsets, b.ifd_offsets) for a, b in zip(fast, slow))
    def whole() -> Any:
        return inspect_inputs(folder, input_format=InputFormat.AUTO, hdf5_dataset="data", nwb_series=None, zarr_array=None, ignored_file_names=(), explicit=None)

    total_s, inspected = best_of(repeats, whole)
    assert not inspected.problems and len(inspected.files) == arguments.frames and same
    inputs.inspect_tiff = inspect_with_tifffile  # as before: every file opened with tifffile
    try:
        total_with_tifffile_s, _ = best_of(repeats, whole)
    finally:
        inputs.inspect_tiff = inspect_tiff
    result = {
        "frames": arguments.frames,
        "size": arguments.size,
        "find_xml_s": find_s,
        "parse_xml_s": parse_s,
        "check_files_s": check_s,
        "inspect_tiffs_s": fast_s,
        "inspect_tiffs_with_tifffile_s": tifffile_s,
        "speedup": tifffile_s / fast_s,
        "inspect_inputs_s": total_s,
        "inspect_inputs_with_tifffile_s": total_with_tifffile_s,
        "per_file_ms": 1e3 * fast_s / arguments.frames,
        "per_file_with_tifffile_ms": 1e3 * tifffile_s / arguments.frames,
    }
    print(json.dumps(result))
    rows = [
        ["find the XML (glob + root tag)", find_s],
        ["parse the XML", parse_s],
        ["check the named files exist", check_s],
        ["inspect every TIFF: header + IFD (now)", fast_s],
        ["inspect every TIFF: tifffile (before)", tifffile_s],
        ["inspect_inputs, whole (now)", total_s],
        ["inspect_inputs, whole, every TIFF through tifffile (before)", total_with_tifffile_s],
    ]
    write_table(
        arguments.out / "bruker_discovery.md",
        f"Bruker folder discovery, {arguments.frames} single-page {arguments.size}² OME-TIFFs (best of {repeats}, s)",
        ["stage", "s"],
        rows,
        notes=[f"inspecting a file: {result['per_file_ms']:.3f} ms now vs {result['per_file_with_tifffile_ms']:.3f} ms with tifffile ({result['speedup']:.1f}×); same page counts, shapes, dtypes and IFD offsets: {same}"],
    )


if __name__ == "__main__":
    main()
