"""Cell and neuropil fluorescence of a chunk of frames (cindra §3.6 "Traces").

This is what one Dask task runs on one frame chunk: [F; Fneu] = [W_cell; W_neuropil] · X with X the
chunk reshaped to (Ly·Lx, T), one sparse product. A numba kernel computes it reading each frame
row-major (no transposed copy of the chunk, any input dtype) and accumulating in float64; frames are
independent, so chunk results concatenate exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from scipy.sparse import vstack

from cindra_dask.extraction.masks import ExtractionMasks


class Traces(NamedTuple):
    """Fluorescence of n ROIs over T frames.

    Attributes
    ----------
    cell_fluorescence : (n, T) float32, λ-weighted ROI sum (λ normalised to 1), frame intensity units.
    neuropil_fluorescence : (n, T) float32, mean over the neuropil mask (0 for an empty mask).
    """

    cell_fluorescence: np.ndarray
    neuropil_fluorescence: np.ndarray


@numba.njit(cache=True)
def _sparse_rows_times_frames(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray, frames_2d: np.ndarray, output: np.ndarray) -> None:  # pragma: no cover - numba
    """output[row, t] = Σ_k weights[k] · frames_2d[t, indices[k]] over the CSR row's entries k."""
    for t in range(frames_2d.shape[0]):
        frame = frames_2d[t]
        for row in range(indptr.size - 1):
            total = 0.0
            for entry in range(indptr[row], indptr[row + 1]):
                total += weights[entry] * frame[indices[entry]]
            output[row, t] = total


def extract_traces(frames: np.ndarray, *, masks: ExtractionMasks) -> Traces:
    """Cell and neuropil fluorescence of every ROI in a chunk of frames.

    Parameters
    ----------
    frames : (T, Ly, Lx) any real dtype (raw integers or registered float32).
    masks : `ExtractionMasks` of the plane, matrices (n, Ly·Lx).

    Returns
    -------
    Traces with (n, T) float32 arrays.
    """
    frame_count = frames.shape[0]
    frames_2d = np.ascontiguousarray(frames.reshape(frame_count, -1))
    pixel_count = masks.cell_weights.shape[1]
    if frames_2d.shape[1] != pixel_count:
        raise ValueError(f"frames have {frames_2d.shape[1]} pixels but the masks expect {pixel_count}")
    roi_count = masks.cell_weights.shape[0]
    stacked = vstack([masks.cell_weights, masks.neuropil_weights], format="csr")
    fluorescence = np.empty((2 * roi_count, frame_count), dtype=np.float32)
    _sparse_rows_times_frames(stacked.indptr.astype(np.int64), stacked.indices.astype(np.int64), stacked.data.astype(np.float32), frames_2d, fluorescence)
    return Traces(fluorescence[:roi_count], fluorescence[roi_count:])
