"""``repro.tracking.lifecycle.tracked_run`` against a real (temporary sqlite) MLflow store: the
final status of every way a block can end, the one-line reason, and reopening a run."""

from __future__ import annotations

import json
import os

import pytest

from repro.tracking import store as ts
from repro.tracking.lifecycle import failure_reason, owner_tags, tracked_run


@pytest.fixture
def store(tmp_runs):
    uri = ts.resolve_uri()
    return ts.client(uri), ts.ensure_experiment(uri, "lifecycle-test")


def _status(client, run_id):
    run = client.get_run(run_id)
    return run.info.status, run.data.tags.get(ts.T_FAIL)


class Stop(Exception):
    pass


def test_a_clean_block_finishes_the_run(store):
    client, exp_id = store
    with tracked_run(client, exp_id, tags={"a": "1"}, run_name="r1") as run:
        assert client.get_run(run.run_id).info.status == "RUNNING" and not run.resumed
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.data.tags["a"] == "1"
    assert got.info.run_name == "r1" and ts.T_FAIL not in got.data.tags


@pytest.mark.parametrize("exc,status,reason", [
    (FloatingPointError("final validation loss is nan\nmore"), "FAILED",
     "FloatingPointError: final validation loss is nan"),
    (KeyboardInterrupt(), "KILLED", "interrupted (KeyboardInterrupt); rerun the same command to "
                                    "resume from the last checkpoint"),
    (Stop("stopped by SIGTERM at step 12"), "KILLED", "stopped by SIGTERM at step 12"),
])
def test_each_way_out_sets_its_status_and_one_line_reason(store, exc, status, reason):
    client, exp_id = store
    with pytest.raises(type(exc)):  # the exception goes on after the run is marked
        with tracked_run(client, exp_id, interrupts=(Stop,)) as run:
            raise exc
    assert _status(client, run.run_id) == (status, reason)


def test_end_as_ends_a_clean_exit_otherwise(store):
    client, exp_id = store
    with tracked_run(client, exp_id) as run:
        run.end_as("KILLED", "time limit reached with 3 trials left")
    assert _status(client, run.run_id) == ("KILLED", "time limit reached with 3 trials left")


def test_reopening_keeps_the_run_id_takes_ownership_and_drops_the_old_reason(store):
    client, exp_id = store
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(client, exp_id) as first:
            raise KeyboardInterrupt
    previous = client.get_run(first.run_id)
    with tracked_run(client, resume=previous) as again:
        assert again.run_id == first.run_id and again.resumed
        live = client.get_run(again.run_id)
        assert live.info.status == "RUNNING" and ts.T_FAIL not in live.data.tags
        assert live.data.tags[ts.T_PID] == str(os.getpid())
        assert live.data.tags[ts.T_RESUMES] == "1"
    assert _status(client, first.run_id) == ("FINISHED", None)


def test_params_are_cut_to_mlflow_limits_and_json_is_an_artifact(store, tmp_path):
    client, exp_id = store
    with tracked_run(client, exp_id) as run:
        run.log_params({"short": 3, "long": "x" * 700})
        run.log_json("config.json", {"seed": 3})
    params = client.get_run(run.run_id).data.params
    assert params["short"] == "3" and params["long"] == "x" * 500
    path = client.download_artifacts(run.run_id, "config.json", str(tmp_path))
    with open(path) as f:
        assert json.load(f) == {"seed": 3}


def test_owner_tags_and_failure_reason():
    tags = owner_tags()
    assert tags[ts.T_PID] == str(os.getpid()) and float(tags[ts.T_PID_SINCE]) > 0
    reason = failure_reason(ValueError("first line\nsecond line"))
    assert reason == "ValueError: first line"
    assert len(failure_reason(RuntimeError("y" * 1000))) == len("RuntimeError: ") + 400
