"""Multi-recording tracking (cindra §4): ROI selection, diffeomorphic demons into a common space,
clustering into tracked cells with a confidence, templates projected back into every recording.

``select``, ``demons``, ``tracking`` and ``projection`` hold pure functions on numpy arrays (numba
where a loop is hot); ``graph`` builds the Dask graphs and runs the ``discover`` and ``extract``
phases (`cindra_dask.multirecording.graph.run_multi_recording`); ``export`` writes tracked cells ×
recordings to one table.
"""
