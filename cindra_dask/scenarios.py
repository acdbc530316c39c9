"""Named, seeded simulator scenarios: the accuracy bench's sweep (issue 24, item 1).

Each `Scenario` is plain data: `SimulationParameters` overrides on top of `SCENARIO_BASE`, the
true indicator decay, the decay a user would configure when it is 30 % wrong, and (for two
presets) the CASCADE datasets whose real dF/F and spikes are planted instead of the AR(1) model.
The presets are small enough that the whole pipeline runs in about half a minute on two cores
(``benchmarks/accuracy/bench_scenarios.py`` runs them all; its README has the table of presets).

`scenario_parameters` turns a preset into `SimulationParameters`; `write_scenario` writes its
TIFFs with `cindra_dask.simulate.write_recording`, adds a uint16 offset where the preset asks for
one and, for real dynamics, cuts the bank down to the preset's datasets first. Importing this
module does nothing.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Mapping, NamedTuple

import numpy as np

from cindra_dask.simulate import SimulationParameters, write_recording
from cindra_dask.simulate.bank import write_bank_subset

REAL_DYNAMICS_BANK_FILE_NAME = "activity_bank.npz"


class Scenario(NamedTuple):
    """One preset of the sweep.

    Attributes
    ----------
    description : what the preset stresses, one line.
    overrides : `SimulationParameters` fields set on top of `SCENARIO_BASE` (never ``tau_s``
        nor ``activity_bank_path``: those come from the fields below).
    true_tau_s : the planted calcium decay, s (``tau_s``); for real dynamics the indicator's
        nominal decay, the figure a user would configure.
    wrong_tau_s : the configured ``main.tau`` of the "30 % wrong" case, s (1.3 × the true one).
    bank_datasets : CASCADE datasets (names in the bank's ``dataset`` column) whose real dF/F and
        spike trains are planted; empty: the simulator's AR(1) model.
    uint16_offset_counts : when set, the pages are written as uint16 = the simulated int16 pages
        + this constant (an electronic offset: no shot noise, negative read noise kept), as
        PMT/ADC data arrive; None: the pages as simulated.
    """

    description: str
    overrides: Mapping[str, object]
    true_tau_s: float
    wrong_tau_s: float
    bank_datasets: tuple[str, ...] = ()
    uint16_offset_counts: int | None = None


SCENARIO_BASE: Mapping[str, object] = MappingProxyType(
    {"frame_height": 256, "frame_width": 256, "frame_count": 1000, "cell_count": 120, "non_cell_count": 30, "file_count": 2}
)
"""Overrides shared by every preset (a 256² × 1 000-frame field, the simulator's cell densities)."""


def _scenario(description: str, true_tau_s: float, *, bank_datasets: tuple[str, ...] = (), uint16_offset_counts: int | None = None, **overrides: object) -> Scenario:
    return Scenario(description, MappingProxyType(overrides), true_tau_s, round(1.3 * true_tau_s, 3), bank_datasets, uint16_offset_counts)


SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {
        "default": _scenario("the simulator's defaults, 256² × 1 000 frames at 30 Hz", 1.0, seed=101),
        "dim_quiet": _scenario(
            "dim, quiet cells: 20 photons/px at rest spread over a decade (log-normal σ 0.7), 0.2 dF/F per spike (±60 %), 0.1 Hz",
            1.0,
            seed=102,
            baseline_photons=20.0,
            brightness_jitter=0.7,
            spike_amplitude_dff=0.2,
            spike_amplitude_jitter=0.6,
            spike_rate_hz=0.1,
        ),
        "short_7hz": _scenario("a short clip: 200 frames at 7 Hz, tau 0.4 s (tau·fs ≈ 3: short, few bins)", 0.4, seed=103, frame_rate_hz=7.0, frame_count=200, file_count=1),
        "fast_60hz": _scenario("60 Hz, 1 200 frames (20 s), tau 0.7 s", 0.7, seed=104, frame_rate_hz=60.0, frame_count=1200),
        "slow_tau_1p5": _scenario("slow indicator: tau 1.5 s at 30 Hz", 1.5, seed=105),
        "small_cells_7px": _scenario("small somata, 7 px diameter, 160 per 256²", 1.0, seed=106, cell_diameter_px=7.0, cell_count=160),
        "large_cells_18px": _scenario("large somata, 18 px diameter, 60 per 256²", 1.0, seed=107, cell_diameter_px=18.0, cell_count=60, non_cell_count=20),
        "dense_512": _scenario(
            "a 512² field with 360 somata and 90 non-somatic sources, 400 frames", 1.0, seed=108, frame_height=512, frame_width=512, frame_count=400, cell_count=360, non_cell_count=90, file_count=1
        ),
        "uint16_offset_low_photons": _scenario(
            "uint16 pages with a 100-count offset, low photon counts (15 photons/px at rest, neuropil 8, background 2)",
            1.0,
            seed=109,
            uint16_offset_counts=100,
            baseline_photons=15.0,
            neuropil_photons=8.0,
            background_photons=2.0,
        ),
        "strong_neuropil": _scenario("strong, structured neuropil: 90 photons/px at rest (3× the default, 1.5× the somata's 60), activity coupling 0.6", 1.0, seed=110, neuropil_photons=90.0, neuropil_coupling=0.6),
        "real_dynamics_gcamp6f": _scenario(
            "real GCaMP6f dF/F + ephys spikes (CASCADE DS06, DS27) planted; 128² × 1 500 frames at 30 Hz, 40 somata",
            0.7,
            bank_datasets=("DS06-GCaMP6f-zf-aDp", "DS27-GCaMP6f-m-PV-vivo-V1"),
            seed=111,
            frame_height=128,
            frame_width=128,
            frame_count=1500,
            cell_count=40,
            non_cell_count=5,
        ),
        "real_dynamics_gcamp6s": _scenario(
            "real GCaMP6s dF/F + ephys spikes (CASCADE DS13–DS15) planted; 128² × 1 500 frames at 30 Hz, 40 somata",
            1.7,
            bank_datasets=("DS13-GCaMP6s-m-V1-neuropil-corrected", "DS14-GCaMP6s-m-V1", "DS15-GCaMP6s-m-V1"),
            seed=112,
            frame_height=128,
            frame_width=128,
            frame_count=1500,
            cell_count=40,
            non_cell_count=5,
        ),
    }
)
"""The presets by name (the README in ``benchmarks/accuracy/`` tabulates them)."""


def scenario_parameters(name: str, *, activity_bank_path: Path | str | None = None) -> SimulationParameters:
    """The `SimulationParameters` of preset ``name``.

    ``activity_bank_path`` is required for (and only used by) the real-dynamics presets: a bank
    holding only the preset's datasets (`write_scenario` cuts one).
    """
    scenario = SCENARIOS[name]
    values: dict[str, object] = {**SCENARIO_BASE, **scenario.overrides, "tau_s": scenario.true_tau_s}
    if scenario.bank_datasets:
        if activity_bank_path is None:
            raise ValueError(f"scenario {name!r} plants real dynamics: give activity_bank_path (a bank of {', '.join(scenario.bank_datasets)})")
        values["activity_bank_path"] = str(activity_bank_path)
    return SimulationParameters(**values)


def _add_uint16_offset(directory: Path, offset_counts: int) -> None:
    """Rewrite every ``*.tif`` in ``directory`` as uint16 pages + ``offset_counts`` (clipped to uint16)."""
    import tifffile

    for path in sorted(directory.glob("*.tif")):
        pages = tifffile.imread(path)
        shifted = np.clip(pages.astype(np.int32) + offset_counts, 0, np.iinfo(np.uint16).max).astype(np.uint16)
        with tifffile.TiffWriter(path, bigtiff=shifted.nbytes > 2**31) as writer:
            writer.write(shifted, contiguous=True, photometric="minisblack", metadata=None)


def write_scenario(name: str, directory: Path | str, *, bank_path: Path | str | None = None) -> Path:
    """Write preset ``name``'s recording (TIFFs, ``cindra_parameters.json``, ``ground_truth.npz``) to ``directory``.

    ``bank_path``: the full activity bank (``benchmarks/accuracy/fetch_cascade.py``), needed by
    the real-dynamics presets; their datasets are copied to ``directory/activity_bank.npz``, the
    file the truth's parameters name. Returns ``directory``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    scenario = SCENARIOS[name]
    subset = None
    if scenario.bank_datasets:
        if bank_path is None or not Path(bank_path).exists():
            raise FileNotFoundError(f"scenario {name!r} needs the CASCADE activity bank (run benchmarks/accuracy/fetch_cascade.py); not found: {bank_path}")
        subset = write_bank_subset(bank_path, scenario.bank_datasets, directory / REAL_DYNAMICS_BANK_FILE_NAME)
    write_recording(scenario_parameters(name, activity_bank_path=subset), directory)
    if scenario.uint16_offset_counts is not None:
        _add_uint16_offset(directory, scenario.uint16_offset_counts)
    return directory
