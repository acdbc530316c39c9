"""Serving the viewer: a bokeh server on localhost, the application behind a random token in its URL path.

Only the URL ``http://localhost:<port>/<token>`` serves the viewer; the server has no index page
(``/`` is a 404, so the token is never listed) and binds 127.0.0.1 only, so other machines reach it
through an SSH tunnel (``ssh -N -L <port>:localhost:<port> <host>``: the same port on both ends, as
bokeh accepts WebSocket connections only from pages at ``localhost:<port>``).
"""

from __future__ import annotations

import functools
import secrets
from pathlib import Path
from typing import Any, NamedTuple

from cindra_dask.store import RecordingStore, open_existing_store

ADDRESS = "127.0.0.1"
TOKEN_BYTES = 24


class RunningViewer(NamedTuple):
    """A started viewer server.

    Attributes
    ----------
    url : where the viewer is, token included.
    port : the local port it listens on (the one asked for, or the free one picked for port 0).
    server : the `bokeh.server.server.Server`; ``server.run_until_shutdown()`` serves until Ctrl-C / SIGTERM.
    """

    url: str
    port: int
    server: Any


def start_viewer(store_path: RecordingStore | Path | str, *, port: int, token: str | None = None) -> RunningViewer:
    """Start (not yet run) a bokeh server showing the viewer of a store.

    Parameters
    ----------
    store_path : a recording store.
    port : local TCP port; 0 picks a free one.
    token : the URL path segment that opens the viewer (URL-safe text); None draws a random one.

    Raises
    ------
    OutputError : not a store (checked before anything listens).
    """
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    from cindra_dask.view.app import build_viewer

    store = open_existing_store(store_path)
    token = token or secrets.token_urlsafe(TOKEN_BYTES)
    application = Application(FunctionHandler(functools.partial(build_viewer, store=store)))
    server = Server({f"/{token}": application}, address=ADDRESS, port=port, use_index=False)
    server.start()
    return RunningViewer(f"http://localhost:{server.port}/{token}", int(server.port), server)
