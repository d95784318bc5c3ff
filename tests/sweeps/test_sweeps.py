"""Sweeps: spaces over real config paths, resumable exact-count studies, workers, pruning,
MLflow parent/child runs."""

import os
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from repro.cli import main
from repro.config import ConfigError, apply_overrides, flatten, to_dict
from repro.lit.config import RunConfig
from repro.registry import RegistryError
from repro.sweeps import SPACES, SweepSpec, get_space, sweep
from repro.sweeps.study import A_FAILURE, SweepContext, claim, reap, top_up

EXP, ARM = "switch-vs-dense", "switch-e4"
TINY = ("train.max_steps=4", "train.eval_every=2")

# for each space: overrides giving an arm it applies to (the space's paths must exist there)
APPLIES = {
    "lr": ["model.ffn.kind=dense"],
    "capacity": ["model.ffn.kind=moe", "model.ffn.router.kind=expert_choice"],
    "topk": ["model.ffn.kind=moe", "model.ffn.router.kind=topk"],
    "experts": ["model.ffn.kind=moe"],
    "granularity": ["model.ffn.kind=moe", "model.ffn.router.kind=topk"],
    "shazeer": ["model.ffn.kind=moe", "model.ffn.router.kind=noisy_topk"],
    "balance": ["model.ffn.kind=moe", "model.ffn.router.kind=switch"],
    "zloss": ["model.ffn.kind=moe", "model.ffn.router.kind=gshard"],
    "loss-weights": ["model.ffn.kind=moe", "model.ffn.router.kind=switch"],
    "mone": ["model.ffn.kind=moe"],
    "finedeep": ["model.ffn.kind=finedeep"],
}


def test_every_space_has_an_applicability_case():
    assert set(APPLIES) == set(SPACES.names())


@pytest.mark.parametrize("name", sorted(APPLIES))
def test_space_paths_are_real_config_fields(name):
    space = get_space(name)
    run = apply_overrides(RunConfig(), APPLIES[name])
    params = space.params_for(run, "arm")
    assert params
    flat = flatten(to_dict(run))
    for p in params:
        assert p.path in flat  # the same string as a --set key and an MLflow param
    # sampled values (derived ones included) are valid --set overrides of that config
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    sampled = space.sample(trial, run)
    try:
        apply_overrides(run, [f"{k}={v}" for k, v in sampled.items()])
    except ConfigError as e:  # only finedeep has infeasible pairs (they fail the trial)
        assert name == "finedeep", e
    if name != "lr":  # and a dense arm is refused with one line naming the missing path
        with pytest.raises(ConfigError, match=f"search space '{name}' needs model.ffn"):
            space.params_for(apply_overrides(RunConfig(), ["model.ffn.kind=dense"]), "dense")


def test_granularity_keeps_activated_width():
    space = get_space("granularity")
    run = apply_overrides(RunConfig(), ["model.ffn.kind=moe", "model.ffn.router.kind=topk",
                                        "model.ffn.n_experts=4", "model.ffn.d_expert=64",
                                        "model.ffn.router.top_k=1"])
    out = space.derive(flatten(to_dict(run)), {"model.ffn.n_experts": 16})
    assert out == {"model.ffn.d_expert": 16, "model.ffn.router.top_k": 4}


def test_unknown_space_has_close_match():
    with pytest.raises(RegistryError, match="did you mean 'capacity'"):
        get_space("capacty")


@pytest.mark.parametrize("args, fragment", [
    (["--arm", ARM, "--space", "capacty"], "did you mean 'capacity'"),
    (["--arm", "swich-e4"], "did you mean"),
    (["--arm", "dense", "--space", "capacity"], "needs model.ffn.router.capacity_factor"),
    (["--arm", ARM, "--trials", "0"], "--trials"),
    (["--arm", ARM, "--pruner", "medain"], "did you mean 'median'"),
    (["--arm", ARM, "--show"], "no study"),
    (["--arm", ARM, "--storage", "runs/optuna.db"], "not a database URL"),
])
def test_sweep_user_errors_are_one_line(args, fragment, tmp_runs, capsys):
    assert main(["sweep", EXP, "--scale", "smoke", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err


def test_dashboard_missing_or_dry_run(tmp_runs, capsys):
    import importlib.util

    rc = main(["dashboard", "--dry-run", "--port", "8766"])
    captured = capsys.readouterr()
    if importlib.util.find_spec("optuna_dashboard") is None:
        assert rc == 2 and "pip install optuna-dashboard" in captured.err
    else:
        assert rc == 0 and "127.0.0.1" in captured.out


def _runs(kind):
    from repro.tracking import store

    return [r for r in store.search_runs(store.resolve_uri(), EXP)
            if r.data.tags.get(store.T_KIND) == kind]


def _spec(**kw):
    base = dict(experiment=EXP, arm=ARM, trials=3, space="capacity", scale="smoke",
                overrides=TINY, pruner="none")
    base.update(kw)
    return SweepSpec(**base)


def test_smoke_sweep_parent_children_resume(tmp_runs):
    s = sweep(_spec())
    assert s["counts"]["complete"] == 3 and s["best"] is not None
    (parent,) = _runs("sweep")
    children = _runs("trial")
    assert len(children) == 3
    study = SweepContext(_spec(), create=False).study
    by_number = {t.number: t for t in study.trials}
    for r in children:
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        t = by_number[int(r.data.tags["repro.trial"])]
        assert r.info.status == "FINISHED" and t.user_attrs["mlflow_run_id"] == r.info.run_id
        for k, v in t.params.items():  # trial params == the child's params, same dotted keys
            assert r.data.params[k] == str(v)
    assert parent.data.tags[f"best.{next(iter(s['best']['params']))}"]
    from repro.tracking import store

    arts = [a.path for a in store.client(store.resolve_uri()).list_artifacts(
        parent.info.run_id, "plots")]
    assert "plots/optimization_history.png" in arts and "plots/slice.png" in arts
    out = tmp_runs / "results" / EXP / "smoke" / f"sweep-{ARM}-capacity.json"
    assert out.exists()

    # same command again: resumes, nothing retrained, same parent
    s2 = sweep(_spec())
    assert s2["counts"]["complete"] == 3 and len(_runs("trial")) == 3
    assert [r.info.run_id for r in _runs("sweep")] == [parent.info.run_id]
    assert _runs("sweep")[0].info.status == "FINISHED"
    # a larger --trials finishes only the remainder
    s3 = sweep(_spec(trials=4))
    assert s3["counts"]["complete"] == 4 and len(_runs("trial")) == 4
    assert len(SweepContext(_spec(), create=False).study.trials) == 4


def test_sweep_parent_run_ends_killed_or_failed_with_a_reason(tmp_runs):
    """The parent run's lifecycle (``tracked_run``): trials left when the time limit passes ->
    KILLED with a one-line reason; a crash of the launcher -> FAILED with the error; a rerun
    that finishes the study -> the same parent, FINISHED, the old reason dropped."""
    from repro.sweeps import study as st
    from repro.tracking import store

    s = sweep(_spec(trials=2, timeout=1e-6))  # the deadline passes before the first claim
    assert s["counts"]["waiting"] == 2
    (parent,) = _runs("sweep")
    assert parent.info.status == "KILLED"
    assert "2 of 2 trials unfinished" in parent.data.tags[store.T_FAIL]

    def crash(*a, **k):
        raise RuntimeError("disk on fire")

    with pytest.MonkeyPatch.context() as mp, pytest.raises(RuntimeError):
        mp.setattr(st, "work", crash)
        sweep(_spec(trials=2))
    (again,) = _runs("sweep")
    assert again.info.run_id == parent.info.run_id and again.info.status == "FAILED"
    assert again.data.tags[store.T_FAIL] == "RuntimeError: disk on fire"

    s = sweep(_spec(trials=2))
    (done,) = _runs("sweep")
    assert s["counts"]["complete"] == 2 and done.info.status == "FINISHED"
    assert store.T_FAIL not in done.data.tags and done.data.tags["repro.resumes"] == "2"


def test_pruned_and_failed_trials_are_recorded(tmp_runs, monkeypatch):
    s = sweep(_spec(trials=1, pruner="always"))
    assert s["counts"]["pruned"] == 1
    (child,) = _runs("trial")
    assert child.info.status == "KILLED" and child.data.tags["repro.trial_state"] == "PRUNED"
    assert s["steps"]["trained"] == 2 and s["steps"]["saved_fraction"] == 0.5

    # a NaN loss fails its trial and the sweep goes on (and the failure counts toward N)
    import repro.experiments.runner as runner

    real, calls = runner.train_one, []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise FloatingPointError("final validation loss is nan")
        return real(*a, **kw)

    monkeypatch.setattr(runner, "train_one", flaky)
    # the same study keeps its pruner (issue 29: another --pruner is refused), so the trial
    # after the failed one is pruned too
    s = sweep(_spec(trials=3, pruner="always"))
    assert (s["counts"]["pruned"], s["counts"]["failed"], s["counts"]["complete"]) == (2, 1, 0)
    failed = [t for t in s["trials"] if t["state"] == "FAIL"]
    assert "FloatingPointError" in failed[0]["failure"]


def test_dead_worker_trial_is_failed_and_requeued(tmp_runs):
    ctx = SweepContext(_spec(trials=2))
    assert top_up(ctx, 2) == 2 and top_up(ctx, 2) == 0
    tid = claim(ctx.study)
    ctx.study._storage.set_trial_user_attr(tid, "repro.host", __import__("socket").gethostname())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ctx.study._storage.set_trial_user_attr(tid, "repro.pid", dead.pid)
    assert reap(ctx) == 1
    states = [t.state for t in ctx.study.trials]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.WAITING) == 2
    lost = [t for t in ctx.study.trials if t.state == TrialState.FAIL][0]
    assert A_FAILURE not in lost.user_attrs  # lost, not counted: its retry is
    assert top_up(ctx, 2) == 0


def test_two_workers_share_one_study(tmp_runs):
    assert "REPRO_RUNS_DIR" in os.environ  # inherited by the worker processes
    s = sweep(_spec(trials=4, workers=2, overrides=("train.max_steps=2", "train.eval_every=2")))
    study = SweepContext(_spec(overrides=("train.max_steps=2", "train.eval_every=2")),
                    create=False).study
    assert len(study.trials) == 4 and s["counts"]["complete"] == 4
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    pids = {t.user_attrs["repro.pid"] for t in study.trials}
    assert len(pids) == 2 and os.getpid() not in pids  # both workers ran trials
    children = _runs("trial")
    assert sorted(int(r.data.tags["repro.trial"]) for r in children) == [0, 1, 2, 3]
    assert len({r.info.run_id for r in children}) == 4


def test_two_workers_reading_one_waiting_trial_claim_it_once(tmp_path, monkeypatch):
    """The race behind a flaky ``test_two_workers_share_one_study`` (UpdateFinishedTrialError on
    trial 0): Optuna's WAITING -> RUNNING compare-and-set reads with ``SELECT ... FOR UPDATE``,
    which SQLite ignores, so two workers that both read the trial as WAITING before either writes
    both claimed it. Here the two claimers (threads, each with its own storage connection, as
    two worker processes) are held after that read until the other has read too (1 s at most):
    exactly one of them may get the trial."""
    import contextlib
    import threading

    from optuna.storages._rdb import models

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=optuna.storages.RDBStorage(url), study_name="race")
    study.enqueue_trial({})
    real = models.TrialModel.find_or_raise_by_id.__func__
    both_read = threading.Barrier(2, timeout=1.0)

    def held_after_read(cls, trial_id, session, for_update=False):
        trial = real(cls, trial_id, session, for_update)
        if for_update:  # the compare-and-set's read: wait for the other claimer's
            with contextlib.suppress(threading.BrokenBarrierError):
                both_read.wait()
        return trial

    monkeypatch.setattr(models.TrialModel, "find_or_raise_by_id", classmethod(held_after_read))
    got = {}

    def worker(i):
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
        got[i] = claim(optuna.load_study(study_name="race", storage=storage))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(got.values(), key=str) == [study.trials[0]._trial_id, None], got


def _all_experiments():
    from repro.experiments.base import EXPERIMENTS, load_experiments

    load_experiments()
    return EXPERIMENTS.names()


@pytest.mark.parametrize("name", _all_experiments())
def test_every_experiment_arm_accepts_its_default_space(name):
    from repro.experiments.base import get_experiment
    from repro.sweeps import default_space

    exp = get_experiment(name, "smoke")
    space = get_space(default_space(exp))
    for arm in exp.arms:
        assert space.params_for(exp.run_config(arm), arm.name)


def _fake_trial_run(ctx, number: int, pid: int, since: float):
    """A child trial run as a worker with process ``pid`` leaves it (RUNNING)."""
    import socket

    from repro.sweeps.record import T_STUDY, T_TRIAL
    from repro.tracking import store

    uri = store.resolve_uri()
    exp_id = store.ensure_experiment(uri, EXP)
    run = store.client(uri).create_run(exp_id, tags={
        store.T_KIND: "trial", T_STUDY: ctx.name, T_TRIAL: str(number),
        store.T_PID: str(pid), store.T_HOST: socket.gethostname(),
        store.T_PID_SINCE: f"{since:.3f}"})
    return run.info.run_id


def test_next_sweep_closes_dead_workers_trial_runs_not_live_ones(tmp_runs, capsys):
    import time

    from repro.tracking import store

    ctx = SweepContext(_spec(trials=1))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead_id = _fake_trial_run(ctx, 0, dead.pid, time.time())
        live_id = _fake_trial_run(ctx, 1, live.pid, time.time())
        other = SweepContext(_spec(trials=1, space="lr", overrides=TINY))  # other study: untouched
        other_id = _fake_trial_run(other, 0, dead.pid, time.time())
        # `repro sweep --show` of the study is a sweep command too: it closes the dead one
        assert main(["sweep", EXP, "--arm", ARM, "--space", "capacity", "--scale", "smoke",
                     "--set", *TINY, "--show"]) == 0
        assert "marked 1 trial run(s) left RUNNING by dead workers FAILED" in \
            capsys.readouterr().out
        c = store.client(store.resolve_uri())
        r = c.get_run(dead_id)
        assert r.info.status == "FAILED" and r.data.tags["repro.trial_state"] == "FAIL"
        assert f"sweep worker process {dead.pid}" in r.data.tags[store.T_FAIL]
        assert c.get_run(live_id).info.status == "RUNNING"  # its process is alive
        assert c.get_run(other_id).info.status == "RUNNING"  # not this study's
        # the launcher closes them too (before training the remainder)
        dead2_id = _fake_trial_run(ctx, 2, dead.pid, time.time())
        sweep(_spec(trials=1))
        assert c.get_run(dead2_id).info.status == "FAILED"
        assert c.get_run(live_id).info.status == "RUNNING"
    finally:
        live.kill()
        live.wait()


def test_killed_worker_leaves_no_running_trial_run(tmp_runs):
    """kill -9 of a worker mid-trial: the next sweep command fails and re-queues the trial and
    marks its MLflow child run FAILED (it stayed RUNNING forever before)."""
    from repro.sweeps import record
    from repro.sweeps.study import _worker_cmd

    spec = _spec(trials=1)
    ctx = SweepContext(spec)
    top_up(ctx, 1)
    env = {**os.environ, "REPRO_FAULT": "kill@1", "OMP_NUM_THREADS": "1"}
    with record.parent_run(ctx) as parent:
        rc = subprocess.run(_worker_cmd(spec, ctx, parent.run_id, None), env=env,
                            capture_output=True, timeout=300).returncode
    assert rc == -9
    (child,) = _runs("trial")
    assert child.info.status == "RUNNING"  # left behind by the killed worker
    s = sweep(spec)  # the next sweep command: re-queues the trial, closes the run, finishes
    by_id = {r.info.run_id: r for r in _runs("trial")}
    assert by_id[child.info.run_id].info.status == "FAILED"
    assert "died while trial 0 was RUNNING" in by_id[child.info.run_id].data.tags[
        "repro.failure_reason"]
    assert s["counts"]["complete"] == 1 and s["counts"]["retried"] == 1
    assert not [r for r in by_id.values() if r.info.status == "RUNNING"]
