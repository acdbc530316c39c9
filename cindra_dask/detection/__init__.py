"""ROI detection kernels: temporal binning, summary images, sparse multiscale detection, ROI statistics, denoising.

Every module here holds pure functions on numpy arrays (numba where a loop is hot). The Dask graph
that feeds them from the store lives in ``graph.py``; its task bodies for one plane's ROIs in
``plane.py``; the cell classifier in ``classify.py``.
"""
