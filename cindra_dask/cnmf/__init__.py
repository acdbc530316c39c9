"""CNMF source extraction (Pnevmatikakis et al. 2016; CaImAn, Giovannucci et al. 2019): kernels.

A patch of the registered movie is modelled as Y ≈ A·C + b·f: non-negative footprints A (pixels × K)
with activity C (K × T), and a non-negative low-rank background b (pixels × nb), f (nb × T).
``initialization`` finds the components greedily, ``updates`` refines A, C, b, f by hierarchical
alternating least squares (HALS) from the sufficient statistics of the data (so a graph can stream
Y by time chunks), ``merging`` joins components that are one cell, ``evaluation`` scores each
component (trace SNR from event exceptionality, spatial consistency with the raw data).
``one_photon`` is CNMF-E (Zhou et al. 2018) for one-photon data: the correlation × peak-to-noise
initialisation and the ring-model background that replaces b·f; ``patch`` fits one patch either way,
``components`` assembles the field from the patches.
"""
