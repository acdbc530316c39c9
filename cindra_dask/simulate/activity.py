"""Activity of the sources: bursty spike trains and their AR(1) calcium, real segments from an
activity bank, and the neuropil's multiplicative activity."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.signal import lfilter

from cindra_dask.simulate.bank import ActivityBank
from cindra_dask.simulate.fields import smooth_noise, standardized
from cindra_dask.simulate.parameters import SimulationParameters

LOWEST_PLANTED_DFF = -0.9


class _Activity(NamedTuple):
    spikes: np.ndarray
    calcium: np.ndarray


def simulate_activity(rng: np.random.Generator, parameters: SimulationParameters, source_count: int) -> _Activity:
    """Bursty, weakly correlated spike trains and their AR(1) calcium (dF/F)."""
    frame_count = parameters.frame_count
    sampling_hz = parameters.plane_frame_rate_hz
    rates = parameters.spike_rate_hz * rng.gamma(4.0, 0.25, source_count)
    rates[rng.random(source_count) < parameters.silent_fraction] = 0.0
    shared = smooth_noise(rng, (1, frame_count), 2.0 * sampling_hz)
    private = smooth_noise(rng, (source_count, frame_count), 2.0 * sampling_hz)
    modulation_sigma = 0.7
    drive = math.sqrt(0.3) * shared + math.sqrt(0.7) * private
    modulation = np.exp(modulation_sigma * drive - 0.5 * modulation_sigma**2)
    spikes = rng.poisson(rates[:, None] / sampling_hz * modulation).astype(np.float64)
    source_index, frame_index = np.nonzero(spikes)
    counts = spikes[source_index, frame_index].astype(int)
    amplitudes = parameters.spike_amplitude_dff * np.clip(1.0 + parameters.spike_amplitude_jitter * rng.standard_normal(counts.sum()), 0.2, None)
    increments = np.zeros_like(spikes)
    np.add.at(increments, (np.repeat(source_index, counts), np.repeat(frame_index, counts)), amplitudes)
    decay = math.exp(-1.0 / (parameters.tau_s * sampling_hz))
    calcium = lfilter([1.0], [1.0, -decay], increments, axis=1)
    return _Activity(spikes.astype(np.float32), calcium.astype(np.float32))


def bank_activity(rng: np.random.Generator, simulated: _Activity, bank: ActivityBank) -> _Activity:
    """Replace every spiking source's activity by a bank segment (drawn without replacement while the
    bank lasts): its real spike counts and its real dF/F, floored at ``LOWEST_PLANTED_DFF`` so photons
    stay positive. Sources the AR(1) model left silent stay silent."""
    spiking = np.flatnonzero(simulated.spikes.sum(axis=1) > 0)
    if len(spiking) and len(bank.dff) == 0:
        raise ValueError("the activity bank has no segment as long as the recording (frame_count at the per-plane rate)")
    chosen = rng.choice(len(bank.dff), size=len(spiking), replace=len(spiking) > len(bank.dff)) if len(spiking) else np.zeros(0, np.int64)
    spikes, calcium = simulated.spikes.copy(), simulated.calcium.copy()
    spikes[spiking] = bank.spikes[chosen]
    calcium[spiking] = np.maximum(bank.dff[chosen], LOWEST_PLANTED_DFF)
    return _Activity(spikes, calcium)


def simulate_neuropil_activity(rng: np.random.Generator, parameters: SimulationParameters, mode_weights: np.ndarray, calcium: np.ndarray) -> np.ndarray:
    """(M, T) multiplicative neuropil activity: slow fluctuations mixed with the local sources' calcium."""
    slow = smooth_noise(rng, (len(mode_weights), parameters.frame_count), parameters.tau_s * parameters.plane_frame_rate_hz)
    local = standardized(mode_weights @ calcium.astype(np.float64), axis=-1) if len(calcium) else np.zeros_like(slow)
    mixed = standardized(0.6 * slow + 0.4 * local, axis=-1)
    return np.clip(parameters.neuropil_coupling * mixed, -0.8, None).astype(np.float32)
