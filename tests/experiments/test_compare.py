"""``repro compare``: FLOP-matched arms, baseline runs shared by run key with the registered
experiments, the paired and adjusted verdict, and a smoke leaderboard written outside results/."""

from __future__ import annotations

import json
import math

import pytest

from repro.experiments.base import get_experiment
from repro.experiments.compare import (
    BASELINES,
    CompareSpec,
    Pair,
    build,
    decide_pairs,
    output_dir,
)
from repro.experiments.resolve import run_key

# the project's own leaderboard (docs/own-router.md): every built-in method against dense
BUILTIN = ("expert_choice", "gshard", "noisy_topk", "switch", "topk", "deepseekmoe", "mone",
           "finedeep")


@pytest.mark.parametrize("scale", ["smoke", "cpu", "gpu"])
def test_every_arm_is_flop_matched_at_the_dense_unit(scale):
    exp = build(CompareSpec(routers=("gshard", "noisy_topk"), scale=scale))
    assert [a.name for a in exp.arms] == ["gshard", "noisy_topk", *BASELINES]
    assert max(exp.validate().values()) <= 0.02
    dense = exp.counts()["dense"].ffn_flops
    for name, c in exp.counts().items():
        assert abs(c.ffn_flops / dense - 1) <= 0.02, (name, c.ffn_flops, dense)
    every = build(CompareSpec(routers=BUILTIN, against=("dense",), scale=scale, name="builtin"))
    assert max(every.validate().values()) <= 0.02
    ffn = {a.name: a.model.ffn for a in every.arms}
    assert ffn["mone"].neuron_ratio == 0.5 and ffn["finedeep"].kind == "finedeep"
    assert ffn["deepseekmoe"].n_shared == 1 and ffn["deepseekmoe"].n_experts == 31


def test_baselines_share_run_keys_with_moe_vs_dense():
    """dense / top2 / switch are moe-vs-dense's arms field for field: a store that trained the
    positive control trains none of them again."""
    control = get_experiment("moe-vs-dense", "cpu")
    exp = build(CompareSpec(routers=("gshard",), scale="cpu"))
    for ours, theirs in (("dense", "dense"), ("top2", "top2-e8"), ("switch", "switch-e8-cf1.25")):
        for seed in control.seeds:
            assert run_key(exp.run_config(ours), "fp", seed) == \
                run_key(control.run_config(theirs), "fp", seed), ours
    assert run_key(exp.run_config("gshard"), "fp", 0) != run_key(exp.run_config("top2"), "fp", 0)


def test_a_router_under_test_cannot_also_be_a_baseline_arm():
    from repro.config import ConfigError

    with pytest.raises(ConfigError, match="both a router under test and a baseline"):
        build(CompareSpec(routers=("gshard", "switch"), against=("dense", "switch")))


def _pair(gaps, router="r", baseline="b"):
    return Pair(router, baseline, list(gaps))


def test_verdicts_follow_the_projects_rule_and_the_adjustment():
    from scipy.stats import false_discovery_control, ttest_1samp

    from repro.experiments import stats as S

    clear = [0.10, 0.12, 0.11, 0.13, 0.09]  # the router is better on every seed, tightly
    worse = [-0.10, -0.12, -0.11, -0.13, -0.09]
    noise = [0.05, -0.04, 0.02, -0.06, 0.01]
    borderline = [0.03, 0.01, 0.05, 0.0, 0.04]  # two-sided p = 0.049 alone
    pairs = decide_pairs([_pair(clear, baseline="a"), _pair(worse, baseline="b"),
                          _pair(noise, baseline="c"), _pair(borderline, baseline="d")])
    v = {p.baseline: p.verdict for p in pairs}
    assert v["a"] == "beats" and v["b"] == "does not beat (worse)" and v["c"] == "inconclusive"
    # the p-values are the paired t's two-sided ones, adjusted by scipy's BH over the four
    raw = [ttest_1samp(g, 0.0).pvalue for g in (clear, worse, noise, borderline)]
    for p, r, w in zip(pairs, raw, false_discovery_control(raw, method="bh")):
        assert math.isclose(p.p, r, rel_tol=1e-9) and math.isclose(p.p_adj, w, rel_tol=1e-9)
        assert p.holm >= p.p_adj
    # alone, the borderline pair is decided (p <= 0.05); among four it is adjusted away
    alone = decide_pairs([_pair(borderline)])[0]
    assert alone.verdict == "beats" and alone.p_adj == alone.p <= 0.05
    assert v["d"] == "inconclusive" and pairs[3].p_adj > 0.05
    assert pairs[3].seeds_needed is not None and pairs[0].seeds_needed is None
    # the interval is the project's t-interval of the per-seed gaps
    iv = S.t_interval(clear)
    assert math.isclose(pairs[0].lo, iv.lo) and math.isclose(pairs[0].hi, iv.hi)


def test_zero_spread_is_decided_deterministically():
    (p,) = decide_pairs([_pair([0.02, 0.02, 0.02])])
    assert p.verdict == "beats" and p.interval == "deterministic (zero spread)"


def test_one_seed_is_inconclusive_never_a_verdict():
    (p,) = decide_pairs([_pair([0.5])])
    assert p.verdict == "inconclusive" and math.isnan(p.p)


def test_smoke_outputs_go_under_runs_and_others_under_results(tmp_runs):
    from repro.paths import results_dir, runs_dir

    smoke = output_dir(CompareSpec(routers=("gshard",), scale="smoke"))
    cpu = output_dir(CompareSpec(routers=("gshard",), scale="cpu", name="mine"))
    assert smoke == runs_dir() / "results" / "compare" / "gshard" / "smoke"
    assert cpu == results_dir() / "compare" / "mine" / "cpu"


def test_compare_at_smoke_trains_the_grid_and_writes_the_leaderboard(tmp_runs):
    from repro.experiments.compare import run_compare
    from repro.paths import results_dir

    spec = CompareSpec(routers=("gshard",), against=("dense",), scale="smoke")
    steps = ["train.max_steps=4", "train.eval_every=2", "train.log_every=2",
             "train.warmup_steps=1"]
    lb, out = run_compare(spec, overrides=steps, progress=False, echo=lambda *a: None)
    assert lb.trained == 4 and lb.reused == 0 and lb.seeds == [0, 1]
    assert {p.name for p in out.iterdir()} == {"leaderboard.md", "leaderboard.csv",
                                               "leaderboard.json", "val_curves.png"}
    assert not (results_dir() / "compare").exists()
    data = json.loads((out / "leaderboard.json").read_text())
    rows = {a["arm"]: a for a in data["arms"]}
    assert rows["gshard"]["seeds"] == 2 and math.isfinite(rows["gshard"]["loss"])
    assert rows["gshard"]["max_mean_load"] >= 1.0 and rows["dense"]["max_mean_load"] is None
    assert rows["gshard"]["total"] > rows["dense"]["total"]
    (pair,) = lb.pairs
    assert len(pair.gaps) == 2
    lb2, _ = run_compare(spec, overrides=steps, progress=False, echo=lambda *a: None)
    assert lb2.trained == 0 and lb2.reused == 4  # shared by run key
    assert [p.gaps for p in lb2.pairs] == [pair.gaps]


def test_the_comparison_reaches_jobs_children_only_while_it_runs(monkeypatch):
    """--jobs children rebuild the comparison from REPRO_COMPARE; the parent's environment and
    experiment registry are as before once the block ends."""
    import os

    from repro.experiments.base import EXPERIMENTS, get_experiment
    from repro.experiments.compare import ENV, for_children, register_from_env

    monkeypatch.delenv(ENV, raising=False)
    spec = CompareSpec(routers=("gshard",), against=("dense",), scale="smoke")
    with for_children(spec):
        assert spec.experiment in EXPERIMENTS and json.loads(os.environ[ENV])[0]["routers"] == \
            ["gshard"]
        child_env = os.environ[ENV]
    assert ENV not in os.environ and spec.experiment not in EXPERIMENTS
    monkeypatch.setenv(ENV, child_env)  # what a child sees
    register_from_env()
    try:
        exp = get_experiment(spec.experiment, "smoke")
        assert [a.name for a in exp.arms] == ["gshard", "dense"]
    finally:
        EXPERIMENTS.unregister(spec.experiment)
