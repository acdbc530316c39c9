"""The MCP server (`cindra-dask mcp`): the pipeline's configure, validate, run, status, query and export
functions as Model Context Protocol tools, for AI agents.

A thin layer over the runner, the store and the exports (it computes nothing of its own): `roots`
confines every path to the roots the server was started with, `runs` runs configurations in the
background, `models` types every tool's result, `server` declares the tools. Needs the ``mcp`` extra.
"""
