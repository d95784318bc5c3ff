"""`--seeds auto`: one seed per look under the registered group-sequential design (claims
evaluated by the real stats code); a fixed design adds nothing."""

from dataclasses import replace

from repro.experiments import check
from repro.experiments.autoseeds import continues, next_seeds, run_auto_seeds
from repro.experiments.base import get_experiment
from repro.experiments.claims import PairedMetricClaim, Results, RunRecord
from repro.experiments.sequential import Design
from repro.experiments.stats import INCONCLUSIVE, REPRODUCED

CLAIM = PairedMetricClaim(name="p", statement="", paper_figure="", source="", arm="a",
                          other="b")
# paired gaps a - b per seed: a positive effect hidden by spread at 3 seeds (d = 1.4)
GAPS = [0.05, 0.01, 0.07, 0.03, 0.06, 0.02, 0.05, 0.03, 0.06, 0.04, 0.05, 0.02]
DESIGN = Design(3, 10)


def results_for(seeds):
    runs = {}
    for s in seeds:
        runs[("a", s)] = RunRecord("a", s, f"a{s}", [(10, 3.0 + GAPS[s])])
        runs[("b", s)] = RunRecord("b", s, f"b{s}", [(10, 3.0)])
    return Results(runs)


def test_next_look_is_one_seed_and_the_boundary_decides():
    r3 = CLAIM.evaluate(results_for([0, 1, 2]), DESIGN)
    # fixed-n t at 3 seeds would say p = 0.14; the HSD boundary at look 3 is |t| >= 12.4
    assert r3.verdict == INCONCLUSIVE and continues(r3, DESIGN)
    assert next_seeds([r3], 3, DESIGN) == (4, ["p"])  # one seed per look, never a jump
    r10 = CLAIM.evaluate(results_for(range(10)), DESIGN)
    assert r10.verdict == REPRODUCED and not continues(r10, DESIGN)
    assert next_seeds([r10], 10, DESIGN) == (10, [])
    fixed = Design(3, 3)
    assert not continues(CLAIM.evaluate(results_for([0, 1, 2]), fixed), fixed)


def test_auto_loop_grows_one_seed_per_look_until_decided(monkeypatch):
    trained: list[list[int]] = []

    def fake_evaluate(exp, uri, overrides, seeds, out):
        return results_for(seeds), [CLAIM.evaluate(results_for(seeds), DESIGN)], []

    monkeypatch.setattr(check, "evaluate_claims", fake_evaluate)
    exp = replace(get_experiment("moe-vs-dense", "smoke"), seeds=(0, 1, 2), max_seeds=10)
    msgs = []
    seeds = run_auto_seeds(exp, lambda s: trained.append(list(s)), "unused", [], 10,
                           echo=msgs.append)
    assert [len(t) for t in trained] == list(range(3, len(seeds) + 1))  # +1 seed per look
    final = CLAIM.evaluate(results_for(seeds), DESIGN)
    assert final.verdict == REPRODUCED or len(seeds) == 10
    assert msgs[-1].startswith(f"[repro] --seeds auto: stopped at look n={len(seeds)}")


def test_auto_on_a_fixed_design_trains_the_planned_seeds_only(monkeypatch):
    trained = []
    monkeypatch.setattr(check, "evaluate_claims", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("a fixed design never evaluates for growth")))
    exp = get_experiment("ec-capped", "cpu")  # fixed-n: max_seeds == planned
    msgs = []
    assert run_auto_seeds(exp, trained.append, "unused", [], 10, echo=msgs.append) == [0, 1, 2]
    assert trained == [[0, 1, 2]] and "fixed-n" in msgs[-1]
