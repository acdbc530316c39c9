"""Check that a suite2p export loads with suite2p's own GUI loading code (suite2p 1.1.0, headless).

Usage (project venv)::

    .venv/bin/python benchmarks/check_suite2p_export.py [STORE] [--out DIR]

1. In the project's venv: exports STORE (default: a small simulated recording run through the
   pipeline, or the synthetic store of the tests while the pipeline cannot process yet) with
   `cindra_dask.export.export_suite2p`, and writes what the loader must find (traces, masks,
   offsets, a few raw and registered frames) to ``expectations.npz``.
2. In benchmarks/.suite2p-venv (``--load``): imports suite2p through ``suite2p_shim`` with Qt and
   pyqtgraph (and superqt, rastermap) replaced by inert stand-ins (none is installed there; nothing is drawn), then runs
   the GUI's real loaders: ``suite2p.gui.io.load_files`` (File > Load stat.npy) followed by
   ``load_to_GUI`` (boundaries, circles, the seven views, colours, ROI masks, trace plot), and
   ``load_folder`` (File > Load folder: ``suite2p.io.combined`` over the plane folders). It also
   applies suite2p's classifier to the exported ``stat`` and suite2p's own
   ``registration.register.shift_frames`` with the exported ``yoff``/``xoff`` to the raw frames,
   which must reproduce our registered frames (the offset sign convention).

Prints one ``OK``/``FAIL`` line per check; exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SUITE2P_PYTHON = ROOT / "benchmarks" / ".suite2p-venv" / "bin" / "python"
SAMPLE_FRAMES = 24


# ---------------------------------------------------------------------------------------------
# project side: export and expectations
# ---------------------------------------------------------------------------------------------


def write_expectations(store_path: Path, target: Path) -> None:
    """What the suite2p side must find, read from the store (per plane, keys ``p{k}_*``)."""
    from cindra_dask.store import RecordingStore

    store = RecordingStore(store_path)
    payload: dict[str, np.ndarray] = {}
    planes = sorted(int(path.name[6:]) for path in store.path.glob("plane_*") if (path / "extraction" / "cell_fluorescence").is_dir())
    payload["planes"] = np.array(planes)
    for plane in planes:
        prefix, group = f"p{plane}_", f"plane_{plane}"
        payload[prefix + "F"] = store.read(f"{group}/extraction/cell_fluorescence")
        rois = store.read_rois(f"{group}/rois")
        payload[prefix + "pixel_offsets"], payload[prefix + "ypix"], payload[prefix + "xpix"] = rois.pixel_offsets, rois.ypix, rois.xpix
        payload[prefix + "classification"] = store.read(f"{group}/extraction/cell_classification")
        offsets = store.read(f"{group}/registration/rigid_offsets")
        payload[prefix + "rigid_offsets"] = offsets
        frame_count = offsets.shape[0]
        sample = np.linspace(0, frame_count - 1, min(SAMPLE_FRAMES, frame_count)).astype(int)
        raw, registered = f"{group}/raw/channel_0", f"{group}/registered/channel_0"
        if raw in store and registered in store:
            payload[prefix + "sample"] = sample
            payload[prefix + "raw"] = np.asarray(store.array(raw).oindex[sample], np.float32)
            payload[prefix + "registered"] = np.asarray(store.array(registered).oindex[sample], np.float32)
            payload[prefix + "nonrigid"] = np.array(f"{group}/registration/nonrigid_offsets" in store)
    np.savez(target, **payload)


def project_side(arguments: argparse.Namespace) -> int:
    from cindra_dask.export import export_suite2p

    out = (arguments.out or Path(tempfile.mkdtemp(prefix="suite2p-export-check-"))).absolute()
    out.mkdir(parents=True, exist_ok=True)
    store = arguments.store
    if store is None:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from render_report import demo_store

        store = demo_store(out / "store")
    export_dir = out / "suite2p"
    written = export_suite2p(store, export_dir, overwrite=True)
    print(f"exported {store} → {export_dir} ({len(written)} files)")
    write_expectations(Path(store), out / "expectations.npz")
    completed = subprocess.run([str(SUITE2P_PYTHON), __file__, "--load", str(export_dir), "--expect", str(out / "expectations.npz")], cwd=ROOT / "benchmarks", env={**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")})
    return completed.returncode


# ---------------------------------------------------------------------------------------------
# suite2p side: stand-ins for Qt and pyqtgraph, then the GUI's loaders
# ---------------------------------------------------------------------------------------------


class _AnythingMeta(type):
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything


class _Anything(metaclass=_AnythingMeta):
    """Stands in for any Qt/pyqtgraph class, instance, attribute or call; false, empty, inert."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _Anything()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()

    def __bool__(self) -> bool:
        return False

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __getitem__(self, key: Any) -> Any:
        return _Anything()

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __or__(self, other: Any) -> Any:
        return self

    __ror__ = __or__


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves every ``qtpy.*`` / ``pyqtgraph.*`` / ``superqt.*`` / ``rastermap.*`` import (GUI-only dependencies not installed there) with a `_StubModule`."""

    roots = ("qtpy", "pyqtgraph", "superqt", "rastermap")

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname.split(".")[0] in self.roots:
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = _StubModule(spec.name)
        module.__path__ = []  # type: ignore[attr-defined]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _Parent(_Anything):
    """The GUI main window as far as the loaders use it: real data attributes, inert widgets."""

    def __init__(self, fname: str) -> None:
        self.fname = fname
        self.loaded = False
        self.ops_plot = {"ROIs_on": True, "color": 0, "view": 0, "opacity": [127, 255], "saturation": [0, 255], "colormap": "hsv"}
        self.rois = {"iROI": 0, "Sroi": 0, "Lam": 0, "LamMean": 0, "LamNorm": 0}
        self.colors = {"RGB": 0, "cols": 0, "colorbar": []}
        self.imerge, self.ichosen = [0], 0
        self.color_names = ["A: random", "S: skew", "D: compact", "F: snr", "G: aspect_ratio", "H: chan2_prob", "J: classifier, cell prob=", "K: correlations, bin=", "L: corr with 1D var, bin=^^^", "M: rastermap / custom"]
        self.view_names = ["Q: ROIs", "W: mean img", "E: mean img (enhanced)", "R: correlation map", "T: max projection", "Y: mean img chan2, corr", "U: mean img chan2"]


class _Checks:
    def __init__(self) -> None:
        self.failures = 0

    def __call__(self, name: str, condition: Any, detail: str = "") -> None:
        ok = bool(condition)
        self.failures += not ok
        print(f"{'OK  ' if ok else 'FAIL'} {name}{'' if ok or not detail else ': ' + detail}")

    def run(self, name: str, function: Any) -> Any:
        try:
            return function()
        except Exception as error:  # report and continue with the other checks
            import traceback

            self.failures += 1
            where = traceback.extract_tb(error.__traceback__)[-1]
            print(f"FAIL {name}: {error.__class__.__name__}: {error} (at {Path(where.filename).name}:{where.lineno}: {where.line})")
            return None


def suite2p_side(export_dir: Path, expectations_path: Path) -> int:
    sys.meta_path.insert(0, _StubFinder())
    import suite2p_shim  # noqa: F401  (torch/torchvision patch, then suite2p)
    import torch
    from suite2p import classification
    from suite2p.gui import io as gui_io
    from suite2p.registration.register import shift_frames

    expect = np.load(expectations_path)
    check = _Checks()
    planes = [int(plane) for plane in expect["planes"]]
    for plane in planes:
        prefix, folder = f"p{plane}_", export_dir / f"plane{plane}"
        loaded = check.run(f"plane{plane}: gui.io.load_files(stat.npy)", lambda: gui_io.load_files(str(folder / "stat.npy")))
        check(f"plane{plane}: load_files found stat, ops, F, Fneu, spks, iscell", loaded is not None)
        if loaded is None:
            continue
        stat, ops, fluorescence, neuropil, spikes, iscell, probcell, redcell, probredcell, hasred = loaded
        check(f"plane{plane}: F.npy equals the store's cell_fluorescence", np.array_equal(fluorescence, expect[prefix + "F"]))
        check(f"plane{plane}: spks/Fneu shapes (n, T) float32", spikes.shape == neuropil.shape == fluorescence.shape and spikes.dtype == np.float32)
        offsets = expect[prefix + "pixel_offsets"]
        masks_equal = len(stat) == len(offsets) - 1 and all(
            np.array_equal(stat[index]["ypix"], expect[prefix + "ypix"][offsets[index] : offsets[index + 1]]) and np.array_equal(stat[index]["xpix"], expect[prefix + "xpix"][offsets[index] : offsets[index + 1]])
            for index in range(len(stat))
        )
        check(f"plane{plane}: stat ypix/xpix equal the store's ragged masks ({len(stat)} ROIs)", masks_equal)
        check(f"plane{plane}: iscell equals cell_classification", np.array_equal(iscell, expect[prefix + "classification"][:, 0] > 0.5) and np.allclose(probcell, expect[prefix + "classification"][:, 1]))
        check(f"plane{plane}: yoff/xoff equal the store's rigid offsets (dy, dx), same sign", np.allclose(ops["yoff"], expect[prefix + "rigid_offsets"][:, 0]) and np.allclose(ops["xoff"], expect[prefix + "rigid_offsets"][:, 1]))

        parent = _Parent(str(folder / "stat.npy"))
        if check.run(f"plane{plane}: gui.io.load_to_GUI (masks, views, colours, traces)", lambda: gui_io.load_to_GUI(parent, str(folder), loaded) or True):
            check(f"plane{plane}: GUI views built (7, Ly, Lx, 3)", getattr(parent, "views", np.zeros(0)).shape == (7, ops["Ly"], ops["Lx"], 3))
            roi_map = parent.rois["iROI"][:, 0].max(axis=0)
            drawn = all(roi_map[stat[index]["ypix"], stat[index]["xpix"]].max() >= 0 for index in range(len(stat)))
            check(f"plane{plane}: every ROI drawn in the GUI's ROI map, with boundaries", drawn and all(len(parent.stat[index]["yext"]) > 0 for index in range(len(stat))))
        probabilities = check.run(f"plane{plane}: suite2p classifier on the exported stat", lambda: classification.classify(stat=np.load(folder / "stat.npy", allow_pickle=True), classfile=classification.builtin_classfile))
        if probabilities is not None:
            check(f"plane{plane}: suite2p classifier returns (n, 2)", probabilities.shape == (len(stat), 2))

        if prefix + "raw" in expect.files:
            sample = expect[prefix + "sample"]
            raw, registered = expect[prefix + "raw"], expect[prefix + "registered"]
            yoff, xoff = np.round(ops["yoff"][sample]).astype(np.int64), np.round(ops["xoff"][sample]).astype(np.int64)

            def shifted(sign: int) -> np.ndarray:
                return np.asarray(shift_frames(torch.from_numpy(raw), torch.from_numpy(sign * yoff), torch.from_numpy(sign * xoff), device=torch.device("cpu")), np.float32)

            (y0, y1), (x0, x1) = ops["yrange"], ops["xrange"]
            crop = (slice(None), slice(y0, y1), slice(x0, x1))

            def error(frames: np.ndarray) -> float:
                return float(np.mean(np.abs(frames[crop] - registered[crop])))

            same, opposite = error(shifted(1)), error(shifted(-1))
            check(
                f"plane{plane}: suite2p's shift_frames with the exported yoff/xoff reproduces our registered frames better than the opposite sign (mean |error| {same:.2f} vs {opposite:.2f})",
                same < opposite and (bool(expect[prefix + "nonrigid"]) or same < 1e-3 or same < 0.5 * opposite),
            )

    folder_parent = _Parent(str(export_dir))
    if check.run("gui.io.load_folder (suite2p.io.combined over the plane folders)", lambda: gui_io.load_folder(folder_parent) or True):
        total = sum(len(expect[f"p{plane}_pixel_offsets"]) - 1 for plane in planes)
        check(f"load_folder: combined view holds all {total} ROIs of {len(planes)} plane(s)", folder_parent.loaded and len(folder_parent.stat) == total)
    print(f"{'OK' if check.failures == 0 else 'FAILED'}: suite2p {_suite2p_version()} loaded the export with {check.failures} failure(s)")
    return 1 if check.failures else 0


def _suite2p_version() -> str:
    from importlib.metadata import version

    return version("suite2p")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", nargs="?", type=Path, help="a recording store (default: simulate one)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the export (default: a temporary folder)")
    parser.add_argument("--load", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=Path, default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.load is not None:
        sys.exit(suite2p_side(arguments.load, arguments.expect))
    sys.exit(project_side(arguments))


if __name__ == "__main__":
    main()
