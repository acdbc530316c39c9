"""TIFF inspection: a single uncompressed page read from its header and IFD (Bruker folders: one file
per frame) gives what tifffile gives; every other file, damaged ones included, goes to tifffile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from cindra_dask.errors import InputError
from cindra_dask.io.tiff import inspect_tiff, inspect_with_tifffile, single_page_info

FRAME = np.arange(7 * 9, dtype=np.int64).reshape(7, 9)


def _outcome(inspect: Any, path: Path) -> tuple[Any, ...]:
    """An inspection's result as comparable values, or its error lines."""
    try:
        info = inspect(path)
    except InputError as error:
        return ("error", error.problems)
    return (info.path, info.page_count, info.page_shape, info.dtype, info.ifd_offsets.tolist())


def _write(path: Path, data: np.ndarray, **options: Any) -> Path:
    tifffile.imwrite(path, data, photometric="rgb" if data.ndim == 3 and data.shape[-1] == 3 else "minisblack", **options)
    return path


def test_a_single_page_read_from_its_ifd_matches_tifffile(tmp_path: Path) -> None:
    read_directly = [
        _write(tmp_path / "u8.tif", FRAME.astype(np.uint8)),
        _write(tmp_path / "i16.tif", (FRAME - 30).astype(np.int16)),
        _write(tmp_path / "u16_ome.ome.tif", FRAME.astype(np.uint16), ome=True, metadata={"axes": "YX"}),
        _write(tmp_path / "i32_strips.tif", FRAME.astype(np.int32), rowsperstrip=2),
        _write(tmp_path / "f32.tif", FRAME.astype(np.float32) / 7),
        _write(tmp_path / "f64.tif", FRAME.astype(np.float64) / 3),
    ]
    by_tifffile = [
        _write(tmp_path / "three_pages.tif", np.stack([FRAME.astype(np.uint16)] * 3)),
        _write(tmp_path / "zlib.tif", FRAME.astype(np.uint16), compression="zlib"),
        _write(tmp_path / "big_endian.tif", FRAME.astype(np.uint16), byteorder=">"),
        _write(tmp_path / "bigtiff.tif", FRAME.astype(np.uint16), bigtiff=True),
        _write(tmp_path / "tiled.tif", np.zeros((32, 32), np.uint16), tile=(16, 16)),
        _write(tmp_path / "rgb.tif", np.zeros((7, 9, 3), np.uint8)),
        _write(tmp_path / "bool.tif", FRAME % 2 == 0),
    ]
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(read_directly[1].read_bytes()[:-20])
    not_a_tiff = tmp_path / "not_a_tiff.tif"
    not_a_tiff.write_bytes(b"II*\x00" + b"\xff" * 20)
    by_tifffile += [truncated, not_a_tiff]
    for path in read_directly:
        assert single_page_info(path) is not None, path.name
    for path in by_tifffile:
        assert single_page_info(path) is None, path.name
    for path in read_directly + by_tifffile:
        assert _outcome(inspect_tiff, path) == _outcome(inspect_with_tifffile, path), path.name
    assert _outcome(inspect_tiff, read_directly[2]) == (str(read_directly[2]), 1, (7, 9), "<u2", [8])
    with pytest.raises(InputError, match=r"truncated.tif: truncated: pages reference \d+ bytes but the file has \d+"):
        inspect_tiff(truncated)
