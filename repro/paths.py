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


def atomic_write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    """Write to a temp file in the same directory, then rename, so readers never see a
    half-written file. ``durable``: fsync before the rename, so a resume after a crash or power
    loss sees the old file or the new one, never half of one (checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
