"""Where runtime state lives: one project root holding ``runs/`` (the store: MLflow and Optuna
databases, checkpoints, logs, locks, the token cache ``runs/cache``; git-ignored) and
``results/`` (what ``repro check`` / ``sweep`` / ``bench`` write; committed).

The project root is, first match wins:

1. ``REPRO_HOME`` when set (created if missing);
2. else the nearest folder at or above the current directory that holds a ``runs/`` folder or
   this project's ``pyproject.toml`` (``name = "moe-repro"``): a clone's root from anywhere
   inside it, or a store started elsewhere with ``mkdir runs``;
3. else none: every command that needs the store stops with one line saying so (``NoProjectRoot``)
   instead of silently starting an empty store (and retraining) in a random folder.

``REPRO_RUNS_DIR`` and ``REPRO_RESULTS_DIR`` still move each tree on its own and win over the
root (tests point them, or ``REPRO_HOME``, at temporary folders).
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path

from repro.config import ConfigError

PROJECT_NAME = "moe-repro"  # [project] name in pyproject.toml, the marker of a clone's root


class NoProjectRoot(ConfigError):
    """No ``REPRO_HOME`` and no project root at or above the current directory."""


def _is_project_pyproject(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f).get("project", {}).get("name") == PROJECT_NAME
    except (OSError, tomllib.TOMLDecodeError):
        return False


def find_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the current directory) that holds a
    ``runs/`` folder or this project's ``pyproject.toml``; None if there is none."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "runs").is_dir() or _is_project_pyproject(d / "pyproject.toml"):
            return d
    return None


def project_root() -> Path:
    """``REPRO_HOME``, else ``find_root()``; raises NoProjectRoot (one line) when neither."""
    home = os.environ.get("REPRO_HOME")
    if home:
        path = Path(home).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise ConfigError("REPRO_HOME", f"{path} is a regular file, not a directory; point "
                              "REPRO_HOME at your project folder")
        return path
    root = find_root()
    if root is None:
        raise NoProjectRoot("", f"no repro project at or above {Path.cwd()} (no runs/ folder, no "
                            f"{PROJECT_NAME} pyproject.toml): cd into your project, set "
                            "REPRO_HOME=/path/to/project, or `mkdir runs` to start a new store "
                            "here")
    return root


def runs_dir() -> Path:
    """The store: ``REPRO_RUNS_DIR``, else ``<project root>/runs``."""
    env = os.environ.get("REPRO_RUNS_DIR")
    return Path(env).resolve() if env else project_root() / "runs"


def cache_dir(*parts: str) -> Path:
    p = runs_dir().joinpath("cache", *parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def results_dir() -> Path:
    """``REPRO_RESULTS_DIR``, else ``<project root>/results``; a ConfigError naming the variable
    when it, or a folder above it, is a regular file."""
    env = os.environ.get("REPRO_RESULTS_DIR")
    path = Path(env).resolve() if env else project_root() / "results"
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "is" if p == path else f"is under {p}, which is"
                raise ConfigError("REPRO_RESULTS_DIR", f"{path} {where} a regular file, not a "
                                  "directory; point REPRO_RESULTS_DIR at a directory (or unset "
                                  "it for <project>/results)")
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
