"""`--seeds auto`: the growth rule and the loop (claims evaluated by the real stats code)."""

from repro.experiments import check
from repro.experiments.autoseeds import next_seeds, run_auto_seeds
from repro.experiments.base import get_experiment
from repro.experiments.claims import PairedMetricClaim, Results, RunRecord
from repro.experiments.stats import INCONCLUSIVE, REPRODUCED

CLAIM = PairedMetricClaim(name="p", statement="", paper_figure="", source="", arm="a",
                          other="b")
# paired gaps a - b per seed: a positive effect hidden by spread at 3 seeds (d = 1.4)
GAPS = [0.05, 0.01, 0.07, 0.03, 0.06, 0.02, 0.05, 0.03, 0.06, 0.04, 0.05, 0.02]


def results_for(seeds):
    runs = {}
    for s in seeds:
        runs[("a", s)] = RunRecord("a", s, f"a{s}", [(10, 3.0 + GAPS[s])])
        runs[("b", s)] = RunRecord("b", s, f"b{s}", [(10, 3.0)])
    return Results(runs)


def test_next_seeds_rule():
    r3 = CLAIM.evaluate(results_for([0, 1, 2]))
    assert r3.verdict == INCONCLUSIVE and 3 < r3.seeds_needed <= 10
    assert next_seeds([r3], 3, 10) == (r3.seeds_needed, [])
    target, beyond = next_seeds([r3], 3, 3)  # the cap stops it, with the reason
    assert target == 3 and "cap 3" in beyond[0]
    done = CLAIM.evaluate(results_for(range(10)))
    assert done.verdict == REPRODUCED and next_seeds([done], 10, 12) == (10, [])


def test_auto_loop_grows_until_decided(monkeypatch):
    trained: list[list[int]] = []

    def fake_evaluate(exp, uri, overrides, seeds, out):
        return results_for(seeds), [CLAIM.evaluate(results_for(seeds))], []

    monkeypatch.setattr(check, "evaluate_claims", fake_evaluate)
    exp = get_experiment("moe-vs-dense", "smoke")
    msgs = []
    seeds = run_auto_seeds(exp, lambda s: trained.append(list(s)), "unused", [], 12,
                           echo=msgs.append)
    assert trained[0] == list(exp.seeds) and len(trained) >= 2
    assert seeds == list(range(len(seeds))) and len(seeds) <= 12
    final = CLAIM.evaluate(results_for(seeds))
    # it stops when decided, or when the re-estimated figure no longer asks for more
    assert final.verdict == REPRODUCED or next_seeds([final], len(seeds), 12)[0] <= len(seeds)
    assert msgs[-1].startswith(f"[repro] --seeds auto: {len(seeds)} seeds")
