"""Reliability: kill -9 resume, SIGTERM stop, determinism, NaN, concurrent writers, doctor.

Processes that must die (SIGKILL, SIGTERM) or run side by side are ``os.fork()`` children running
``repro.cli.main``: real processes with their own pid, signals and exit codes, without paying the
interpreter + torch + MLflow import (seconds) for each. All at smoke scale, CPU, one thread.
"""

from __future__ import annotations

import math
import os
import signal
import socket

import pytest

from repro.cli import main
from tests._forkcli import fork_cli, seed_store
from tests._forkcli import reap as _reap
from tests._store import point_at

EXP, ARM = "shazeer-balance-ablation", "imp0.1-load0.1"  # noisy top-2: routing noise uses the RNG
STEPS = ["--set", "train.max_steps=20", "--set", "train.eval_every=6", "--set",
         "train.log_every=1"]
RUN = ["run", EXP, "--scale", "smoke", "--arm", ARM, "--seeds", "0", "--no-progress", *STEPS]


def _use_runs(path, monkeypatch):
    seed_store(path / "runs")
    return point_at(path, monkeypatch)


def _train_runs(uri):
    from repro.tracking import store

    return [r for r in store.search_runs(uri, None) if r.data.tags.get(store.T_KIND) == "train"]


def _curves(uri, run_id):
    from repro.tracking import store

    return {k: store.metric_history(uri, run_id, k) for k in ("train/loss", "val/loss", "lr")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: its curves are what every resumed run must reproduce."""
    mp = pytest.MonkeyPatch()
    try:
        uri = _use_runs(tmp_path_factory.mktemp("ref"), mp)
        assert main(RUN) == 0
        (r,) = _train_runs(uri)
        yield _curves(uri, r.info.run_id)
    finally:
        mp.undo()
        from repro.tracking import store

        store.client.cache_clear()


def _assert_same(curves, ref, tol=1e-6):
    for k in ("val/loss", "lr"):
        assert [s for s, _ in curves[k]] == [s for s, _ in ref[k]], (k, curves[k], ref[k])
        for (s, a), (_, b) in zip(curves[k], ref[k]):
            assert math.isclose(a, b, rel_tol=0, abs_tol=tol), (k, s, a, b)
    # every train step after the interruption too
    assert [s for s, _ in curves["train/loss"]] == [s for s, _ in ref["train/loss"]]
    for (s, a), (_, b) in zip(curves["train/loss"], ref["train/loss"]):
        assert math.isclose(a, b, rel_tol=0, abs_tol=tol), ("train/loss", s, a, b)


def test_determinism_same_seed_same_curve(reference, tmp_path, monkeypatch):
    uri = _use_runs(tmp_path, monkeypatch)
    assert main(RUN) == 0
    (r,) = _train_runs(uri)
    curves = _curves(uri, r.info.run_id)
    assert curves == reference  # bit-identical on CPU, not just close
    assert len(curves["train/loss"]) == 20 and len(curves["val/loss"]) == 4


def test_kill9_then_rerun_resumes_into_same_run(reference, tmp_path, monkeypatch):
    from repro.lit.checkpoint import load_checkpoint_file
    from repro.tracking import store

    uri = _use_runs(tmp_path, monkeypatch)
    rc, _, err = fork_cli(RUN, env={"REPRO_FAULT": "kill@9"})
    assert rc == -signal.SIGKILL, err
    (killed,) = _train_runs(uri)
    assert killed.info.status == "RUNNING"  # the lie a crash leaves behind...
    key = killed.data.tags[store.T_KEY]
    ckdir = tmp_path / "runs" / "checkpoints" / key
    assert load_checkpoint_file(ckdir / "last.ckpt")["global_step"] == 6
    assert (ckdir / "best.ckpt").exists() and not (ckdir / "final.pt").exists()
    assert not list(ckdir.glob(".*.tmp"))  # atomic writes leave no debris

    assert main(RUN) == 0  # ...which the rerun clears: same run reopened, resumed at step 6
    (r,) = _train_runs(uri)
    assert r.info.run_id == killed.info.run_id and r.info.status == "FINISHED"
    assert r.data.tags["repro.resumes"] == "1" and store.T_FAIL not in r.data.tags
    assert r.data.tags[store.T_PID] == str(os.getpid())
    _assert_same(_curves(uri, r.info.run_id), reference)
    assert math.isfinite(r.data.metrics["perf/tokens_per_s"])
    # the CPU time and contention records cover both processes' steps (issue 31)
    assert all(math.isfinite(r.data.metrics[m]) for m in store.CONTENTION_METRICS)
    assert 0 < r.data.metrics[store.M_TRAIN_CPU_S] and store.T_PEERS in r.data.tags
    assert main(RUN) == 0  # and a third run reuses it
    assert len(_train_runs(uri)) == 1


def test_sigterm_stops_cleanly_then_resumes(reference, tmp_path, monkeypatch):
    from repro.lit.checkpoint import load_checkpoint_file
    from repro.tracking import store

    uri = _use_runs(tmp_path, monkeypatch)
    rc, _, err = fork_cli(RUN, env={"REPRO_FAULT": "term@10"})
    assert rc == 128 + signal.SIGTERM, err
    lines = err.strip().splitlines()
    assert "interrupted by SIGTERM at step 10" in lines[-1] and "Traceback" not in err
    (r,) = _train_runs(uri)
    assert r.info.status == "KILLED" and "SIGTERM" in r.data.tags[store.T_FAIL]
    ckpt = tmp_path / "runs" / "checkpoints" / r.data.tags[store.T_KEY] / "last.ckpt"
    assert load_checkpoint_file(ckpt)["global_step"] == 10  # written at the stop, not at eval
    assert main(RUN) == 0
    (r2,) = _train_runs(uri)
    assert r2.info.run_id == r.info.run_id and r2.info.status == "FINISHED"
    _assert_same(_curves(uri, r2.info.run_id), reference)


def test_nan_loss_marks_run_failed_with_reason(tmp_path, monkeypatch, capsys):
    from repro.tracking import store

    uri = _use_runs(tmp_path, monkeypatch)
    monkeypatch.setenv("REPRO_FAULT", "nan@3")
    capsys.readouterr()
    assert main(RUN) == 1
    err = capsys.readouterr().err.strip()  # (Lightning's INFO lines precede it)
    errors = [line for line in err.splitlines() if line.startswith("repro:")]
    assert len(errors) == 1 and errors == err.splitlines()[-1:] and "Traceback" not in err
    assert "non-finite loss nan at step 3" in errors[0]
    (r,) = _train_runs(uri)
    assert r.info.status == "FAILED"
    assert "FloatingPointError: non-finite loss nan at step 3" in r.data.tags[store.T_FAIL]


def test_three_processes_one_store_nothing_lost_nothing_twice(tmp_path, monkeypatch):
    uri = _use_runs(tmp_path, monkeypatch)
    argv = ["run", "switch-vs-dense", "--scale", "smoke", "--arm", "dense,switch-e4",
            "--no-progress", "--set", "train.max_steps=6", "--set", "train.eval_every=3"]
    orders = ["0,1", "1,0", "0,1"]  # different orders: real overlap on the store and the locks
    kids = [fork_cli([*argv, "--seeds", s], wait=False) for s in orders]
    results = [_reap(*k) for k in kids]
    for rc, _, err in results:
        assert rc == 0, err[-2000:]
    trained = sum(int(out.split("done: ")[1].split(" trained")[0]) for _, out, _ in results)
    assert trained == 4  # each (arm, seed) trained by exactly one process, reused by the others
    runs = _train_runs(uri)
    from repro.tracking import store

    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags[store.T_KEY] for r in runs}) == 4
    for r in runs:  # every logged metric is there once per step (nothing lost, nothing doubled)
        val = store.client(uri).get_metric_history(r.info.run_id, "val/loss")
        assert sorted(m.step for m in val) == [3, 6]


def test_doctor_marks_dead_running_runs(tmp_path, monkeypatch, capsys):
    from repro.tracking import store

    uri = _use_runs(tmp_path, monkeypatch)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a pid that is certainly dead now
    c = store.client(uri)
    exp_id = store.ensure_experiment(uri, "doctor-test")
    host = socket.gethostname()
    dead = c.create_run(exp_id, tags={store.T_PID: str(pid), store.T_HOST: host,
                                      store.T_KIND: "train"}).info.run_id
    live = c.create_run(exp_id, tags={store.T_PID: str(os.getppid()), store.T_HOST: host,
                                      store.T_KIND: "train"}).info.run_id
    other = c.create_run(exp_id, tags={store.T_PID: str(pid), store.T_HOST: "elsewhere",
                                       store.T_KIND: "train"}).info.run_id
    assert main(["doctor", "--dry-run"]) == 0
    assert c.get_run(dead).info.status == "RUNNING"
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "1 stale run(s) marked FAILED" in out
    assert c.get_run(dead).info.status == "FAILED"
    assert f"process {pid}" in c.get_run(dead).data.tags[store.T_FAIL]
    assert c.get_run(live).info.status == "RUNNING"
    assert c.get_run(other).info.status == "RUNNING"  # other machines' processes: not judged


def test_live_resumed_run_is_never_marked_stale(tmp_runs):
    """A run resumed by a live process (started long after the run was created) is not stale;
    the same pid claimed *before* that process started (a reused pid) is."""
    import socket
    import subprocess
    import sys
    import time

    from repro.tracking import store as ts

    uri = ts.resolve_uri()
    c = ts.client(uri)
    exp_id = ts.ensure_experiment(uri, "stale-check")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)
        hour_ago = int((time.time() - 3600) * 1000)
        tags = {ts.T_PID: str(live.pid), ts.T_HOST: socket.gethostname()}
        resumed = c.create_run(exp_id, start_time=hour_ago,
                               tags={**tags, ts.T_PID_SINCE: f"{time.time():.3f}"})
        legacy = c.create_run(exp_id, start_time=hour_ago, tags=tags)  # no pid_since tag
        reused = c.create_run(exp_id, start_time=hour_ago,
                              tags={**tags, ts.T_PID_SINCE: f"{time.time() - 600:.3f}"})
        runs = {r.info.run_id: r for r in ts.search_runs(uri, "stale-check")}
        assert not ts.is_stale(runs[resumed.info.run_id])
        assert ts.is_stale(runs[reused.info.run_id])  # pid claimed before this process existed
        assert ts.is_stale(runs[legacy.info.run_id])  # the old rule: judged by run start
        marked = {r.info.run_id for r in ts.mark_stale(uri, "stale-check")}
        assert resumed.info.run_id not in marked
        assert c.get_run(resumed.info.run_id).info.status == "RUNNING"
    finally:
        live.kill()
        live.wait()


# log windows that straddle the checkpoints: the routing accumulators hold part of a window
# when a checkpoint is written, which log_every=1 can never show
RUN_W = ["run", EXP, "--scale", "smoke", "--arm", ARM, "--seeds", "0", "--no-progress", "--set",
         "train.max_steps=20", "--set", "train.eval_every=6", "--set", "train.log_every=4"]


def _raw_histories(uri, run_id) -> dict[str, list[tuple[int, float]]]:
    """Every logged metric's raw history (duplicates kept), perf/* (wall-clock) excluded."""
    from repro.tracking import store

    c = store.client(uri)
    keys = [k for k in c.get_run(run_id).data.metrics if not k.startswith("perf/")]
    return {k: sorted((m.step, m.value) for m in c.get_metric_history(run_id, k)) for k in keys}


def test_kill9_twice_resume_reproduces_every_metric_once(tmp_path, monkeypatch):
    """kill -9 at step 9 and again (after resuming) at step 15, then finish: every metric
    history, routing statistics included, equals an uninterrupted run's, each step once."""
    ref_uri = _use_runs(tmp_path / "ref", monkeypatch)
    assert main(RUN_W) == 0
    (ref_run,) = _train_runs(ref_uri)
    ref = _raw_histories(ref_uri, ref_run.info.run_id)
    assert any(k.startswith("train_routing/") for k in ref) and len(ref) > 20

    uri = _use_runs(tmp_path / "killed", monkeypatch)
    for fault in ("kill@9", "kill@15"):
        rc, _, err = fork_cli(RUN_W, env={"REPRO_FAULT": fault})
        assert rc == -signal.SIGKILL, err[-2000:]
    assert main(RUN_W) == 0
    (r,) = _train_runs(uri)
    assert r.data.tags["repro.resumes"] == "2" and r.info.status == "FINISHED"
    got = _raw_histories(uri, r.info.run_id)
    assert sorted(got) == sorted(ref)
    for k in ref:
        steps = [s for s, _ in got[k]]
        assert steps == sorted(set(steps)), (k, "a step logged twice", steps)
        assert steps == [s for s, _ in ref[k]], (k, steps, ref[k])
        for (s, a), (_, b) in zip(got[k], ref[k]):
            assert math.isclose(a, b, rel_tol=0, abs_tol=1e-6), (k, s, a, b)


def test_sigterm_resume_loses_no_logged_point(tmp_path, monkeypatch):
    """SIGTERM at step 10 (mid log-window, off the eval grid), then resume: the same metric
    histories as an uninterrupted run, no step missing or doubled."""
    ref_uri = _use_runs(tmp_path / "ref", monkeypatch)
    assert main(RUN_W) == 0
    (ref_run,) = _train_runs(ref_uri)
    ref = _raw_histories(ref_uri, ref_run.info.run_id)
    uri = _use_runs(tmp_path / "stopped", monkeypatch)
    rc, _, err = fork_cli(RUN_W, env={"REPRO_FAULT": "term@10"})
    assert rc == 128 + signal.SIGTERM, err[-2000:]
    assert main(RUN_W) == 0
    (r,) = _train_runs(uri)
    got = _raw_histories(uri, r.info.run_id)
    assert sorted(got) == sorted(ref)
    for k in ref:
        assert [s for s, _ in got[k]] == [s for s, _ in ref[k]], (k, got[k], ref[k])
        for (s, a), (_, b) in zip(got[k], ref[k]):
            assert math.isclose(a, b, rel_tol=0, abs_tol=1e-6), (k, s, a, b)
