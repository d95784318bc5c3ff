"""Processes on this machine: an exclusive file lock between them (``file_lock``), whether a pid
is still alive (and still the same process), and when it started. Linux ``/proc`` and
``fcntl.flock``; standard library only, so every layer can use them (``repro.paths``, the
dispatch cache of ``repro.layers``, the tracking store's run locks and stale-run detection).

The kernel drops an ``flock`` when its holder dies (even by SIGKILL), so a crash never leaves a
stale lock behind. ``flock`` is per machine (and works on most network file systems)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path

from repro.errors import UserError


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


# ------------------------------------------------- files the store owns (never through a link)
class NotOwnedError(UserError, ValueError):
    """Where the store expects a regular file of its own (a lock, log, checkpoint, cache, result,
    outcome JSON, database) there is something else: a symbolic link, a FIFO, a device, a
    socket, a folder. repro never writes through it (nor reads a FIFO or device as its file)."""


def describe_kind(path: Path, st) -> str:
    """What ``path`` is, for a message: 'a FIFO (named pipe)', 'a symbolic link (to X)', ..."""
    import stat

    mode = st.st_mode
    if stat.S_ISLNK(mode):
        try:
            return f"a symbolic link (to {os.readlink(path)})"
        except OSError:
            return "a symbolic link"
    return ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
            "a character device" if stat.S_ISCHR(mode) else
            "a block device" if stat.S_ISBLK(mode) else
            "a socket" if stat.S_ISSOCK(mode) else
            "a folder" if stat.S_ISDIR(mode) else "not a regular file")


def not_owned(path: Path, st, kind: str = "file") -> NotOwnedError:
    return NotOwnedError(f"{path} is {describe_kind(path, st)}, not a {kind} repro wrote; "
                         "repro never writes through or reads it as its own: remove it (rm "
                         f"{path}) and rerun")


def open_owned(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` for a file the store owns: never through a symbolic link (``O_NOFOLLOW``),
    never blocking on a FIFO, and only a regular file (else NotOwnedError, the fd closed)."""
    import fcntl
    import stat

    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):  # a link; a FIFO with no reader
            raise not_owned(path, os.lstat(path)) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise not_owned(path, st)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def check_owned(path: Path, follow: bool = False) -> None:
    """NotOwnedError (one line, with the fix) when ``path`` exists and is not a regular file;
    ``follow``: judge what a symbolic link points to (a database the user may link) instead of
    refusing the link itself. A missing ``path`` passes."""
    import stat

    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return
    except OSError:
        return  # unreadable: the caller's own open says why
    if not stat.S_ISREG(st.st_mode):
        raise not_owned(Path(path), st)


def read_owned_bytes(path: Path) -> bytes:
    """The bytes of a store file (a checkpoint, a cache, a result file), refusing a link, a
    FIFO or a device there (``open_owned``): never an endless read of /dev/zero, never a hang."""
    with os.fdopen(open_owned(path, os.O_RDONLY), "rb") as f:
        return f.read()


@contextlib.contextmanager
def file_lock(path: Path, on_wait=None):
    """Hold an exclusive ``flock`` on ``path`` for the ``with`` block; ``on_wait(holder)`` is
    called once if another process holds it (we then block until it is released)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # never through a link, never a FIFO or device: the holder's line is written into it
    fd = open_owned(path, os.O_RDWR | os.O_CREAT, 0o644)
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
