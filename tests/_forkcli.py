"""Run ``repro.cli.main`` in a forked child: a real process (own pid, signals, exit code, fds)
without paying the interpreter + torch + Lightning + MLflow import (seconds each on a loaded
2-core machine) per case. Shared by test_reliability.py and test_bad_input.py."""

from __future__ import annotations

import os
import sys
import tempfile

# import the heavy stack once, here, so that each forked child starts warm
import lightning  # noqa: F401,E402
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401,E402

import repro.experiments.runner  # noqa: F401,E402
import repro.lit.checkpoint  # noqa: F401,E402
import repro.lit.system  # noqa: F401,E402
from repro.cli import main


def fork_cli(argv: list[str], env: dict | None = None, wait: bool = True, setup=None):
    """Run ``repro <argv>`` in a forked child; returns (rc, stdout, stderr) or, with
    ``wait=False``, (pid, out_path, err_path). rc < 0: killed by signal -rc. ``setup()`` runs in
    the child first (after ``env`` is applied)."""
    out = tempfile.NamedTemporaryFile(delete=False, suffix=".out")
    err = tempfile.NamedTemporaryFile(delete=False, suffix=".err")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        rc = 1
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.environ.update(env or {})
            import torch

            torch.set_num_threads(1)  # never enter the parent's (fork-unsafe) OpenMP pool
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            for engine in SqlAlchemyStore._engine_map.values():  # never share pooled sqlite
                engine.dispose(close=False)                      # connections across fork
            SqlAlchemyStore._engine_map.clear()
            from repro.tracking import store

            store.client.cache_clear()
            if setup is not None:
                setup()
            rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - like the interpreter: traceback, exit 1
            import traceback

            traceback.print_exc()
            rc = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc)
    if not wait:
        return pid, out.name, err.name
    return reap(pid, out.name, err.name)


def reap(pid, out_path, err_path):
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    texts = []
    for p in (out_path, err_path):
        with open(p) as f:
            texts.append(f.read())
        os.unlink(p)
    return rc, texts[0], texts[1]


_TEMPLATE: list[bytes] = []


def seed_store(runs_dir) -> None:
    """Put an initialized, empty MLflow sqlite store at ``runs_dir/mlflow.db``: creating one
    (schema migrations) costs seconds, copying a template made once per session costs nothing."""
    from pathlib import Path

    runs_dir = Path(runs_dir)
    if not _TEMPLATE:
        d = Path(tempfile.mkdtemp(prefix="mlflow-template-"))
        rc, _, err = fork_cli(["doctor"], env={"REPRO_RUNS_DIR": str(d),
                                               "MLFLOW_TRACKING_URI": ""})
        assert rc == 0, err
        _TEMPLATE.append((d / "mlflow.db").read_bytes())
    runs_dir.mkdir(parents=True, exist_ok=True)
    (runs_dir / "mlflow.db").write_bytes(_TEMPLATE[0])
