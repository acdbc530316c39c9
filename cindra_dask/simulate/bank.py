"""A bank of real dF/F recordings and their electrophysiological spike trains, for the simulator.

The simulator's own activity model is AR(1) calcium of its spikes, the model OASIS inverts; a bank
of real recordings (the CASCADE ground truth: simultaneous juxtacellular ephys and imaging,
``benchmarks/accuracy/fetch_cascade.py`` builds it) lets it plant dynamics nobody here wrote.

Bank file (``np.savez_compressed``, no pickles; m recordings, each at its own sampling rate)::

    dff             (Σ n_i,) f4   dF/F samples of every recording, one after the other
    dff_offsets     (m+1,) i8     recording i owns dff[dff_offsets[i]:dff_offsets[i+1]]
    source_rate_hz  (m,) f8       sampling rate of each recording, Hz
    spike_times_s   (Σ k_i,) f8   spike times, s, from the start of the recording's first sample
    spike_offsets   (m+1,) i8     recording i owns spike_times_s[spike_offsets[i]:spike_offsets[i+1]]
    dataset         (m,) str      e.g. "DS30-GCaMP8f-m-V1"
    indicator       (m,) str      e.g. "GCaMP8f"
    source          (m,) str      file and recording index it came from

Sample j of a recording sampled at f Hz stands for the interval [j/f, (j+1)/f). Resampling to a
frame rate averages that piecewise-constant signal over each output frame (an exact box filter:
the anti-aliasing average when downsampling, sample-and-hold when upsampling); spikes are counted
in the frame they fall in, so every spike inside the resampled duration is kept.

Datasets DS09, DS10 and DS11 are kept aside for independent checks: a bank holding any of them
is refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

RESERVED_DATASET_PATTERN = re.compile(r"DS(09|10|11)(?!\d)")


class ResampledRecording(NamedTuple):
    """One recording on a regular frame grid.

    Attributes
    ----------
    dff : (T,) float32 dF/F averaged over each frame.
    spikes : (T,) float32 spike count per frame.
    """

    dff: np.ndarray
    spikes: np.ndarray


class ActivityBank(NamedTuple):
    """k real activity segments of equal length at one frame rate.

    Attributes
    ----------
    dff : (k, T) float32 dF/F.
    spikes : (k, T) float32 spike count per frame.
    dataset, indicator, source : (k,) str of the recording each segment was cut from.
    recording_index : (k,) int64 row of that recording in the bank file.
    frame_rate_hz : the frame rate, Hz.
    """

    dff: np.ndarray
    spikes: np.ndarray
    dataset: np.ndarray
    indicator: np.ndarray
    source: np.ndarray
    recording_index: np.ndarray
    frame_rate_hz: float


def refuse_reserved_datasets(datasets: Sequence[str]) -> None:
    """Raise ValueError if any name is one of the datasets kept aside (DS09, DS10, DS11)."""
    reserved = sorted({str(name) for name in datasets if RESERVED_DATASET_PATTERN.search(str(name))})
    if reserved:
        raise ValueError(f"datasets {reserved} are kept aside for independent checks (DS09, DS10, DS11) and must not be used")


def resample_recording(dff: np.ndarray, spike_times_s: np.ndarray, *, source_rate_hz: float, frame_rate_hz: float) -> ResampledRecording:
    """Average a recording over frames of ``frame_rate_hz`` and count its spikes per frame.

    Parameters
    ----------
    dff : (n,) dF/F sampled at ``source_rate_hz`` (sample j covers [j/f, (j+1)/f) s).
    spike_times_s : (k,) spike times, s, on the same clock (0 = start of sample 0).
    source_rate_hz, frame_rate_hz : input and output rates, Hz.

    Returns
    -------
    `ResampledRecording` of T = ⌊n · frame_rate_hz / source_rate_hz⌋ frames; spikes outside
    [0, T / frame_rate_hz) are dropped.
    """
    dff = np.asarray(dff, np.float64)
    frame_count = int(np.floor(len(dff) * frame_rate_hz / source_rate_hz + 1e-9))
    source_edges_s = np.arange(len(dff) + 1) / source_rate_hz
    integral = np.concatenate([[0.0], np.cumsum(dff) / source_rate_hz])
    frame_edges_s = np.arange(frame_count + 1) / frame_rate_hz
    averaged = np.diff(np.interp(frame_edges_s, source_edges_s, integral)) * frame_rate_hz
    frames = np.floor(np.asarray(spike_times_s, np.float64) * frame_rate_hz).astype(np.int64)
    frames = frames[(frames >= 0) & (frames < frame_count)]
    return ResampledRecording(averaged.astype(np.float32), np.bincount(frames, minlength=frame_count).astype(np.float32))


def write_activity_bank(
    path: Path | str,
    *,
    dff: Sequence[np.ndarray],
    source_rate_hz: Sequence[float],
    spike_times_s: Sequence[np.ndarray],
    dataset: Sequence[str],
    indicator: Sequence[str],
    source: Sequence[str],
) -> Path:
    """Write m recordings as a bank file (layout in the module docstring); returns ``path``.

    Parameters
    ----------
    dff : m arrays (n_i,) dF/F.
    source_rate_hz : (m,) sampling rates, Hz.
    spike_times_s : m arrays (k_i,) spike times, s, from the start of sample 0.
    dataset, indicator, source : (m,) names.
    """
    refuse_reserved_datasets(dataset)
    count = len(dff)
    if not (len(source_rate_hz) == len(spike_times_s) == len(dataset) == len(indicator) == len(source) == count):
        raise ValueError("every per-recording sequence must have one entry per recording")
    path = Path(path)
    with open(path, "wb") as handle:
        np.savez_compressed(
            handle,
            dff=np.concatenate([np.asarray(trace, np.float32) for trace in dff]) if count else np.zeros(0, np.float32),
            dff_offsets=np.concatenate([[0], np.cumsum([len(trace) for trace in dff])]).astype(np.int64),
            source_rate_hz=np.asarray(source_rate_hz, np.float64),
            spike_times_s=np.concatenate([np.asarray(times, np.float64) for times in spike_times_s]) if count else np.zeros(0),
            spike_offsets=np.concatenate([[0], np.cumsum([len(times) for times in spike_times_s])]).astype(np.int64),
            dataset=np.asarray(dataset, str),
            indicator=np.asarray(indicator, str),
            source=np.asarray(source, str),
        )
    return path


def load_activity_bank(path: Path | str, *, frame_rate_hz: float, segment_frames: int, datasets: Sequence[str] | None = None) -> ActivityBank:
    """Every recording of a bank file resampled to ``frame_rate_hz`` and cut into segments.

    Parameters
    ----------
    path : bank file (`write_activity_bank`).
    frame_rate_hz : output frame rate, Hz (`resample_recording`).
    segment_frames : frames per segment; each recording gives ⌊T_i / segment_frames⌋
        consecutive, non-overlapping segments (its remainder is dropped).
    datasets : keep only these datasets (None: all).

    Returns
    -------
    `ActivityBank` of k segments (k may be 0), in bank order.
    """
    if segment_frames < 1:
        raise ValueError(f"segment_frames must be ≥ 1, got {segment_frames}")
    with np.load(Path(path), allow_pickle=False) as archive:
        bank = {name: archive[name] for name in archive.files}
    refuse_reserved_datasets(bank["dataset"])
    dff_parts, spike_parts, rows = [], [], []
    for row in range(len(bank["dataset"])):
        if datasets is not None and bank["dataset"][row] not in datasets:
            continue
        recording = resample_recording(
            bank["dff"][bank["dff_offsets"][row] : bank["dff_offsets"][row + 1]],
            bank["spike_times_s"][bank["spike_offsets"][row] : bank["spike_offsets"][row + 1]],
            source_rate_hz=float(bank["source_rate_hz"][row]),
            frame_rate_hz=frame_rate_hz,
        )
        pieces = len(recording.dff) // segment_frames
        usable = pieces * segment_frames
        dff_parts.append(recording.dff[:usable].reshape(pieces, segment_frames))
        spike_parts.append(recording.spikes[:usable].reshape(pieces, segment_frames))
        rows.extend([row] * pieces)
    index = np.asarray(rows, np.int64)
    return ActivityBank(
        dff=np.concatenate(dff_parts) if dff_parts else np.zeros((0, segment_frames), np.float32),
        spikes=np.concatenate(spike_parts) if spike_parts else np.zeros((0, segment_frames), np.float32),
        dataset=bank["dataset"][index],
        indicator=bank["indicator"][index],
        source=bank["source"][index],
        recording_index=index,
        frame_rate_hz=float(frame_rate_hz),
    )


def write_bank_subset(bank_path: Path | str, datasets: tuple[str, ...], path: Path | str) -> Path:
    """Write the recordings of ``datasets`` from the bank at ``bank_path`` to a new bank file ``path``."""
    with np.load(Path(bank_path), allow_pickle=False) as archive:
        bank = {name: archive[name] for name in archive.files}
    keep = np.flatnonzero(np.isin(bank["dataset"], datasets))
    missing = sorted(set(datasets) - set(bank["dataset"][keep].tolist()))
    if missing:
        raise ValueError(f"datasets {missing} are not in the bank {bank_path}")

    def part(values: str, offsets: str, row: int) -> np.ndarray:
        return bank[values][bank[offsets][row] : bank[offsets][row + 1]]

    return Path(
        write_activity_bank(
            Path(path),
            dff=[part("dff", "dff_offsets", row) for row in keep],
            source_rate_hz=bank["source_rate_hz"][keep],
            spike_times_s=[part("spike_times_s", "spike_offsets", row) for row in keep],
            dataset=bank["dataset"][keep],
            indicator=bank["indicator"][keep],
            source=bank["source"][keep],
        )
    )
