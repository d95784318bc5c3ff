import os
import shutil
import tempfile

import pytest

os.environ.setdefault("MALLOC_MMAP_MAX_", "0")
# Dispatch ``auto`` takes its static rule in tests (no timing probe: deterministic and fast);
# tests/layers/test_dispatch.py drives the probe with a fake timer. Forked CLI children inherit
# this.
os.environ.setdefault("REPRO_DISPATCH_PROBE", "0")

# Tests never write into the checkout (or a user's store): before anything is imported, the whole
# session (and every child process it starts) gets its own project root under a temporary
# folder: store, token cache (runs/cache) and results. Tests that need a fresh store of their own
# use ``tmp_runs`` / ``tests/_store.py``, which point REPRO_RUNS_DIR / REPRO_RESULTS_DIR further.
SESSION_HOME = tempfile.mkdtemp(prefix="repro-tests-")
os.environ["REPRO_HOME"] = SESSION_HOME
os.environ["REPRO_RUNS_DIR"] = os.path.join(SESSION_HOME, "runs")
os.environ["REPRO_RESULTS_DIR"] = os.path.join(SESSION_HOME, "results")
os.environ.pop("MLFLOW_TRACKING_URI", None)

import torch  # noqa: E402

# One intra-op thread in the test process: the tests are tiny (threads buy nothing), several
# tests fork children (tests/_forkcli.py), and a libgomp thread pool created before fork()
# deadlocks the child's first parallel region. REPRO_TEST_THREADS overrides.
torch.set_num_threads(int(os.environ.get("REPRO_TEST_THREADS", "1")))


@pytest.fixture
def tmp_runs(tmp_path):
    """Isolated runs/ and results/ directories and a fresh sqlite MLflow store for one test
    (module-scoped fixtures use the same ``tests._store.isolated_store`` directly)."""
    from tests._store import isolated_store

    with isolated_store(tmp_path):
        yield tmp_path


# The clone itself must come out of a test session as it went in: no smoke-scale results
# (results/*/smoke) written into it by a test that escaped the temporary folders above.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smoke_results_in_clone() -> set[str]:
    import glob

    return set(glob.glob(os.path.join(REPO, "results", "*", "smoke")))


SMOKE_BEFORE = _smoke_results_in_clone()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_HOME, ignore_errors=True)
    new = sorted(_smoke_results_in_clone() - SMOKE_BEFORE)
    if new:
        print(f"\nERROR: tests wrote smoke results into the clone: {', '.join(new)}")
        session.exitstatus = 1
