"""Fetch part of the CASCADE ground truth (simultaneous juxtacellular ephys + calcium imaging) and
build the activity bank the simulator and the spike benchmarks use.

CASCADE (Rupprecht et al. 2021, public repository PTRRupprecht/CascadeTorch, folder ``Ground_truth/``)
holds, per neuron, one ``.mat`` file whose ``CAttached`` cell array has one struct per recording:
``fluo_time`` (s), ``fluo_mean`` (dF/F) and ``events_AP`` (spike times in units of 1e-4 s).

Usage::

    python benchmarks/accuracy/fetch_cascade.py <CascadeTorch git dir or checkout> [--cache DIR]

The repository is read with ``git show HEAD:<path>`` (a bare clone is enough). The files listed in
``FILES`` (≤ 5 per dataset, ten datasets, seven indicators) are copied into
``<cache>/raw/`` and checked against their SHA-256; then ``<cache>/cascade_bank.npz`` is written
(layout: `cindra_dask.simulate.bank`; each recording at its own rate, spike times from the start of
its first sample, NaN spike entries and spikes outside the imaged interval dropped). The cache is
``$CINDRA_DASK_DATA/cascade`` if that variable is set, else ``~/.cache/cindra-dask/cascade``;
nothing is written inside this repository.

Datasets DS09, DS10 and DS11 are kept aside for independent checks: the script refuses them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from cindra_dask.simulate.bank import refuse_reserved_datasets, write_activity_bank

import data_cache  # the sibling module of benchmarks/accuracy

BANK_FILE_NAME = "cascade_bank.npz"

# (path under Ground_truth/, SHA-256 of the file at CascadeTorch's HEAD when this list was made)
FILES: tuple[tuple[str, str], ...] = (
    ("DS01-OGB1-m-V1/CAttached_Theis16_set2_OGB_V1_cell_10_mini.mat", "c8ecc562bbe12d762bb02d0912a430740a8cbac642c960fa8b9e2e08c5fe1f86"),
    ("DS01-OGB1-m-V1/CAttached_Theis16_set2_OGB_V1_cell_11_mini.mat", "36c3d7ea6da9d2c928f7036e054885178733eb331b7411b81f59e3f09f0b44ac"),
    ("DS01-OGB1-m-V1/CAttached_Theis16_set2_OGB_V1_cell_12_mini.mat", "c70f98b91b83cb9c3eceea71f4eff1109eb658ee8f3a877961f7f2d05f779757"),
    ("DS01-OGB1-m-V1/CAttached_Theis16_set2_OGB_V1_cell_13_mini.mat", "a92297159f94b499950b0dc697e1c124083ba08fc0e0835a1542c59968ce2dc1"),
    ("DS01-OGB1-m-V1/CAttached_Theis16_set2_OGB_V1_cell_14_mini.mat", "97833d8fac5fcb57afe331aa8cdf79f7260515d64a7860ea66c84d21384bc212"),
    ("DS06-GCaMP6f-zf-aDp/CAttached_GC_aDp_190501_Fish1_cell1_mini.mat", "8a346e3dd934c3ae9420c4d074f2629b66dca29fe625b4a3303c9dd61e3a0f70"),
    ("DS06-GCaMP6f-zf-aDp/CAttached_GC_aDp_190501_Fish1_cell2_mini.mat", "0b27fe58931a71705422b11381950f6afe1115ce02e467470e8f460fc7f41485"),
    ("DS06-GCaMP6f-zf-aDp/CAttached_GC_aDp_190501_Fish1_cell3_mini.mat", "796ebce09e8ac1a1acd9abde38f755191b52db382052bef5413f92ee4f7bfb2b"),
    ("DS06-GCaMP6f-zf-aDp/CAttached_GC_aDp_190501_Fish1_cell4_mini.mat", "f16b30a61408da369fa3487b350c08b5b57838853f5bba454cbcbede022cac02"),
    ("DS06-GCaMP6f-zf-aDp/CAttached_GC_aDp_190501_Fish1_cell5_mini.mat", "06d056829c4b6edeb0d672cf05118f5805859b183fb8cf2169afdb7443c99777"),
    ("DS13-GCaMP6s-m-V1-neuropil-corrected/CAttached_Allen_Cux2f_102086_neuropil_subtracted_mini.mat", "06d642abd4ce07d68261562c12a4071d20a0e3ff9cc223c011a5078747f7d414"),
    ("DS13-GCaMP6s-m-V1-neuropil-corrected/CAttached_Allen_Cux2f_102102_neuropil_subtracted_mini.mat", "14cbe3372eff30199c073b474cc988f7e948fc8ef650fbcc98437ee4c6033905"),
    ("DS13-GCaMP6s-m-V1-neuropil-corrected/CAttached_Allen_Cux2f_102422_neuropil_subtracted_mini.mat", "9e921b91e6a62735830ded80d5bafabc732ebb6833e5b2270319a48cd3b46f9d"),
    ("DS13-GCaMP6s-m-V1-neuropil-corrected/CAttached_Allen_Cux2f_102436_neuropil_subtracted_mini.mat", "0d8c1d8e564c9a57bab4cc6aa5402a6a53779e44071c24df72f7c9579ca21927"),
    ("DS13-GCaMP6s-m-V1-neuropil-corrected/CAttached_Allen_Cux2f_102437_neuropil_subtracted_mini.mat", "ec139244ecfbab7891a5af093949c7bdabe0f7f3952bfbd7b696beff3e0f4e7c"),
    ("DS14-GCaMP6s-m-V1/CAttached_Chen2013_GC6s_cell1B_full_mini.mat", "cbd1fd23ea53dc851eb6a33f34a737c8c5c845aa596f5eed40eb0d99c0c8b24b"),
    ("DS14-GCaMP6s-m-V1/CAttached_Chen2013_GC6s_cell1_full_mini.mat", "f98aa0f21007f5cb476f22365d84f9abfad3f1a1fb40ab2afed6d0ec53537ea7"),
    ("DS14-GCaMP6s-m-V1/CAttached_Chen2013_GC6s_cell3C_full_mini.mat", "8ba47a129281ef980f57f26d871ce0a37008f28c276672b14461340b47098e79"),
    ("DS15-GCaMP6s-m-V1/CAttached_Theis16_set3_GCaMP6s_V1_cell_10_corrected_mini.mat", "7bab40c2a8bd1c50dc038c8ff2bc823e6159f6851ad75fcf46cf7f45c5c03357"),
    ("DS15-GCaMP6s-m-V1/CAttached_Theis16_set3_GCaMP6s_V1_cell_11_corrected_mini.mat", "540b10cd0c15ceb25753b25eb72b218f8bad32cfc458d20a9906d0a45bb08b4c"),
    ("DS15-GCaMP6s-m-V1/CAttached_Theis16_set3_GCaMP6s_V1_cell_1_corrected_mini.mat", "c1f0d19e05a0beb1b662df008a33dcb7c84ba8d574fdad8315b53d0928b7d868"),
    ("DS15-GCaMP6s-m-V1/CAttached_Theis16_set3_GCaMP6s_V1_cell_2_corrected_mini.mat", "68f602b7393497f556ee8374d610c7377458737140620dcd9bfb333eeeda2cf6"),
    ("DS15-GCaMP6s-m-V1/CAttached_Theis16_set3_GCaMP6s_V1_cell_3_corrected_mini.mat", "a058f39bf559c635ba7cbc9f5749fb854af1408b00a2df08bdbffc0e88b2cd75"),
    ("DS27-GCaMP6f-m-PV-vivo-V1/CAttachedPVCamp01_cell_01_gratings01_mini.mat", "552a7ecfa2b00abf670255108a512df4f539e6a10d592fc2f5860587333bba56"),
    ("DS27-GCaMP6f-m-PV-vivo-V1/CAttachedPVCamp12_Cell01_VR02_mini.mat", "4ef9cd061f7bcb369df1b322a8911f3cedf01e28da437c6c94c52de65d770fd8"),
    ("DS27-GCaMP6f-m-PV-vivo-V1/CAttachedPVCamp12_Cell03_VR01_real_mini.mat", "564ad142db45ee75e3a26336c9e0903b71c59267737233c42c6c1779c94d1952"),
    ("DS27-GCaMP6f-m-PV-vivo-V1/CAttachedPVCamp13_Cell01_VR01_mini.mat", "86ad33f03de219a08bc22a08bf25177e6ebe41189606923b420b979ab1f2b43e"),
    ("DS29-GCaMP7f-m-V1/CAttached_jGCaMP7f_471991_1_mini.mat", "8ed251bfc7922382e788530daf2b419473c66d23e6d5df6be48d3b130d115678"),
    ("DS29-GCaMP7f-m-V1/CAttached_jGCaMP7f_471991_2_mini.mat", "a30043cbb478e2772d63547e76a2581a0ab35cc97b20acb18aa661b235ffb462"),
    ("DS29-GCaMP7f-m-V1/CAttached_jGCaMP7f_471991_3_mini.mat", "645863457674423d35db906d8dd1a86be47021f24bd6839f1fe4eb6461942dd3"),
    ("DS29-GCaMP7f-m-V1/CAttached_jGCaMP7f_471991_4_mini.mat", "e1c980712ab01d63351c49a501e91e5564d90899f8be82122a1d8c54e6f7ec12"),
    ("DS29-GCaMP7f-m-V1/CAttached_jGCaMP7f_478347_1_mini.mat", "e793771245a31d5fb58016c97b2e7f43a53f42841b9a63fda30c20c3aa86d43a"),
    ("DS30-GCaMP8f-m-V1/CAttached_jGCaMP8f_471994_2_mini.mat", "c6d8357788076072906c98d2df891fd28b7f39b3706c4ba776773c2469bf5ce4"),
    ("DS30-GCaMP8f-m-V1/CAttached_jGCaMP8f_471994_3_mini.mat", "77c92e4340c21bb9c11278b297bb2fcd22bff7e604f8f64543c22604c4c63ff8"),
    ("DS30-GCaMP8f-m-V1/CAttached_jGCaMP8f_471994_4_mini.mat", "0375f68025850b427895a03be8fcd8caf7c09d5f0d18d7d484af958f233f6ef3"),
    ("DS30-GCaMP8f-m-V1/CAttached_jGCaMP8f_471994_6_mini.mat", "863f55cee7d458ae0efc0377d128230d0903f2bf057d455e0357746cb3a05b6a"),
    ("DS30-GCaMP8f-m-V1/CAttached_jGCaMP8f_478342_1_mini.mat", "fe888e77488044002506ec034aeb951bd014dca3874d470a8bedb913c0921691"),
    ("DS31-GCaMP8m-m-V1/CAttached_jGCaMP8m_472179_2_mini.mat", "fdefb94aabb1e32a643e032833de8292a14bbbf899a34e86721d7d635d014a45"),
    ("DS31-GCaMP8m-m-V1/CAttached_jGCaMP8m_472179_4_mini.mat", "b175b0ceebccf7412aa863de255da095242d0bee36026de4542ec4db84e7a5cd"),
    ("DS31-GCaMP8m-m-V1/CAttached_jGCaMP8m_472179_5_mini.mat", "be8a6676cd7fe43c7d969a1def14e232932a42c37d07edf3f699988192cb405a"),
    ("DS31-GCaMP8m-m-V1/CAttached_jGCaMP8m_472180_5_mini.mat", "57e4a51eaf7da6c64218e9827157829eb6cc2e3757c18968f65011f66b13af23"),
    ("DS31-GCaMP8m-m-V1/CAttached_jGCaMP8m_479115_2_mini.mat", "98b1c907660b87357a4296f5bbf65600edfe20986976ecc98ca07ac5ebf98156"),
    ("DS32-GCaMP8s-m-V1/CAttached_jGCaMP8s_472181_4_mini.mat", "d9d7cad25f969d7144307a4d773ffef59085b7bdcd6124af58d129d6b5694a56"),
    ("DS32-GCaMP8s-m-V1/CAttached_jGCaMP8s_472182_2_mini.mat", "f956ab495650acd8005dbb5fe296b6546e385b9f10704061f61a080ee6441b48"),
    ("DS32-GCaMP8s-m-V1/CAttached_jGCaMP8s_472182_4_mini.mat", "f2b26e57080d0cf00d1ef98db8536445da96c68ebb9a439e5204424008cbe7b3"),
    ("DS32-GCaMP8s-m-V1/CAttached_jGCaMP8s_472182_6_mini.mat", "84b9efb9bf87769c1d7bb648bc8dda68846a1c15ab518aa5da55fa83a1f68fbb"),
    ("DS32-GCaMP8s-m-V1/CAttached_jGCaMP8s_472182_9_mini.mat", "44df13500ceb81eeca834a7cfe306402d9a95294c63a320f544c7783604d7cce"),
)


def cache_directory() -> Path:
    """``$CINDRA_DASK_DATA/cascade`` or ``~/.cache/cindra-dask/cascade``."""
    return data_cache.cache_directory("cascade")


def indicator_of(dataset: str) -> str:
    """The indicator named in a CASCADE dataset folder, e.g. "DS30-GCaMP8f-m-V1" → "GCaMP8f"."""
    return dataset.split("-")[1]


def extract_files(repository: Path, raw_directory: Path) -> list[Path]:
    """Copy every file of ``FILES`` out of the git repository and verify its checksum."""
    refuse_reserved_datasets([path.split("/")[0] for path, _ in FILES])
    return data_cache.copy_checked(repository, FILES, source_of=lambda name: f"Ground_truth/{name}", target_of=lambda name: raw_directory / name)


def build_bank(raw_directory: Path, bank_path: Path) -> int:
    """Write the bank of every recording in the listed files; returns the number of recordings."""
    from scipy.io import loadmat

    traces, rates, spikes, datasets, indicators, sources = [], [], [], [], [], []
    for relative, _ in FILES:
        dataset = relative.split("/")[0]
        recordings = loadmat(raw_directory / relative)["CAttached"]
        for index in range(recordings.shape[1]):
            recording = recordings[0, index]
            time_s = np.asarray(recording["fluo_time"][0, 0], np.float64).ravel()
            dff = np.asarray(recording["fluo_mean"][0, 0], np.float64).ravel()
            events_s = np.asarray(recording["events_AP"][0, 0], np.float64).ravel() * 1e-4
            finite = np.isfinite(dff)
            if finite.sum() < 2:
                continue
            # the longest run of finite samples
            edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
            longest = int(np.argmax(edges[1::2] - edges[::2]))
            first, stop = int(edges[2 * longest]), int(edges[2 * longest + 1])
            rate_hz = 1.0 / float(np.median(np.diff(time_s[first:stop])))
            start_s = time_s[first] - 0.5 / rate_hz  # samples stand for the frame centred on fluo_time
            events_s = events_s[np.isfinite(events_s)] - start_s
            events_s = events_s[(events_s >= 0) & (events_s < (stop - first) / rate_hz)]
            traces.append(dff[first:stop])
            rates.append(rate_hz)
            spikes.append(np.sort(events_s))
            datasets.append(dataset)
            indicators.append(indicator_of(dataset))
            sources.append(f"{Path(relative).name}#{index}")
    write_activity_bank(bank_path, dff=traces, source_rate_hz=rates, spike_times_s=spikes, dataset=datasets, indicator=indicators, source=sources)
    return len(traces)


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path, help="CascadeTorch git directory (bare or not)")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: $CINDRA_DASK_DATA/cascade or ~/.cache/cindra-dask/cascade)")
    options = parser.parse_args(arguments)
    cache = options.cache or cache_directory()
    extract_files(options.repository, cache / "raw")
    count = build_bank(cache / "raw", cache / BANK_FILE_NAME)
    print(f"{len(FILES)} files verified; {count} recordings in {cache / BANK_FILE_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
