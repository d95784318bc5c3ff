"""Processes on this machine: is that pid still alive (and still the same process), and when did
it start. Linux ``/proc``; standard library only, so the lowest modules (``repro.paths``) and the
tracking store's stale-run detection share one answer."""

from __future__ import annotations

import os
from pathlib import Path


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_start_time(pid: int) -> float | None:
    """Unix time at which ``pid`` started (Linux /proc), or None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        boot = _boot_time()
        if boot is None:
            return None
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int, started_before: float | None = None) -> bool:
    """Whether process ``pid`` (on this machine) still exists and is not a zombie. With
    ``started_before`` (unix time), a process that started later is a reused pid: dead."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2:].startswith("Z"):
            return False
    except (OSError, ValueError):
        pass
    if started_before is not None:
        t = process_start_time(pid)
        if t is not None and t > started_before + 2.0:
            return False
    return True
