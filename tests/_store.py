"""The one way tests isolate a store: runs/ + results/ + a fresh sqlite MLflow client under a
folder. The ``tmp_runs`` fixture (conftest.py) wraps it for one test; module-scoped fixtures use it
directly."""

from __future__ import annotations

import contextlib

import pytest


def point_at(root, mp: pytest.MonkeyPatch) -> str:
    """Point REPRO_RUNS_DIR / REPRO_RESULTS_DIR under ``root`` through ``mp`` (undone with it)
    and start a fresh MLflow client; returns the tracking URI."""
    from repro.tracking import store as ts

    mp.setenv("REPRO_RUNS_DIR", str(root / "runs"))
    mp.setenv("REPRO_RESULTS_DIR", str(root / "results"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    ts.client.cache_clear()
    return ts.resolve_uri()


@contextlib.contextmanager
def isolated_store(root):
    """``point_at`` for the ``with`` block; yields the tracking URI."""
    from repro.tracking import store as ts

    mp = pytest.MonkeyPatch()
    try:
        yield point_at(root, mp)
    finally:
        ts.client.cache_clear()
        mp.undo()
