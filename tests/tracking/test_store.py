"""``repro.tracking.store`` against a real (temporary sqlite) MLflow store: where the store is,
retries while it is busy, refusing an unusable one in one line, and finding runs by key:
finished (newest wins), resumable, stale."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from repro.tracking import store as ts


def _run(uri: str, key: str, status: str, *, kind: str = ts.ROLE_TRAIN, tags: dict | None = None):
    c = ts.client(uri)
    exp_id = ts.ensure_experiment(uri, "store-test")
    run = c.create_run(exp_id, tags={ts.T_KEY: key, ts.T_KIND: kind, **(tags or {})})
    if status != "RUNNING":
        c.set_terminated(run.info.run_id, status)
    time.sleep(0.01)  # start times in ms: the next run is strictly newer
    return run.info.run_id


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _owner(pid: int) -> dict:
    """Tags of a run that process ``pid`` on this host took just now."""
    return {ts.T_PID: str(pid), ts.T_HOST: socket.gethostname(),
            ts.T_PID_SINCE: f"{time.time():.3f}"}


def test_resolve_uri_override_env_default(tmp_runs, monkeypatch):
    assert ts.resolve_uri() == f"sqlite:///{tmp_runs / 'runs' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert ts.resolve_uri() == "http://127.0.0.1:1"
    assert ts.resolve_uri("sqlite:///elsewhere.db") == "sqlite:///elsewhere.db"


def test_an_unwritable_store_folder_is_one_line_tracking_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where the store's folder should be: no one can write there
    with pytest.raises(ts.TrackingError, match=r"a-file/sub is not writable .*set REPRO_RUNS_DIR"):
        ts.resolve_uri(f"sqlite:///{blocker / 'sub' / 'mlflow.db'}")


def test_an_unreachable_server_fails_fast_with_tracking_error():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ts.TrackingError, match="unreachable"):
        ts.client(f"http://127.0.0.1:{port}")
    with pytest.raises(ts.TrackingError):  # a failed client is not cached as usable
        ts.client(f"http://127.0.0.1:{port}")


def test_retrying_client_retries_only_a_locked_database():
    class Store:
        def __init__(self):
            self.calls = 0
            self.name = "plain attribute"

        def write(self, fail_with: str, times: int):
            self.calls += 1
            if self.calls <= times:
                raise RuntimeError(fail_with)
            return self.calls

    s = Store()
    c = ts.RetryingClient(s)
    assert c.name == "plain attribute"
    assert c.write("(sqlite3.OperationalError) database is locked", 2) == 3
    s.calls = 0
    with pytest.raises(RuntimeError, match="no such table"):
        c.write("no such table: runs", 2)
    assert s.calls == 1
    assert ts.is_locked_error(RuntimeError("SQLITE_BUSY")) and not ts.is_locked_error(
        RuntimeError("disk I/O error"))


def test_ensure_experiment_is_idempotent(tmp_runs):
    uri = ts.resolve_uri()
    assert ts.ensure_experiment(uri, "e1") == ts.ensure_experiment(uri, "e1")
    assert ts.ensure_experiment(uri, "e2") != ts.ensure_experiment(uri, "e1")


def test_find_finished_takes_the_newest_training_run_of_the_key(tmp_runs):
    uri = ts.resolve_uri()
    assert ts.find_finished(uri, None, "k1") is None
    old = _run(uri, "k1", "FINISHED")
    new = _run(uri, "k1", "FINISHED")  # `repro run --force` retrained the key
    _run(uri, "k1", "FINISHED", kind=ts.ROLE_TRIAL)  # a sweep trial never serves as a run
    _run(uri, "k1", "FAILED")
    _run(uri, "k2", "FINISHED")
    found = ts.find_finished(uri, None, "k1")
    assert found.info.run_id == new != old
    assert ts.find_finished(uri, "store-test", "k1").info.run_id == new
    assert ts.find_finished(uri, "no-such-experiment", "k1") is None


def test_find_resumable_skips_runs_a_live_process_owns(tmp_runs):
    uri = ts.resolve_uri()
    _run(uri, "k", "RUNNING", tags=_owner(os.getppid()))  # live owner (our parent): not ours
    assert ts.find_resumable(uri, "k") is None
    killed = _run(uri, "k", "KILLED")
    assert ts.find_resumable(uri, "k").info.run_id == killed
    dead = _run(uri, "k", "RUNNING", tags=_owner(_dead_pid()))  # newest, its owner is gone
    assert ts.find_resumable(uri, "k").info.run_id == dead


def test_mark_stale_marks_only_runs_whose_process_died(tmp_runs):
    uri = ts.resolve_uri()
    live = _run(uri, "a", "RUNNING", tags=_owner(os.getppid()))
    dead = _run(uri, "b", "RUNNING", tags=_owner(_dead_pid()))
    other_host = _run(uri, "c", "RUNNING", tags={**_owner(_dead_pid()), ts.T_HOST: "elsewhere"})
    assert [r.info.run_id for r in ts.mark_stale(uri, "store-test", dry_run=True)] == [dead]
    assert ts.client(uri).get_run(dead).info.status == "RUNNING"  # dry run: nothing changed
    marked = ts.mark_stale(uri, None, status="KILLED")
    assert [r.info.run_id for r in marked] == [dead]
    c = ts.client(uri)
    got = c.get_run(dead)
    assert got.info.status == "KILLED" and "died while the run was RUNNING" in got.data.tags[
        ts.T_FAIL]
    assert c.get_run(live).info.status == "RUNNING"
    assert c.get_run(other_host).info.status == "RUNNING"  # its processes are not visible here


def test_metric_history_keeps_the_last_write_per_step(tmp_runs):
    uri = ts.resolve_uri()
    run_id = _run(uri, "m", "RUNNING")
    c = ts.client(uri)
    for step, value in ((2, 0.5), (1, 0.9), (2, 0.4)):  # step 2 logged again (a resume)
        c.log_metric(run_id, "val_loss", value, step=step)
    assert ts.metric_history(uri, run_id, "val_loss") == [(1, 0.9), (2, 0.4)]
