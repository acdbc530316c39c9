"""Run CaImAn's two-photon pipeline (rigid motion correction, CNMF on patches, component evaluation
without the CNN) on a folder of TIFFs; executed by benchmarks/.caiman-venv/bin/python.

As CaImAn's ``demo_pipeline``: ``MotionCorrect`` (rigid) → C-order memory map → ``CNMF.fit`` on
patches (greedy initialisation, ``p`` = 1) → ``evaluate_components``. Writes ``<out>/caiman_result.npz``:
footprints as a CSC matrix (``A_data``, ``A_indices``, ``A_indptr``, shape pixels × K, pixel index
y + x·H, CaImAn's Fortran order), ``C``, ``S``, ``YrA`` (K, T), ``accepted`` (K,) bool, ``dims``,
``shifts`` (T, 2); and ``<out>/caiman_result.json`` with the wall time and peak RSS.

Usage: run_caiman.py DATA_DIR OUT_DIR --fs HZ --tau S --gsig PX --rf PX --stride PX --k N [--processes N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from peak_memory import lifetime_peak_rss_mib


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--fs", type=float, required=True)
    parser.add_argument("--tau", type=float, required=True)
    parser.add_argument("--gsig", type=float, required=True)
    parser.add_argument("--rf", type=int, required=True)
    parser.add_argument("--stride", type=int, required=True)
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--processes", type=int, default=2)
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)

    started = time.time()
    import caiman
    from caiman.motion_correction import MotionCorrect
    from caiman.source_extraction.cnmf import cnmf, params

    files = [str(path) for path in sorted(arguments.data.glob("*.tif"))]
    options = params.CNMFParams(
        params_dict={
            "fnames": files,
            "fr": arguments.fs,
            "decay_time": arguments.tau,
            "p": 1,
            "nb": 1,
            "rf": arguments.rf,
            "stride": arguments.stride,
            "K": arguments.k,
            "gSig": [arguments.gsig, arguments.gsig],
            "merge_thr": 0.8,
            "method_init": "greedy_roi",
            "ssub": 1,
            "tsub": 1,
            "min_SNR": 2.5,
            "rval_thr": 0.8,
            "use_cnn": False,
            "pw_rigid": False,
            "max_shifts": (8, 8),
            "border_nan": "copy",
        }
    )
    _, cluster, processes = caiman.cluster.setup_cluster(backend="multiprocessing", n_processes=arguments.processes)
    try:
        correction = MotionCorrect(files, dview=cluster, **options.get_group("motion"))
        correction.motion_correct(save_movie=True)
        memory_map = caiman.save_memmap(correction.mmap_file, base_name=str(arguments.out / "memmap_"), order="C", border_to_0=0, dview=cluster)
        pixels_by_time, dims, frame_count = caiman.load_memmap(memory_map)
        images = np.reshape(pixels_by_time.T, [frame_count, *dims], order="F")
        model = cnmf.CNMF(processes, params=options, dview=cluster)
        model.fit(images)
        model.estimates.evaluate_components(images, model.params, dview=cluster)
    finally:
        caiman.stop_server(dview=cluster)
    wall_s = time.time() - started
    estimates = model.estimates
    footprints = estimates.A.tocsc()
    accepted = np.zeros(footprints.shape[1], bool)
    accepted[np.asarray(estimates.idx_components, np.int64)] = True
    np.savez(
        arguments.out / "caiman_result.npz",
        A_data=footprints.data, A_indices=footprints.indices, A_indptr=footprints.indptr, A_shape=np.array(footprints.shape),
        C=estimates.C, S=estimates.S, YrA=estimates.YrA, accepted=accepted, dims=np.array(dims), shifts=np.asarray(correction.shifts_rig),
    )
    (arguments.out / "caiman_result.json").write_text(json.dumps({"wall_s": wall_s, "peak_rss_mib": lifetime_peak_rss_mib(), "components": int(footprints.shape[1]), "accepted": int(accepted.sum())}))
    for leftover in arguments.out.glob("memmap_*"):
        leftover.unlink()
    for path in correction.mmap_file:
        Path(path).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
