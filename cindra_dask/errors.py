"""Errors a user sees: each carries one line per problem, naming the file or field and what to do.

The CLI prints ``str(error)`` without a traceback and exits non-zero; library callers catch
:class:`CindraError`.
"""

from __future__ import annotations

import errno
from pathlib import Path


class CindraError(Exception):
    """Base class of every error meant for the user (printed without a traceback)."""

    def __init__(self, *problems: str) -> None:
        if not problems:
            raise ValueError("CindraError needs at least one problem description")
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


class ConfigurationError(CindraError):
    """The configuration file or an override is invalid (YAML syntax, unknown key, type, range)."""


class InputError(CindraError):
    """The input data (TIFFs, ``cindra_parameters.json``, ``bad_frames.npy``) cannot be used."""


class OutputError(CindraError):
    """The output location cannot be written (permissions, free disk, locked by another run)."""


class PhaseUnavailableError(CindraError):
    """A requested phase is not implemented yet or its prerequisites are missing."""


DISK_FULL_REASONS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}
"""The write errors that mean the output's file system is full, with the words the user sees."""


def nearest_existing_path(path: Path) -> Path:
    """``path`` made absolute, or its nearest folder above that exists (where free space is measured)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_full_error(error: BaseException | None) -> OSError | None:
    """The ENOSPC / EDQUOT ``OSError`` that ``error`` is or was raised from (the chain a traceback
    shows: causes, and contexts not suppressed by ``raise ... from None``), else None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in DISK_FULL_REASONS:
            return error
        seen.add(id(error))
        error = error.__cause__ if error.__cause__ is not None or error.__suppress_context__ else error.__context__
    return None
