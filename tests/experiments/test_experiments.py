"""Every registered experiment runs end to end at smoke scale (real sqlite MLflow store)."""

import pytest

from repro.experiments.base import EXPERIMENTS, get_experiment, load_experiments
from tests._store import isolated_store

load_experiments()
NAMES = EXPERIMENTS.names()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    with isolated_store(root):
        yield root


@pytest.mark.parametrize("scale", ["smoke", "cpu", "cpu-v1", "gpu"])
@pytest.mark.parametrize("name", NAMES)
def test_definition_is_matched_and_claims_name_real_arms(name, scale):
    exp = get_experiment(name, scale)
    exp.validate()  # refuses unmatched arms
    arm_names = {a.name for a in exp.arms}
    assert len(arm_names) == len(exp.arms)
    for c in exp.claims:
        assert set(c.arms) <= arm_names, (c.name, c.arms)
        assert c.source and c.paper_figure and c.statement


@pytest.mark.parametrize("scale", ["smoke", "cpu", "cpu-v1", "gpu"])
@pytest.mark.parametrize("name", NAMES)
def test_every_claim_reads_a_metric_its_arm_produces(name, scale):
    from repro.experiments.produced import arm_metrics

    exp = get_experiment(name, scale)
    for c in exp.claims:
        for arm, metric in c.reads:
            assert metric in arm_metrics(exp, arm), (c.name, arm, metric)


def _with_claim(exp, name, **changes):
    from dataclasses import replace

    return replace(exp, claims=tuple(replace(c, **changes) if c.name == name else c
                                     for c in exp.claims))


def test_misspelt_claim_metric_is_refused_with_close_matches():
    from repro.config import ConfigError

    exp = _with_claim(get_experiment("shazeer-balance-ablation", "smoke"), "collapse-maxload",
                      metric="val_routing/max_mean_lod")
    with pytest.raises(ConfigError) as e:
        exp.validate()
    msg = str(e.value)
    assert msg.startswith("claims.collapse-maxload.metric: ") and "\n" not in msg
    assert "'val_routing/max_mean_lod'" in msg and "'val_routing/max_mean_load'" in msg


def test_claim_on_a_metric_of_another_arm_or_of_no_study_is_refused():
    from repro.config import ConfigError

    # a routing statistic of the dense arm: only the MoE arms log it
    exp = _with_claim(get_experiment("moe-vs-dense", "smoke"), "drop-rate",
                      arm="dense")
    with pytest.raises(ConfigError, match="produced only by arm"):
        exp.validate()
    # a pruning ratio the analysis does not measure
    exp = _with_claim(get_experiment("mone-pruning-curve", "smoke"), "prune-60pct-negligible",
                      metric="prune_delta@0.45")
    with pytest.raises(ConfigError, match=r"prune_delta@0\.45.*did you mean .*'prune_delta@0\.4'"):
        exp.validate()
    # Expert Choice's histogram is not logged by a Switch router
    exp = _with_claim(get_experiment("zloss-stability", "smoke"), "smaller-logits",
                      metric="val_routing/ept_gt4")
    with pytest.raises(ConfigError, match="no arm or analysis|did you mean"):
        exp.validate()


@pytest.mark.parametrize("name", NAMES)
def test_smoke_run_and_check(name, store):
    from repro.cli import main
    from repro.tracking import store as ts

    assert main(["run", name, "--scale", "smoke", "--seeds", "0", "--no-progress"]) == 0
    assert main(["check", name, "--scale", "smoke", "--seeds", "0"]) == 0
    out = store / "results" / name / "smoke"
    text = (out / "claims.md").read_text()
    exp = get_experiment(name, "smoke")
    for c in exp.claims:
        assert c.statement in text
    assert (out / "val_curves.png").exists()
    runs = ts.search_runs(ts.resolve_uri(), None)
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_check_records_overrides(store):
    """Results produced under --set overrides say so in claims.md and claims.json."""
    import json

    from repro.cli import main

    over = ["train.max_steps=12", "train.eval_every=6"]
    name = "switch-vs-dense"
    assert main(["run", name, "--scale", "smoke", "--seeds", "0", "--arm", "dense",
                 "--no-progress", "--set", *over]) == 0
    # one arm of four: a partial check (the folder may hold another test's complete result)
    assert main(["check", name, "--scale", "smoke", "--seeds", "0", "--partial", "--set",
                 *over]) == 0
    out = store / "results" / name / "smoke"
    assert "overrides `train.max_steps=12 train.eval_every=6`" in (out / "claims.md").read_text()
    env = json.loads((out / "claims.json").read_text())["env"]
    assert env.endswith("overrides `train.max_steps=12 train.eval_every=6`")
    # the device is where the runs trained (their repro.device tag), not the checking process
    assert "device cpu (" in env and "threads)" in env and "untagged" not in env


def test_run_jobs_trains_grid_in_parallel_processes(store, capsys):
    """`repro run --jobs 2` trains each (arm, seed) in its own process, which reports back
    through its result file; a second call skips the finished runs without starting a child."""
    from repro.cli import main
    from repro.tracking import store as ts

    name = "finedeep-mk-ablation"
    args = ["run", name, "--scale", "smoke", "--arm", "fd-m8k1", "--seeds", "0,1",
            "--no-progress", "--jobs", "2", "--threads", "1", "--set", "train.max_steps=8",
            "train.eval_every=4"]
    before = {r.info.run_id for r in ts.search_runs(ts.resolve_uri(), name)}
    assert main(args) == 0
    runs = [r for r in ts.search_runs(ts.resolve_uri(), name) if r.info.run_id not in before]
    assert {(r.data.tags[ts.T_ARM], r.data.tags[ts.T_SEED], r.info.status) for r in runs} == {
        ("fd-m8k1", "0", "FINISHED"), ("fd-m8k1", "1", "FINISHED")}
    assert len({r.data.tags[ts.T_PID] for r in runs}) == 2  # one process per run
    logs = sorted(p.name for p in (store / "runs" / "logs" / name / "smoke").iterdir())
    assert logs == ["fd-m8k1-s0.log", "fd-m8k1-s1.log"]  # result files read and removed
    out = capsys.readouterr().out
    for r in runs:  # the children's outcomes, as their result files gave them
        assert f"seed {r.data.tags[ts.T_SEED]} -> trained: val loss " in out
        assert f"(run {r.info.run_id[:8]})" in out
    assert main(args) == 0  # all finished: reused, nothing trained again
    out = capsys.readouterr().out
    assert "2 of 2 runs already finished (reused); 0 to train" in out
    assert "started (pid" not in out and "done: 0 trained, 2 reused" in out
    assert len(ts.search_runs(ts.resolve_uri(), name)) == len(before) + 2


def test_run_all_trains_each_distinct_run_once_then_check_all(store, capsys):
    """`repro run all` plans one run per distinct run key across experiments (shared arms once,
    finished runs skipped); `repro check all` then checks every experiment."""
    from repro.cli import main
    from repro.experiments.runner import plan_runs
    from repro.tracking import store as ts

    exps = [get_experiment(n, "smoke") for n in NAMES]
    uri = ts.resolve_uri()
    over = ["train.max_steps=4", "train.eval_every=2"]
    todo, n = plan_runs(exps, [0], over, uri)
    entries = sum(len(e.arms) for e in exps)
    assert n["total"] == entries and n["distinct"] == len(todo) + n["finished"]
    assert n["distinct"] < entries  # some arms are shared between experiments
    keys = [(e.name, a) for e, a, _ in todo]
    assert len(keys) == len(set(keys))
    assert main(["run", "all", "--scale", "smoke", "--seeds", "0", "--no-progress", "--set",
                 *over]) == 0
    todo2, n2 = plan_runs(exps, [0], over, uri)
    assert todo2 == [] and n2["finished"] == n["distinct"]
    capsys.readouterr()
    # --partial: earlier tests of this module left results on more seeds, which a check on
    # fewer seeds replaces only when asked (issue 28: never replace a result with fewer)
    assert main(["check", "all", "--scale", "smoke", "--seeds", "0", "--partial", "--set",
                 *over]) == 0
    out = capsys.readouterr().out
    assert f"checked {len(NAMES)} experiments" in out
