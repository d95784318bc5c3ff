import math

from repro.experiments.claims import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    IncreasingClaim,
    Results,
    RunRecord,
    SpeedupClaim,
    speedup,
    steps_to_target,
)


def rec(arm, seed, losses, every=10):
    curve = [(every * (i + 1), v) for i, v in enumerate(losses)]
    return RunRecord(arm, seed, f"{arm}{seed}", curve)


def test_steps_to_target_and_speedup():
    base = rec("dense", 0, [5, 4, 3, 2])  # final 2 at step 40
    fast = rec("moe", 0, [4, 2, 1.5, 1])  # reaches 2 at step 20
    assert steps_to_target(base.val_curve, 2.0) == 40
    assert speedup(base, fast) == (2.0, False)
    slow = rec("moe", 0, [5, 4, 3, 2.5])
    s, capped = speedup(base, slow)
    assert capped and math.isclose(s, 40 / 50)


def test_speedup_and_increasing_claims():
    runs = {}
    for s in range(3):
        runs[("dense", s)] = rec("dense", s, [5, 4, 3, 2 + 0.01 * s])
        runs[("e4", s)] = rec("e4", s, [4.5, 3, 2, 1.9])  # reaches target at 30
        runs[("e8", s)] = rec("e8", s, [4, 1.9, 1.8, 1.7])  # at 20
    res = Results(runs)
    c = SpeedupClaim(name="s", statement="", paper_figure="", source="", baseline="dense",
                     arm="e8", threshold=1.0)
    r = c.evaluate(res)
    # the tested quantity is the uncensored delta: e8's best loss by step 40/1 minus the
    # baseline's final loss (1.7 - 2.00/2.01/2.02); the step ratio (2.0) is for figures
    assert r.verdict == REPRODUCED and math.isclose(r.mean, -0.31)
    assert r.per_seed["speedup (figure only)"] == [2.0, 2.0, 2.0]
    inc = IncreasingClaim(name="i", statement="", paper_figure="", source="", baseline="dense",
                          arm_order=("e4", "e8"))
    assert inc.evaluate(res).verdict == REPRODUCED  # 2.0 vs 1.33 on every seed
    dec = IncreasingClaim(name="d", statement="", paper_figure="", source="", baseline="dense",
                          arm_order=("e8", "e4"))
    assert dec.evaluate(res).verdict == NOT_REPRODUCED


def test_paired_equivalence_and_metric_claims():
    from repro.experiments.claims import EquivalenceClaim, MetricClaim, PairedMetricClaim

    runs = {}
    for s in range(3):
        runs[("a", s)] = rec("a", s, [3.0, 2.50 + 0.001 * s])
        runs[("b", s)] = rec("b", s, [3.0, 2.40 + 0.002 * s])
        runs[("a", s)].metrics["nsar@0.1"] = 0.2 + 0.01 * s
        runs[("b", s)].metrics["nsar@0.1"] = 0.3
    res = Results(runs)
    kw = dict(statement="", paper_figure="", source="")
    # a has the higher loss on every seed -> "b beats a" holds
    assert PairedMetricClaim(name="p", arm="a", other="b", **kw).evaluate(res).verdict == \
        REPRODUCED
    assert PairedMetricClaim(name="p", arm="b", other="a", **kw).evaluate(res).verdict == \
        NOT_REPRODUCED
    lower = PairedMetricClaim(name="n", arm="a", other="b", metric="nsar@0.1", greater=False,
                              **kw)
    assert lower.evaluate(res).verdict == REPRODUCED
    assert EquivalenceClaim(name="e", arm="a", other="b", margin=0.2, **kw).evaluate(res
                                                                                     ).verdict == \
        REPRODUCED
    assert EquivalenceClaim(name="e", arm="a", other="b", margin=0.02, **kw).evaluate(res
                                                                                      ).verdict == \
        NOT_REPRODUCED
    m = MetricClaim(name="m", arm="b", metric="nsar@0.1", threshold=0.25, greater=True, **kw)
    r = m.evaluate(res)
    assert r.verdict == REPRODUCED and abs(r.mean - 0.3) < 1e-12
    assert MetricClaim(name="m", arm="a", metric="nsar@0.1", threshold=0.21, greater=True,
                       **kw).evaluate(res).verdict == INCONCLUSIVE  # 0.21 inside 0.21 ± 0.01


def test_spike_metrics_flags_unrecovered_spikes_only():
    from repro.experiments.check import spike_metrics

    smooth = [(s, 5.0 - s / 100) for s in range(0, 400, 10)]
    assert spike_metrics(smooth, 40) == {"train/max_spike": 1.0, "train/diverged": 0.0}
    recovered = [(s, 10.0 if s == 200 else 4.0) for s in range(0, 400, 10)]
    m = spike_metrics(recovered, 40)
    assert m["train/max_spike"] == 2.5 and m["train/diverged"] == 0.0
    blown = [(s, 4.0 if s < 200 else 9.0) for s in range(0, 400, 10)]
    assert spike_metrics(blown, 40)["train/diverged"] == 1.0
    assert spike_metrics([(0, 9.0), (50, 4.0), (60, float("nan"))], 40)["train/diverged"] == 1.0
    early = [(0, 3.0), (10, 9.0), (50, 4.0), (60, 4.0)]  # a spike inside warmup is ignored
    assert spike_metrics(early, 40)["train/diverged"] == 0.0


def test_budget_gaps_crossover_and_trend():
    """A MoE that starts behind dense and overtakes it at step 30 (hand-built curves)."""
    from repro.experiments.claims import PairedMetricClaim, budget_gaps

    runs = {}
    for s in range(3):
        runs[("dense", s)] = rec("dense", s, [5.0, 4.0, 3.5, 3.2, 3.0, 2.9, 2.85, 2.8])
        moe = [5.5, 4.3, 3.4, 3.0, 2.7, 2.55, 2.45, 2.35]
        runs[("moe", s)] = rec("moe", s, [v + 0.01 * s for v in moe])
    res = Results(runs)
    g = budget_gaps(res, "moe", "dense")  # dense - moe: > 0 = moe ahead
    assert g.steps == [10, 20, 30, 40, 50, 60, 70, 80]
    assert math.isclose(g.intervals[0].mean, -0.51)  # 5.0 - (5.5 + 0.01)
    assert g.crossover == 30  # negative at 10, 20; positive from 30 on
    assert g.at[0.25][0] == 20 and g.at[0.5][0] == 40 and g.at[1.0][0] == 80
    assert g.trend == "opening"  # 0.19 at step 40 -> 0.44 at step 80
    r = PairedMetricClaim(name="p", statement="", paper_figure="", source="", arm="dense",
                          other="moe").evaluate(res)
    assert r.verdict == REPRODUCED and r.budget.crossover == 30
    flat = {k: rec(k[0], k[1], [3.0] * 8) for k in runs}
    assert budget_gaps(Results(flat), "moe", "dense").crossover is None
