"""cindra-dask: calcium-imaging pipeline (suite2p/cindra algorithms) as Dask graphs over Zarr stores."""

__version__ = "0.1.0"
