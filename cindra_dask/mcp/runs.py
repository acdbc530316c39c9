"""Runs in the background: each configuration runs in its own thread through `cindra_dask.pipeline.run_configuration`,
on the LocalCluster of its ``cluster`` section or the scheduler it names, and reports into a `RunRecord`.

Cancelling cancels the computation in flight (the step stays incomplete in the store, as after a
killed run, so the next run redoes it) and stops the run at its next message; the store's lock is
released as the runner's own cleanup runs.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from cindra_dask.config import Configuration
from cindra_dask.errors import CindraError
from cindra_dask.runner.events import LOGGER_NAME, follow_progress

MESSAGES_KEPT = 200
"""Messages a run keeps (the latest)."""


class ThreadWarnings:
    """Routes the warnings of a thread that asked for them (`collect`) to its sink; other threads' go where
    they went before (standard error). Tools and runs share one process, each in its own thread, so
    ``warnings.catch_warnings`` (process-wide) cannot tell them apart."""

    def __init__(self) -> None:
        self._sinks: dict[int, Callable[[str], None]] = {}
        self._shown = warnings.showwarning

    def install(self) -> None:
        """Take over ``warnings.showwarning``, each warning shown every time (a second validation warns again)."""
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = self._show

    def _show(self, message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        sink = self._sinks.get(threading.get_ident())
        if sink is None:
            self._shown(message, category, filename, lineno, file, line)
        else:
            sink(f"warning: {message}")

    @contextlib.contextmanager
    def collect(self, sink: Callable[[str], None]) -> Iterator[None]:
        """While inside, this thread's warnings go to ``sink`` (as ``warning: <message>``)."""
        self._sinks[threading.get_ident()] = sink
        try:
            yield
        finally:
            del self._sinks[threading.get_ident()]


class RunCancelled(Exception):
    """Raised inside a run's thread once it was asked to stop."""


class RunRecord:
    """What one background run did so far; updated by its thread, read by the tools under ``lock``."""

    def __init__(self, *, run_id: str, configuration_path: Path, store_paths: tuple[Path, ...]) -> None:
        self.run_id = run_id
        self.configuration_path = configuration_path
        self.store_paths = store_paths
        self.state = "running"
        self.started = _now()
        self.started_s = time.monotonic()
        self.finished: str | None = None
        self.duration_s: float | None = None
        self.messages: collections.deque[str] = collections.deque(maxlen=MESSAGES_KEPT)
        self.errors: list[str] = []
        self.computing_label: str | None = None
        self.tasks_done = 0
        self.tasks_total = 0
        self.outcomes: list[tuple[str, str, float]] = []
        self.lock = threading.Lock()
        self.cancel_requested = threading.Event()
        self._future: Any = None
        self._client: Any = None

    def cancel(self) -> None:
        """Ask the run to stop: cancel the computation in flight; the next message ends the run."""
        self.cancel_requested.set()
        with self.lock:
            future, client = self._future, self._client
        if future is not None:
            client.cancel(future)

    def note(self, text: str) -> None:
        """Keep a message (a warning of the run's thread)."""
        with self.lock:
            self.messages.append(text)

    def message(self, text: str) -> None:
        """`RunEvents` hook: keep ``text``; end the run here once it was asked to stop."""
        self.note(text)
        if self.cancel_requested.is_set():
            raise RunCancelled

    def computing(self, label: str, future: Any, client: Any) -> None:
        """`RunEvents` hook: follow ``future``'s tasks until done (`follow_progress`); cancel it once the run was asked to stop."""
        with self.lock:
            self.computing_label, self.tasks_done, self.tasks_total, self._future, self._client = label, 0, 0, future, client
        if self.cancel_requested.is_set():
            client.cancel(future)
            raise RunCancelled

        def update(remaining: int, total: int, elapsed_s: float) -> None:
            with self.lock:
                self.tasks_done, self.tasks_total = total - remaining, total

        def stop(total: int, status: str, elapsed_s: float) -> None:
            with self.lock:
                self.messages.append(f"{label}: {status} after {elapsed_s:.1f} s ({total} tasks)")
                self._future = self._client = None

        follow_progress(future, client, interval="500ms", update=update, stop=stop)

    def finish(self, state: str, errors: Sequence[str] = ()) -> None:
        """The run ended in ``state`` ("finished", "failed", "cancelled"), with one line per problem."""
        with self.lock:
            self.state, self.errors = state, list(errors)
            self.finished, self.duration_s, self.computing_label = _now(), time.monotonic() - self.started_s, None


class BackgroundRuns:
    """Every run this server started, by run id."""

    def __init__(self, *, thread_warnings: ThreadWarnings) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._lock = threading.Lock()
        self._warnings = thread_warnings

    def start(self, configuration: Configuration, *, configuration_path: Path, store_paths: tuple[Path, ...], phases: Sequence[str] | None, target_plane: int | None, target_recording: str | None, force: bool) -> RunRecord:
        """Start ``configuration`` in a new thread; its `RunRecord` at once."""
        record = RunRecord(run_id=uuid.uuid4().hex[:12], configuration_path=configuration_path, store_paths=store_paths)
        with self._lock:
            self._runs[record.run_id] = record

        def work() -> None:
            from cindra_dask.pipeline import run_configuration

            try:
                with self._warnings.collect(record.note):
                    report = run_configuration(configuration, phases=phases, target_plane=target_plane, target_recording=target_recording, force=force, events=record)
            except RunCancelled:
                record.finish("cancelled", ["cancelled on request; finished steps are kept, the interrupted one reruns next time"])
            except CindraError as error:
                record.finish("failed", error.problems)
            except Exception as error:  # noqa: BLE001 - reported as one line; the traceback goes to the server's log
                if record.cancel_requested.is_set():
                    record.finish("cancelled", [f"cancelled on request ({type(error).__name__}); finished steps are kept, the interrupted one reruns next time"])
                else:
                    logging.getLogger(LOGGER_NAME).exception("run %s failed", record.run_id)
                    record.finish("failed", [f"{type(error).__name__}: {error}"])
            else:
                with record.lock:
                    record.outcomes = [(outcome.name, outcome.state, outcome.duration_s) for outcome in report.outcomes]
                    if Path(report.store_path) not in record.store_paths:  # the store's name came from the movie folder preflight found
                        record.store_paths = (Path(report.store_path),)
                record.finish("finished")

        threading.Thread(target=work, name=f"cindra-dask run {record.run_id}", daemon=True).start()
        return record

    def get(self, run_id: str) -> RunRecord:
        """The run ``run_id``; `CindraError` naming the known ones otherwise."""
        with self._lock:
            record = self._runs.get(run_id)
            known = sorted(self._runs)
        if record is None:
            raise CindraError(f"run_id {run_id!r}: no such run in this server (runs: {', '.join(known) or 'none'}); start one with start_run")
        return record

    def all(self) -> list[RunRecord]:
        """Every run, oldest first."""
        with self._lock:
            return list(self._runs.values())


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
