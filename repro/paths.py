"""Where runtime state lives. Everything is under ``runs/`` (git-ignored) unless overridden.

``REPRO_RUNS_DIR`` moves the whole tree (tests point it at a temporary directory).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def runs_dir() -> Path:
    return Path(os.environ.get("REPRO_RUNS_DIR", "runs")).resolve()


def cache_dir(*parts: str) -> Path:
    p = runs_dir().joinpath("cache", *parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def results_dir() -> Path:
    """``results/`` (or ``REPRO_RESULTS_DIR``); a ConfigError naming the variable when it, or a
    folder above it, is a regular file."""
    path = Path(os.environ.get("REPRO_RESULTS_DIR", "results")).resolve()
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                from repro.config import ConfigError

                where = "is" if p == path else f"is under {p}, which is"
                raise ConfigError("REPRO_RESULTS_DIR", f"{path} {where} a regular file, not a "
                                  "directory; point REPRO_RESULTS_DIR at a directory (or unset "
                                  "it for ./results)")
            break
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write then rename, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)  # no half-written temp left behind; ``path`` is untouched
        if isinstance(e, OSError) and e.errno is not None and e.filename != str(path):
            # name the file the caller asked for (disk full: ENOSPC), not the temp file
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


MIN_FREE_BYTES = 64 * 2**20  # `repro check` writes ~1-5 MB of results; refuse below this


def check_free_space(path: Path, need: int = MIN_FREE_BYTES) -> None:
    """OSError(ENOSPC) naming ``path`` when its file system has less than ``need`` bytes free,
    so that a command refuses before it writes anything (an existing folder above ``path`` is
    measured when ``path`` does not exist yet)."""
    import errno
    import shutil

    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return  # cannot tell: the writes themselves will say
    if free < need:
        raise OSError(errno.ENOSPC, f"only {free / 2**20:.1f} MiB free on its file system "
                      f"(need {need / 2**20:.0f} MiB)", str(path))
