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
