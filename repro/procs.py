"""Processes on this machine: an exclusive file lock between them (``file_lock``), whether a pid
is still alive (and still the same process), and when it started. Linux ``/proc`` and
``fcntl.flock``; standard library only, so every layer can use them (``repro.paths``, the
dispatch cache of ``repro.layers``, the tracking store's run locks and stale-run detection).

The kernel drops an ``flock`` when its holder dies (even by SIGKILL), so a crash never leaves a
stale lock behind. ``flock`` is per machine (and works on most network file systems)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
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


@contextlib.contextmanager
def file_lock(path: Path, on_wait=None):
    """Hold an exclusive ``flock`` on ``path`` for the ``with`` block; ``on_wait(holder)`` is
    called once if another process holds it (we then block until it is released)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                with contextlib.suppress(OSError):
                    on_wait(os.pread(fd, 200, 0).decode(errors="replace").strip() or "?")
            fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
