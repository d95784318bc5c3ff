"""`repro check` on an incomplete grid refuses at once, and `repro run`'s `Next:` hint names a
command that works.

The refusal counts the grid's finished runs by their tags before any data, model or MLflow is
loaded (``check.refuse_incomplete_fast``); the runs here are MLflow runs with the tags a
training run carries, made directly (the count reads tags, not metrics: no training needed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from repro.experiments.base import get_experiment

NAME = "switch-vs-dense"


def _finished_runs(uri: str, pairs: list[tuple[str, int]], scale: str = "smoke",
                   experiment: str = NAME) -> None:
    from repro.tracking import store as ts

    c = ts.client(uri)
    exp_id = ts.ensure_experiment(uri, experiment)
    for arm, seed in pairs:
        r = c.create_run(exp_id, tags={ts.T_ARM: arm, ts.T_SEED: str(seed), ts.T_SCALE: scale,
                                       ts.T_EXPERIMENT: experiment,
                                       ts.T_ROLE: ts.ROLE_TRAIN})
        c.set_terminated(r.info.run_id, "FINISHED")


def test_finished_arm_seeds_counts_by_tags(tmp_runs):
    from repro.tracking import store as ts

    uri = ts.resolve_uri()
    _finished_runs(uri, [("dense", 0), ("dense", 1)])
    _finished_runs(uri, [("dense", 2)], scale="cpu")  # another scale: not counted
    assert ts.finished_arm_seeds(uri, NAME, "smoke") == {("dense", 0), ("dense", 1)}
    assert ts.finished_arm_seeds(uri, "no-such-experiment", "smoke") == set()


def test_check_refuses_an_incomplete_grid_before_loading_anything(tmp_runs):
    """A complete result on disk and 2 of 8 runs finished: the refusal names the missing runs
    and the command that trains them, exits 2, and never imports torch, Lightning or MLflow
    (measured 2026-12-08 on the loaded 2-core EPYC: 68-74 s before, 1.5-2.0 s now;
    docs/usage.md)."""
    from repro.tracking import store as ts

    uri = ts.resolve_uri()
    _finished_runs(uri, [("dense", 0), ("dense", 1)])
    out = tmp_runs / "results" / NAME / "smoke"
    out.mkdir(parents=True)
    (out / "claims.json").write_text(json.dumps({"missing": []}))  # a complete earlier result
    code = ("import sys, time; t = time.monotonic(); from repro.cli import main; "
            f"rc = main(['check', '{NAME}', '--scale', 'smoke']); "
            "print(rc, time.monotonic() - t, *(m in sys.modules for m in "
            "('torch', 'lightning', 'mlflow')))")
    env = {**os.environ, "REPRO_RUNS_DIR": str(tmp_runs / "runs"),
           "REPRO_RESULTS_DIR": str(tmp_runs / "results")}
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    wall = time.monotonic() - t0
    rc, secs, *heavy = p.stdout.split()
    assert rc == "2", p.stderr
    assert heavy == ["False", "False", "False"], p.stdout  # nothing heavy was loaded
    assert "6 of 8 runs of switch-vs-dense [smoke] have not finished" in p.stderr
    assert "switch-e4 seeds 0,1" in p.stderr
    assert "repro run switch-vs-dense --scale smoke" in p.stderr
    assert (out / "claims.json").read_text() == json.dumps({"missing": []})  # untouched
    print(f"refusal: {float(secs):.2f} s in main, {wall:.2f} s with interpreter start")


def test_next_hint_after_a_partial_run_names_the_command_that_finishes_the_grid(tmp_runs):
    from repro.experiment_commands import _next_after_run
    from repro.tracking import store as ts

    exp = get_experiment(NAME, "smoke")
    uri = ts.resolve_uri()
    args = SimpleNamespace(set=["train.max_steps=8"], tracking_uri=None, jobs=2)
    _finished_runs(uri, [("dense", 0)])
    hint = _next_after_run(exp, args, {("dense", 1)})  # this command's run, and the store's
    assert hint.startswith("6 of the 8 runs of the grid are not finished yet. Next: repro run "
                           "switch-vs-dense --scale smoke --set train.max_steps=8 --jobs 2")
    assert "repro check switch-vs-dense --scale smoke --set train.max_steps=8 --partial" in hint
    _finished_runs(uri, [(a.name, s) for a in exp.arms for s in exp.seeds])
    assert _next_after_run(exp, args, set()) == ("Next: repro check switch-vs-dense --scale smoke "
                                          "--set train.max_steps=8")


def test_fast_refusal_leaves_runs_shared_with_another_experiment_to_the_full_check(tmp_runs):
    """`repro run all` trains a run shared by two experiments once, under the first, possibly
    with another arm name: a missing (arm, seed) whose seed has runs in another experiment
    might be found there by run key, so the fast path does not refuse it."""
    from repro.experiments.check import IncompleteGridError, refuse_incomplete_fast
    from repro.tracking import store as ts

    uri = ts.resolve_uri()
    exp = get_experiment(NAME, "smoke")
    out = tmp_runs / "res"
    out.mkdir()
    (out / "claims.json").write_text(json.dumps({"missing": []}))
    _finished_runs(uri, [("dense", 0), ("dense", 1)])
    with pytest.raises(IncompleteGridError):  # nothing elsewhere: certain, refused at once
        refuse_incomplete_fast(exp, uri, None, out)
    _finished_runs(uri, [("switch-8e", 0), ("switch-8e", 1)], experiment="another")
    refuse_incomplete_fast(exp, uri, None, out)  # maybe shared: the full check decides
