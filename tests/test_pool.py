"""The one process pool (`run --jobs`, `sweep --workers`), the MLflow run lifecycle and the run
identity: children report through a JSON file, a run ends FINISHED / FAILED / KILLED."""

import sys

import pytest

CHILD = ("import json, os, sys; from repro.pool import write_result; "
         "print('-> trained: val loss 9.9999, 1 tok/s, 1s (run deadbeef)'); "
         "write_result({'n': int(sys.argv[1])}); sys.exit(int(sys.argv[2]))")


def test_children_report_through_their_result_file(tmp_path):
    from repro.pool import RESULT_ENV, Job, run_pool

    jobs = [Job([sys.executable, "-c", CHILD, str(i), str(rc)], tmp_path / f"{i}.log",
                result=tmp_path / f"{i}.json", data=i) for i, rc in ((0, 0), (1, 3), (2, 0))]
    (tmp_path / "2.json").write_text('{"n": 99}')  # a stale file from an earlier run
    started = []
    done = run_pool(jobs, 2, on_start=lambda job, pid: started.append(job.data), poll_s=0.05)
    by = {d.job.data: d for d in done}
    assert sorted(started) == [0, 1, 2] and set(by) == {0, 1, 2}
    assert by[0].result == {"n": 0} and by[0].returncode == 0
    assert by[1].result == {"n": 1} and by[1].returncode == 3
    assert by[2].result == {"n": 2}  # the child's own, never the stale file
    assert not list(tmp_path.glob("*.json"))  # read, then removed
    assert "deadbeef" in (tmp_path / "0.log").read_text()  # output goes to the log only
    assert RESULT_ENV not in __import__("os").environ


def test_a_child_that_writes_nothing_has_no_result(tmp_path):
    from repro.pool import Job, run_pool, write_result

    assert write_result({"x": 1}) is False  # not started by a pool
    (d,) = run_pool([Job([sys.executable, "-c", "import sys; sys.exit(5)"], tmp_path / "a.log",
                         result=tmp_path / "a.json")], 1, poll_s=0.05)
    assert d.returncode == 5 and d.result is None


def test_lifecycle_statuses(tmp_runs):
    from repro.lit.checkpoint import RunInterrupted
    from repro.tracking import store as ts
    from repro.tracking.lifecycle import tracked_run

    uri = ts.resolve_uri()
    c = ts.client(uri)
    exp_id = ts.ensure_experiment(uri, "lifecycle")
    with tracked_run(c, exp_id, tags={"a": "1"}, run_name="ok") as r:
        r.log_params({"p": "x" * 600})
        r.log_json("config.json", {"k": 1})
    ok = c.get_run(r.run_id)
    assert ok.info.status == "FINISHED" and ok.data.tags["a"] == "1"
    assert len(ok.data.params["p"]) == 500

    def status(exc, **kw):
        with pytest.raises(type(exc)), tracked_run(c, exp_id, **kw) as run:
            raise exc
        got = c.get_run(run.run_id)
        return got.info.status, got.data.tags[ts.T_FAIL]

    assert status(FloatingPointError("loss is nan\nmore")) == (
        "FAILED", "FloatingPointError: loss is nan")
    s, why = status(KeyboardInterrupt())
    assert s == "KILLED" and why.startswith("interrupted (KeyboardInterrupt); rerun")
    s, why = status(RunInterrupted(15, 3, None), interrupts=(RunInterrupted,))
    assert s == "KILLED" and "SIGTERM" in why

    # reopening keeps the run id, counts the resume and drops the old failure reason
    killed = c.get_run(run_id := c.search_runs([exp_id], "attributes.status = 'KILLED'")[0]
                       .info.run_id)
    with tracked_run(c, resume=killed) as again:
        assert again.resumed and again.run_id == run_id
    back = c.get_run(run_id)
    assert back.info.status == "FINISHED" and ts.T_FAIL not in back.data.tags
    assert back.data.tags["repro.resumes"] == "1"
    # a clean exit told to end otherwise (a sweep's time limit with trials left): that status,
    # with its reason
    with tracked_run(c, exp_id, run_name="partly") as part:
        part.end_as("KILLED", "3 of 5 trials unfinished")
    got = c.get_run(part.run_id)
    assert got.info.status == "KILLED" and got.data.tags[ts.T_FAIL] == "3 of 5 trials unfinished"


def test_resolved_run_is_the_identity_training_records():
    from repro.experiments.base import get_experiment
    from repro.experiments.resolve import DataFingerprints, prepare_data, resolve_run, run_key

    exp = get_experiment("switch-vs-dense", "smoke")
    dm = prepare_data(exp.run_config("dense", []), 0)
    a = resolve_run(exp, "dense", 1, [], dm)
    b = resolve_run(exp, exp.arm("dense"), 1, [], DataFingerprints())
    assert a == b and a.key == run_key(a.config, dm.fingerprint, 1)
    assert a.config.model.vocab_size == dm.vocab_size and a.run_name == "dense-s1-smoke"
    assert resolve_run(exp, "dense", 2, [], dm).key != a.key
    assert resolve_run(exp, "dense", 1, ["train.max_steps=3"], dm).key != a.key
    tags = a.identity_tags()
    assert tags["repro.run_key"] == a.key and tags["repro.arm"] == "dense"
    assert f"'{dm.fingerprint}'" in a.tag_filter()


# a fake `repro run` child: prints a misleading line, then reports through its result file
FAKE_RUN = ("import json, sys, time; from repro.pool import write_result; "
            "arm, seed = sys.argv[1], int(sys.argv[2]); time.sleep(0.2 * seed); "
            "print('-> trained: val loss 0.0000, 1s (run ffffffff)'); "
            "ok = arm != 'bad'; write_result({'outcomes': [dict(arm=arm, "
            "seed=seed, run_id=f'run{seed:05d}', status='trained', "
            "final_val_loss=1.5 + seed, tokens_per_s=1.0, seconds=0.0)] if ok else [], "
            "'failed': [] if ok else ['boom']}); sys.exit(0 if ok else 1)")


def test_jobs_parent_prints_run_lines_with_totals_from_pool_events(tmp_runs, monkeypatch):
    """`repro run --jobs N`: the parent prints the in-process path's run lines (run i/N, arm,
    seed, the suite's totals and time left) when the pool starts and reaps a child, from the
    child's result file and the pool's events, never from the child's printed text."""
    from types import SimpleNamespace

    from repro.experiments import parallel

    # the planned steps per arm size the live display's lines before a child reports its own
    run = SimpleNamespace(train=SimpleNamespace(max_steps=10))
    exp = SimpleNamespace(name="e", scale="smoke", run_config=lambda arm, overrides: run)
    monkeypatch.setattr(parallel, "child_command", lambda exp, arm, seed, *a: [
        sys.executable, "-c", FAKE_RUN, arm, str(seed)])
    lines: list[str] = []
    grid = [(exp, "a", 0), (exp, "a", 1), (exp, "bad", 2), (exp, "a", 3)]
    outcomes, failed = parallel.run_parallel(grid, [], "file:///unused", jobs=2, threads=1,
                                             echo=lines.append)
    assert sorted(o.run_id for o in outcomes) == ["run00000", "run00001", "run00003"]
    assert len(failed) == 1 and "boom" in failed[0]
    starts = [ln for ln in lines if " started (pid " in ln]
    ends = [ln for ln in lines if " -> " in ln]
    assert len(starts) == 4 and len(ends) == 4
    assert starts[0].startswith("[repro] run 1/4 · a · seed 0  (e, smoke) started (pid ")
    assert starts[2].startswith("[repro] run 3/4 · ") and ") started (pid " in starts[2]
    assert starts[2].endswith("]") and "[so far: " in starts[2]
    first = ends[0]
    assert first.startswith("[repro] run 1/4 · a · seed 0 -> trained: val loss 1.5000, ")
    assert "(run run00000)  [so far: 1 trained, 0 reused, 0 failed; " in first
    assert "left for 3 run(s)]" in first
    assert "ffffffff" not in "".join(lines)  # the children's printed text is never read
    bad = next(ln for ln in ends if "· bad ·" in ln)
    assert bad.startswith("[repro] run 3/4 · bad · seed 2 -> FAILED: exit 1; log ")
    assert "3 trained, 0 reused, 1 failed" in ends[-1] and "~0:00 left for 0 run(s)" in ends[-1]


def test_a_child_stopped_by_a_signal_stops_the_pool(tmp_path):
    """A child that exits 130 (Ctrl-C reached it) stops the pool: the others are stopped, no
    new one starts, and the parent raises a KeyboardInterrupt (the CLI exits 130)."""
    import time

    from repro.pool import ChildInterrupted, Job, run_pool

    marker = tmp_path / "third-ran"
    jobs = [Job([sys.executable, "-c", "import time, sys; time.sleep(0.3); sys.exit(130)"],
                tmp_path / "a.log", data="a"),
            Job([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "b.log",
                data="b"),
            Job([sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"],
                tmp_path / "c.log", data="c")]
    started, done = [], []
    t0 = time.time()
    with pytest.raises(ChildInterrupted, match="exited 130") as exc:
        run_pool(jobs, 2, on_start=lambda job, pid: started.append(job.data),
                 on_done=lambda d: done.append((d.job.data, d.returncode)), poll_s=0.05,
                 stop_timeout=10)
    assert isinstance(exc.value, KeyboardInterrupt)
    assert started == ["a", "b"] and done == [("a", 130)]  # reported, then the pool stopped
    assert time.time() - t0 < 20  # b was stopped, not waited for
    assert not marker.exists()


def test_a_failed_child_does_not_stop_the_pool(tmp_path):
    from repro.pool import INTERRUPT_EXITS, Job, run_pool

    assert 1 not in INTERRUPT_EXITS and -9 not in INTERRUPT_EXITS  # a crash, an OOM kill
    jobs = [Job([sys.executable, "-c", f"import sys; sys.exit({rc})"], tmp_path / f"{i}.log",
                data=i) for i, rc in enumerate((1, 0, 0))]
    done = run_pool(jobs, 1, poll_s=0.05)
    assert [d.returncode for d in done] == [1, 0, 0]


PARENT = """
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script's `cmd &` starts it
from pathlib import Path
from repro.pool import Job, run_pool
d = Path(sys.argv[1])
child = "import time, pathlib, sys; pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
jobs = [Job([sys.executable, "-c", child, str(d / f"started-{i}")], d / f"{i}.log")
        for i in range(3)]
try:
    run_pool(jobs, 2, poll_s=0.05, stop_timeout=10)
except KeyboardInterrupt:
    sys.exit(130)
sys.exit(0)
"""


def test_sigint_stops_a_parent_that_inherited_it_ignored(tmp_path):
    """`nohup repro run NAME --jobs 2 &` from a script: SIGINT reaches the parent ignored; a
    `kill -INT` to it must still stop the pool (it used to be lost, the pool ran on)."""
    import signal
    import subprocess
    import time

    p = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)])
    try:
        deadline = time.time() + 30
        while len(list(tmp_path.glob("started-*"))) < 2 and time.time() < deadline:
            time.sleep(0.05)
        assert len(list(tmp_path.glob("started-*"))) == 2
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=20) == 130
    finally:
        p.kill()
    assert not (tmp_path / "started-2").exists()  # nothing started after the stop
