"""suite2p-compatible export: files, keys, round trips and the offset sign convention."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cindra_dask.errors import OutputError
from cindra_dask.export import export_suite2p
from cindra_dask.export.suite2p import slab_rows
from cindra_dask.runner.maintenance import reset_store
from cindra_dask.store import RecordingStore
from tests.test_manifest import FRAMES, HEIGHT, PLANES, WIDTH, SyntheticStore, write_synthetic_store

SUITE2P_STAT_KEYS = {"ypix", "xpix", "lam", "med", "npix", "npix_soma", "soma_crop", "overlap", "mrs", "mrs0", "compact", "solidity", "npix_norm", "radius", "aspect_ratio", "footprint", "skew", "iplane"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticStore, Path, list[Path]]:
    synthetic = write_synthetic_store(tmp_path_factory.mktemp("export"))
    output = synthetic.path.parent / "suite2p"
    return synthetic, output, export_suite2p(synthetic.path, output)


def _load(path: Path) -> object:
    return np.load(path, allow_pickle=True)


def test_every_plane_gets_suite2p_files(exported: tuple[SyntheticStore, Path, list[Path]]) -> None:
    _, output, written = exported
    names = ("stat.npy", "F.npy", "Fneu.npy", "spks.npy", "iscell.npy", "ops.npy", "db.npy", "settings.npy", "reg_outputs.npy", "detect_outputs.npy")
    assert written == [output / f"plane{plane}" / name for plane in range(PLANES) for name in names]
    assert all(path.is_file() for path in written)


def test_traces_and_classification_round_trip(exported: tuple[SyntheticStore, Path, list[Path]]) -> None:
    synthetic, output, _ = exported
    store = RecordingStore(synthetic.path)
    for plane in range(PLANES):
        folder = output / f"plane{plane}"
        for file_name, array_name in (("F.npy", "cell_fluorescence"), ("Fneu.npy", "neuropil_fluorescence"), ("spks.npy", "spikes")):
            values = np.load(folder / file_name)
            assert values.dtype == np.float32 and values.shape == (synthetic.rois[plane].count, FRAMES)
            np.testing.assert_array_equal(values, store.read(f"plane_{plane}/extraction/{array_name}"))
        iscell = np.load(folder / "iscell.npy")
        assert iscell.shape == (synthetic.rois[plane].count, 2)
        np.testing.assert_array_equal(iscell[:, 0] > 0.5, synthetic.is_cell[plane])


def test_stat_holds_the_ragged_masks_under_suite2p_keys(exported: tuple[SyntheticStore, Path, list[Path]]) -> None:
    synthetic, output, _ = exported
    store = RecordingStore(synthetic.path)
    for plane in range(PLANES):
        stat = _load(output / f"plane{plane}" / "stat.npy")
        rois = synthetic.rois[plane]
        assert stat.dtype == object and len(stat) == rois.count
        centroids = store.read(f"plane_{plane}/rois/centroids")
        skewness = store.read(f"plane_{plane}/rois/skewness")
        for index, entry in enumerate(stat):
            ypix, xpix, lam = rois.roi(index)
            assert SUITE2P_STAT_KEYS <= set(entry)
            np.testing.assert_array_equal(entry["ypix"], ypix)
            np.testing.assert_array_equal(entry["xpix"], xpix)
            np.testing.assert_array_equal(entry["lam"], lam)
            assert entry["med"] == [int(centroids[index, 0]), int(centroids[index, 1])]
            assert entry["npix"] == len(ypix) and entry["soma_crop"].shape == ypix.shape and entry["soma_crop"].dtype == bool
            assert entry["skew"] == pytest.approx(float(skewness[index]))
            assert entry["iplane"] == plane and entry["radius"] == pytest.approx(3.0)


def test_ops_images_offsets_and_their_sign(exported: tuple[SyntheticStore, Path, list[Path]]) -> None:
    synthetic, output, _ = exported
    store = RecordingStore(synthetic.path)
    for plane in range(PLANES):
        ops = _load(output / f"plane{plane}" / "ops.npy").item()
        assert (ops["Ly"], ops["Lx"], ops["nframes"], ops["iplane"], ops["nplanes"]) == (HEIGHT, WIDTH, FRAMES, plane, PLANES)
        assert ops["fs"] == pytest.approx(15.0) and ops["tau"] == pytest.approx(0.7) and ops["diameter"] == [6.0, 6.0]
        assert ops["yrange"] == [3, HEIGHT - 3] and ops["xrange"] == [3, WIDTH - 3]
        assert ops["meanImg"].shape == ops["meanImgE"].shape == ops["refImg"].shape == (HEIGHT, WIDTH)
        assert ops["Vcorr"].shape == ops["max_proj"].shape == (HEIGHT - 6, WIDTH - 6)  # suite2p stores them cropped
        np.testing.assert_array_equal(ops["Vcorr"], store.read(f"plane_{plane}/detection/correlation_map")[3:-3, 3:-3])
        # our (dy, dx): frame t shows the reference moved by (+dy, +dx); suite2p rolls frames by (-yoff, -xoff)
        assert ops["yoff"].dtype == np.int32
        np.testing.assert_array_equal(ops["yoff"], synthetic.rigid_offsets[plane][:, 0])
        np.testing.assert_array_equal(ops["xoff"], synthetic.rigid_offsets[plane][:, 1])
        raw, registered = store.read(f"plane_{plane}/raw/channel_0"), store.read(f"plane_{plane}/registered/channel_0")
        for frame in (0, 17, FRAMES - 1):
            suite2p_registered = np.roll(raw[frame], (-int(ops["yoff"][frame]), -int(ops["xoff"][frame])), axis=(0, 1))
            np.testing.assert_array_equal(suite2p_registered, registered[frame])
        nonrigid = store.read(f"plane_{plane}/registration/nonrigid_offsets")
        np.testing.assert_array_equal(ops["yoff1"], nonrigid[..., 0])
        np.testing.assert_array_equal(ops["xoff1"], nonrigid[..., 1])
        assert ops["nblocks"] == [2, 3] and ops["block_size"] == [16, 16]
        assert [list(block) for block in ops["yblock"][:3]] == [[0, 16]] * 3 and [list(block) for block in ops["xblock"][:3]] == [[0, 16], [12, 28], [24, 40]]
        assert np.flatnonzero(ops["badframes"]).tolist() == [3, 10, 40] and np.flatnonzero(ops["badframes0"]).tolist() == [3]
        assert ops["regDX"].shape == (2, 3) and ops["tPC"].shape == (20, 2) and ops["regPC"].shape == (2, 2, HEIGHT - 6, WIDTH - 6)
        assert set(ops["plane_times"]) == {"registration", "detection", "extraction"}
        assert "tau: 0.7" in ops["cindra_dask_configuration"]
        parts = {name: _load(output / f"plane{plane}" / name).item() for name in ("db.npy", "settings.npy", "reg_outputs.npy", "detect_outputs.npy")}
        merged = {key: value for part in parts.values() for key, value in part.items()}
        assert set(merged) == set(ops)  # suite2p's split loses nothing
        assert {"Ly", "Lx", "nframes", "nchannels", "meanImg"} <= set(parts["db.npy"]) and "yoff" in parts["reg_outputs.npy"] and "Vcorr" in parts["detect_outputs.npy"]


def test_subpixel_offsets_are_exported_as_float(tmp_path: Path, exported: tuple[SyntheticStore, Path, list[Path]]) -> None:
    synthetic, _, _ = exported
    shutil.copytree(synthetic.path, tmp_path / "copy.zarr")
    store = RecordingStore(tmp_path / "copy.zarr")
    store.write_array("plane_0/registration/rigid_offsets", synthetic.rigid_offsets[0] + np.float32(0.25))
    export_suite2p(store.path, tmp_path / "out")
    ops = _load(tmp_path / "out" / "plane0" / "ops.npy").item()
    assert ops["yoff"].dtype == np.float32
    np.testing.assert_allclose(ops["yoff"], synthetic.rigid_offsets[0][:, 0] + 0.25)


def test_export_refuses_overwrite_inside_store_and_unprocessed_stores(tmp_path: Path, exported: tuple[SyntheticStore, Path, list[Path]]) -> None:
    synthetic, output, _ = exported
    with pytest.raises(OutputError, match="exists; export to an empty folder or pass overwrite=True"):
        export_suite2p(synthetic.path, output)
    with pytest.raises(OutputError, match="inside the store"):
        export_suite2p(synthetic.path, synthetic.path / "suite2p")
    shutil.copytree(synthetic.path, tmp_path / "copy.zarr")
    store = RecordingStore(tmp_path / "copy.zarr")
    store.delete("plane_1/extraction")
    with pytest.warns(UserWarning, match=r"plane\(s\) 1 have no extraction outputs"):
        written = export_suite2p(store.path, tmp_path / "partial")
    assert {path.parent.name for path in written} == {"plane0"}
    reset_store(store.path, phase="process")
    with pytest.raises(OutputError, match="no plane has extraction outputs"):
        export_suite2p(store.path, tmp_path / "none")


def test_slab_rows_are_whole_chunk_rows_within_the_budget() -> None:
    assert slab_rows((1000, 64, 64), (10, 64, 64), itemsize=2, max_read_bytes=64 * 64 * 2 * 35) == 30
    assert slab_rows((1000, 64, 64), (10, 64, 64), itemsize=2, max_read_bytes=1) == 10
    assert slab_rows((), (), itemsize=4) == 1
