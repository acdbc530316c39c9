"""Signal extraction kernels (cindra §3.6–3.7): ROI and neuropil masks, fluorescence traces per frame
chunk, neuropil subtraction and baselines, OASIS deconvolution and channel-2 colocalization.

Every module here holds pure functions on numpy arrays; `cindra_dask.extraction.graph` turns them into
Dask graphs (masked extraction over frame chunks, baseline + OASIS over ROI chunks).
"""
