"""The runner: the step tables, the one skip-or-run loop, preflight, execution and progress events.

The only package that computes: stages return plans (`cindra_dask.runner.plans`), the runner's
`Executor` runs them on a Dask client. Public entry points are re-exported by
`cindra_dask.pipeline` for notebooks.
"""
