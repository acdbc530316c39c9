"""Lifetime peak resident memory of the calling process (stdlib only: imported by both tools' runners).

``ru_maxrss`` is kept across ``execve``, so a process started from a large parent reports the
parent's resident size at fork time as its own peak (the benchmark parent holds the ground truth:
≈ 570 MiB at 256² × 6 000). ``VmHWM`` in ``/proc/self/status`` belongs to the process's own
address space, which ``execve`` replaces, so it counts only what the process itself touched.
"""

from __future__ import annotations

import resource
from pathlib import Path


def lifetime_peak_rss_mib() -> float:
    """Peak RSS of this process since it started (MiB): ``VmHWM``, else ``ru_maxrss`` where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
