"""What the bench scripts share: writing their result files whole or not at
all, and the CPUs they may use.

A bench may be killed at its time limit (scripts/device-run.sh boxes every
stage): a result file it was writing must then be absent, never truncated,
so that a stage is judged by the files it left. Each file is written to a
temporary name beside it, synced, and renamed over the final name.
"""
from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: Path | str, text: str) -> None:
    """Writes text to path through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (what taskset or a container's
    cpuset leaves it), where the system has one, not the machine's count. Threads beyond them
    only take turns, on both sides of a comparison. (The package's dinoclip._files has the same:
    the bench scripts run from bench/ whether the package is installed or not.)"""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity masks (macOS, Windows)
        return os.cpu_count() or 1
