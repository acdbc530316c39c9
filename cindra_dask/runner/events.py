"""How a run reports what it does: the runner calls these hooks; the CLI renders them, notebooks log them.

Nothing below the CLI prints. `LoggingEvents` (the default) sends every message to the
``cindra_dask`` logger; the CLI passes its own renderer (messages and progress bars on standard
error, line-by-line in a SLURM log; the MCP server keeps them for its run status); both follow a
computation's tasks with `follow_progress`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol

LOGGER_NAME = "cindra_dask"


class RunEvents(Protocol):
    """Hooks a run calls: plain messages, and each computation it submits."""

    def message(self, text: str) -> None:
        """One line about the run (a step skipped or done, the cluster started)."""

    def computing(self, label: str, future: Any, client: Any) -> None:
        """A computation was submitted; may block until ``future`` is done (a progress bar)."""


class LoggingEvents:
    """Messages to the ``cindra_dask`` logger at INFO; computations are not watched."""

    def __init__(self) -> None:
        self._logger = logging.getLogger(LOGGER_NAME)

    def message(self, text: str) -> None:
        self._logger.info(text)

    def computing(self, label: str, future: Any, client: Any) -> None:
        self._logger.info("computing %s", label)


def follow_progress(future: Any, client: Any, *, interval: str, update: Callable[[int, int, float], None], stop: Callable[[int, str, float], None]) -> None:
    """Block until ``future``'s tasks on ``client``'s scheduler are done (distributed's progress bar, drawing
    nothing itself): ``update(remaining, total, elapsed_s)`` every ``interval`` ("1s"), ``stop(total, status, elapsed_s)``
    at the end (status "finished", "error" or "cancelled")."""
    from distributed.diagnostics.progressbar import TextProgressBar

    class Progress(TextProgressBar):
        def _draw_bar(self, remaining: int, all: int, **kwargs: Any) -> None:  # noqa: A002 - distributed's keyword
            update(remaining, all, self.elapsed)

        def _draw_stop(self, remaining: int, all: int, status: str, **kwargs: Any) -> None:  # noqa: A002
            stop(all, status, self.elapsed)

    Progress([future], scheduler=client.scheduler.address, interval=interval)
