"""Run-key locks and retries of a busy store. The lock itself (``file_lock``, an ``fcntl.flock``)
and "is that process still alive?" are ``repro.procs``.

A lock file under ``runs/locks/`` (``lock_path``) guards each run key, so two ``repro run``
processes never train the same (arm, seed) at once: the second waits, then finds the finished run
and reuses it. The kernel drops an ``flock`` when its holder dies (even by SIGKILL), so a crash
never leaves a stale lock behind. ``flock`` is per machine (and works on most network file
systems); several machines sharing one runs/ tree over NFS should use a tracking server and
separate runs/ directories.
"""

from __future__ import annotations

import time
from pathlib import Path

from repro.paths import runs_dir


def lock_path(name: str) -> Path:
    return runs_dir() / "locks" / f"{name}.lock"


def retry(fn, *, is_transient, attempts: int = 10, base: float = 0.05, cap: float = 2.0):
    """Call ``fn()``; on a transient error retry with jittered exponential backoff."""
    import random

    rng = random.Random()  # never the global RNG: training determinism must not see retries
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001
            if i == attempts - 1 or not is_transient(e):
                raise
            time.sleep(min(cap, base * 2 ** i) * (0.5 + rng.random()))
    raise AssertionError("unreachable")
