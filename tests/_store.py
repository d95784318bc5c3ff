"""An isolated runs/ + results/ + sqlite MLflow store for a module-scoped fixture (function-scoped
tests use the ``tmp_runs`` fixture of conftest.py)."""

from __future__ import annotations

import contextlib

import pytest


@contextlib.contextmanager
def isolated_store(root):
    """Point REPRO_RUNS_DIR / REPRO_RESULTS_DIR under ``root`` and use a fresh client; yields
    the tracking URI."""
    from repro.tracking import store as ts

    mp = pytest.MonkeyPatch()
    mp.setenv("REPRO_RUNS_DIR", str(root / "runs"))
    mp.setenv("REPRO_RESULTS_DIR", str(root / "results"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    ts.client.cache_clear()
    try:
        yield ts.resolve_uri()
    finally:
        ts.client.cache_clear()
        mp.undo()
