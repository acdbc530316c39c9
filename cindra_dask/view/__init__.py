"""`cindra-dask view`: an interactive viewer of a recording store in the browser (a bokeh server).

`cindra_dask.view.data` reads the store (lazily: traces by ROI row, frames by stored chunk),
`cindra_dask.view.app` builds one bokeh document per browser session, `cindra_dask.view.server`
serves it on localhost behind a token in the URL.
"""
