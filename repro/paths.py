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

import contextlib
import errno
import os
import re
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from repro.config import ConfigError
from repro.procs import (  # noqa: F401 - the store's own files: re-exported
    NotOwnedError,
    check_owned,
    describe_kind,
    not_owned,
    open_owned,
    read_owned_bytes,
)

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
    """``runs/cache/PARTS``, created private (0700): caches hold the user's data, tokenised;
    their files are 0600 (``atomic_write_bytes``)."""
    p = runs_dir() / "cache"
    p.parent.mkdir(parents=True, exist_ok=True)
    for part in ("", *parts):
        p = p / part if part else p
        p.mkdir(mode=0o700, exist_ok=True)
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


# ---------------------------------------------------------------- files the store owns
# NotOwnedError, open_owned, check_owned, read_owned_bytes...: ``repro.procs`` (whose
# ``file_lock`` uses them), re-exported here


# ``.NAME.XXXXXXXX.tmp``: the temp file of ``atomic_write_bytes`` (tempfile.mkstemp's 8 chars)
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")
STALE_TEMP_S = 15 * 60  # a temp file untouched this long is a dead writer's [ours: a writer
# keeps its temp open and flock-ed, and even a multi-GB checkpoint is written in well under this]
_swept: set[str] = set()  # folders whose stale temps this process has already removed


def is_temp_name(name: str) -> bool:
    return _TEMP_RE.match(name) is not None


def clean_stale_temps(folder: Path, max_age_s: float = STALE_TEMP_S) -> list[Path]:
    """Remove ``atomic_write_bytes`` temp files in ``folder`` that a killed writer (kill -9,
    power loss) left behind; returns them. A temp file is removed only when it is older than
    ``max_age_s`` *and* no process holds its ``flock`` (every live writer holds one), so a
    write in progress is never touched."""
    import fcntl

    removed = []
    cutoff = time.time() - max_age_s
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not is_temp_name(e.name):
            continue
        try:
            if not e.is_file(follow_symlinks=False) or e.stat().st_mtime > cutoff:
                continue
            fd = os.open(e.path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live writer holds it: skip
            os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def atomic_write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    """Write to a temp file in the same directory, then rename, so readers never see a
    half-written file. ``durable``: fsync before the rename, so a resume after a crash or power
    loss sees the old file or the new one, never half of one (checkpoints). The first write of
    a process into a folder removes the stale temp files of killed writers there
    (``clean_stale_temps``); the writer holds an ``flock`` on its own temp file meanwhile.
    A symbolic link, FIFO or device at ``path`` is replaced by the rename, never written
    through; the new file is 0600 (``mkstemp``): the store's files are the user's alone."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        raise not_owned(path, os.lstat(path))
    folder = str(path.parent.resolve())
    if folder not in _swept:
        _swept.add(folder)
        clean_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "in use" for ``clean_stale_temps``
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


# ---------------------------------------------------------------- a folder replaced as a whole
STAGING, ASIDE = "staging", "old"  # ``NAME.staging-PID-XXXX`` / ``NAME.old-PID-XXXX`` beside NAME
_LEFTOVER_RE = re.compile(r"^(?P<name>.+)\.(?P<kind>staging|old)-(?P<pid>\d+)-[^/]+$")


def swap_leftover(name: str) -> tuple[str, str, int] | None:
    """``(target name, "staging"|"old", pid)`` when ``name`` is a ``staged_dir`` folder."""
    m = _LEFTOVER_RE.match(name)
    return (m["name"], m["kind"], int(m["pid"])) if m else None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``);
    False where the system or file system does not offer it."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def clean_swap_leftovers(target: Path) -> list[Path]:
    """Undo what a killed ``staged_dir`` left beside ``target``: when ``target`` is missing
    (killed between the two renames of the fallback swap) the newest ``NAME.old-*`` folder, the
    previous complete version, is renamed back; every other staging / old folder of a process
    that is gone is deleted. Folders of live processes are never touched. Returns what was
    removed or restored."""
    from repro.procs import pid_alive

    target = Path(target)
    try:
        entries = [p for p in target.parent.iterdir() if p.is_dir()]
    except OSError:
        return []
    dead = []
    for p in entries:
        info = swap_leftover(p.name)
        if info and info[0] == target.name and not pid_alive(info[2]):
            dead.append((info[1], p))
    done = []
    if not target.exists():
        olds = sorted((p for kind, p in dead if kind == ASIDE), key=lambda p: p.stat().st_mtime)
        if olds:
            os.rename(olds[-1], target)
            done.append(olds[-1])
            dead = [(k, p) for k, p in dead if p != olds[-1]]
    for _, p in dead:
        shutil.rmtree(p, ignore_errors=True)
        done.append(p)
    return done


@contextlib.contextmanager
def staged_dir(target: Path, owned: Callable[[str], bool] = lambda name: True):
    """Build a new version of folder ``target`` in a staging folder beside it (same file
    system) and put it in place as a whole when the block exits cleanly; on any error the
    staging folder is removed and ``target`` is untouched, byte for byte.

    Files of the old ``target`` that the new one lacks and that are not ``owned`` by the writer
    (another command's files in a shared folder) are carried over by hard link. The swap is one
    ``renameat2(RENAME_EXCHANGE)`` where Linux offers it, else ``target -> NAME.old-*`` and
    ``staging -> target``. Whatever a kill -9 leaves (a staging folder, an old one, or no
    ``target`` between the fallback's two renames) is cleaned or restored by the next
    ``staged_dir`` of the same target (``clean_swap_leftovers``). An OSError about a file in the
    staging folder names the file's place in ``target`` instead."""
    target = Path(target)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        # never renamed, followed or replaced: the user's link (or file) stays as it is
        raise not_owned(target, os.lstat(target), kind="folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_swap_leftovers(target)
    stage = Path(tempfile.mkdtemp(dir=target.parent,
                                  prefix=f"{target.name}.{STAGING}-{os.getpid()}-"))
    aside = None
    try:
        yield stage
        _carry_over(target, stage, owned)
        if not target.exists():
            os.rename(stage, target)
        elif _exchange(stage, target):
            _carry_over(stage, target, owned)  # written into the old folder meanwhile
            shutil.rmtree(stage)  # the old version
        else:
            aside = Path(tempfile.mkdtemp(dir=target.parent,
                                          prefix=f"{target.name}.{ASIDE}-{os.getpid()}-"))
            os.rename(target, aside)  # replaces the empty placeholder folder
            os.rename(stage, target)
            _carry_over(aside, target, owned)
            shutil.rmtree(aside)
    except BaseException as e:
        if aside is not None and aside.exists() and not target.exists():
            os.rename(aside, target)  # the fallback failed between its renames: undo
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(e, OSError) and e.filename and str(e.filename).startswith(str(stage)):
            where = target / Path(e.filename).relative_to(stage)
            raise OSError(e.errno, e.strerror or os.strerror(e.errno or 0), str(where)) from e
        raise


def _carry_over(old: Path, new: Path, owned: Callable[[str], bool]) -> None:
    """Hard-link (copy where links fail) into ``new`` each regular file of ``old`` that ``new``
    lacks and the writer does not own; temp files of killed writers are left behind."""
    if not old.is_dir():
        return
    for p in old.iterdir():
        if not p.is_file() or p.is_symlink() or owned(p.name) or is_temp_name(p.name):
            continue
        dest = new / p.name
        if dest.exists():
            continue
        try:
            os.link(p, dest)
        except FileExistsError:
            pass
        except OSError:
            shutil.copy2(p, dest)
