"""The fetch scripts' shared pieces: the data cache folder and checksummed copies out of a fetched git snapshot.

Downloaded data stays out of git: it lives in ``$CINDRA_DASK_DATA/<name>`` or
``~/.cache/cindra-dask/<name>``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Callable, Sequence


def cache_directory(name: str) -> Path:
    """``$CINDRA_DASK_DATA/<name>`` or ``~/.cache/cindra-dask/<name>``."""
    root = os.environ.get("CINDRA_DASK_DATA")
    return (Path(root) if root else Path.home() / ".cache" / "cindra-dask") / name


def copy_checked(repository: Path, files: Sequence[tuple[str, str]], *, source_of: Callable[[str], str], target_of: Callable[[str], Path]) -> list[Path]:
    """Copy ``files`` ((name, SHA-256) pairs) out of the git repository's HEAD, each checked against its digest.

    ``source_of(name)`` is the path inside the repository, ``target_of(name)`` the file to write; a
    target already holding the right bytes is kept. Raises ``ValueError`` naming the file whose
    digest differs (the repository changed: check the files before updating the list).
    """
    written = []
    for name, expected in files:
        target = target_of(name)
        if not target.exists() or hashlib.sha256(target.read_bytes()).hexdigest() != expected:
            content = subprocess.run(["git", "-C", str(repository), "show", f"HEAD:{source_of(name)}"], check=True, capture_output=True).stdout
            found = hashlib.sha256(content).hexdigest()
            if found != expected:
                raise ValueError(f"{name}: SHA-256 {found} differs from the listed {expected}; the repository changed, check the files before updating the list")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        written.append(target)
    return written
