"""The folders a front end may read and write: every path a tool is given is checked here first.

A path is resolved (``~``, relative to the first writable root, symlinks followed) and refused when
it names ``..`` or lands outside the roots; written paths must lie in a writable root and outside
every read-only one (where the movie inputs live: inputs are never written).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from cindra_dask.errors import CindraError


class OutsideRootsError(CindraError):
    """A path a tool was given lies outside the roots the server allows (or names ``..``)."""


class PathRoots(NamedTuple):
    """Folders a tool may write into (and read) and folders it may only read."""

    writable: tuple[Path, ...]
    read_only: tuple[Path, ...]

    @classmethod
    def of(cls, *, writable: tuple[Path | str, ...], read_only: tuple[Path | str, ...]) -> "PathRoots":
        """Roots from user paths (resolved, symlinks followed); at least one writable root."""
        if not writable:
            raise OutsideRootsError("--root: give at least one folder the server may write into")
        missing = [str(path) for path in (*writable, *read_only) if not _real(path).is_dir()]
        if missing:
            raise OutsideRootsError(*(f"{path}: not a folder; roots must exist" for path in missing))
        return cls(tuple(map(_real, writable)), tuple(map(_real, read_only)))

    def _resolved(self, path: Path | str, *, what: str) -> Path:
        given = Path(path).expanduser()
        if ".." in given.parts:
            raise OutsideRootsError(f"{what} {path}: '..' is not allowed; give the path inside {self.describe()}")
        return _real(given if given.is_absolute() else self.writable[0] / given)

    def contains(self, path: Path | str) -> bool:
        """True when the absolute ``path`` (symlinks followed) lies in a root."""
        resolved = _real(path)
        return any(resolved.is_relative_to(root) for root in (*self.writable, *self.read_only))

    def readable(self, path: Path | str, *, what: str) -> Path:
        """``path`` resolved, when it lies in a root; else `OutsideRootsError` naming ``what``."""
        resolved = self._resolved(path, what=what)
        if not self.contains(resolved):
            raise OutsideRootsError(f"{what} {path}: outside the folders this server may read ({self.describe()})")
        return resolved

    def writable_path(self, path: Path | str, *, what: str) -> Path:
        """``path`` resolved, when it lies in a writable root and in no read-only one; else `OutsideRootsError`."""
        resolved = self._resolved(path, what=what)
        if not any(resolved.is_relative_to(root) for root in self.writable) or any(resolved.is_relative_to(root) for root in self.read_only):
            raise OutsideRootsError(f"{what} {path}: outside the folders this server may write ({', '.join(map(str, self.writable))}; read-only: {', '.join(map(str, self.read_only)) or 'none'})")
        return resolved

    def describe(self) -> str:
        """The roots, for messages."""
        return ", ".join([*map(str, self.writable), *(f"{root} (read-only)" for root in self.read_only)])


def _real(path: Path | str) -> Path:
    """``path`` with ``~`` expanded and every symlink followed (the path need not exist)."""
    return Path(os.path.realpath(Path(path).expanduser()))
