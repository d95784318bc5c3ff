"""The verdict engine: tests per claim type against scipy / by hand, locks, families and the
gate, the machine factor, and `repro verify` on the committed results."""

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from scipy.stats import beta, binomtest, false_discovery_control, ttest_1samp

from repro.experiments import stats as S
from repro.experiments import verdicts as V
from repro.experiments.base import get_experiment
from repro.experiments.claims import (
    CHECK,
    CONFIRMATORY,
    EXPLORATORY,
    GATE,
    NOT_REPRODUCED,
    PENDING,
    REPRODUCED,
    MetricClaim,
    PairedMetricClaim,
    RateClaim,
    Results,
    RunRecord,
    SpeedupClaim,
)

ROOT = Path(__file__).resolve().parents[2] / "results"
KW = dict(statement="", paper_figure="", source="")


def test_holm_and_bh_against_references():
    ps = [0.01, 0.04, 0.03, 0.005, 0.20, 0.049]
    # BH: scipy's false_discovery_control; by hand: min over j >= rank of p_(j) m / j
    assert S.bh(ps) == pytest.approx(list(false_discovery_control(ps, method="bh")))
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    by_hand = [0.0] * m
    for r, i in enumerate(order):
        by_hand[i] = min(min(1, ps[order[j]] * m / (j + 1)) for j in range(r, m))
    assert S.bh(ps) == pytest.approx(by_hand)
    # Holm 1979 by hand: sorted 0.005 0.01 0.03 0.04 0.049 0.2 times 6 5 4 3 2 1, running max
    assert S.holm(ps) == pytest.approx([0.05, 0.12, 0.12, 0.03, 0.2, 0.12])


def test_clopper_pearson_against_the_beta_quantiles():
    for k, n in ((0, 5), (2, 6), (5, 5), (3, 10)):
        lo, hi = S.clopper_pearson(k, n)
        assert lo == pytest.approx(0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1))
        assert hi == pytest.approx(1.0 if k == n else beta.ppf(0.975, k + 1, n - k))
    assert S.clopper_pearson(0, 5)[1] == pytest.approx(0.5218, abs=1e-4)  # [0, 0.52]


def test_rates_use_the_exact_binomial_never_a_t_interval():
    o = S.rate_outcome([0.0] * 5, 0.1, greater=False)  # 0 of 5 vs "rate < 0.1"
    assert o.test == S.EXACT_BINOMIAL and o.interval == S.CI_CP
    assert (o.lo, round(o.hi, 4)) == (0.0, 0.5218)
    assert o.p_for == pytest.approx(binomtest(0, 5, 0.1, alternative="less").pvalue)  # 0.59
    assert o.p > 0.05  # neither verdict holds at 5 seeds
    o10 = S.rate_outcome([0.0] * 10, 1 / 3, greater=False)  # against the paper's own rate
    assert o10.p_for == pytest.approx((2 / 3) ** 10) and o10.p_for < 0.025
    assert S.mcnemar_exact(0, 6) == pytest.approx(binomtest(0, 6, 0.5).pvalue)
    with pytest.raises(ValueError, match="0 or 1"):
        S.rate_outcome([0.5, 1.0], 0.1, greater=True)


def test_t_and_tost_against_scipy_and_zero_spread_is_deterministic():
    xs = [0.03, 0.05, 0.01, 0.04]
    o = S.t_outcome(xs, 0.0, greater=True)
    assert o.p_for == pytest.approx(ttest_1samp(xs, 0, alternative="greater").pvalue)
    assert o.p == pytest.approx(ttest_1samp(xs, 0).pvalue)
    ci = ttest_1samp(xs, 0).confidence_interval()
    assert (o.lo, o.hi) == pytest.approx((ci.low, ci.high))
    tost = S.tost_outcome([0.004, 0.006, 0.005, 0.003], margin=0.02)
    p_lo = ttest_1samp([0.004, 0.006, 0.005, 0.003], -0.02, alternative="greater").pvalue
    p_hi = ttest_1samp([0.004, 0.006, 0.005, 0.003], 0.02, alternative="less").pvalue
    assert tost.p_for == pytest.approx(max(p_lo, p_hi)) and tost.direction == REPRODUCED
    det = S.t_outcome([0.5, 0.5, 0.5], 0.0, greater=True)
    assert det.interval == S.CI_DET and math.isnan(det.lo) and "deterministic" in det.fmt()
    assert "[" not in det.fmt()  # never a zero-width interval


def rec(arm, seed, losses, every=10, machine=None):
    return RunRecord(arm, seed, f"{arm}{seed}", [(every * (i + 1), v)
                                                  for i, v in enumerate(losses)],
                     machine=machine)


def test_a_censored_speedup_is_measured_not_bounded():
    """No seed of the arm reaches the baseline's final loss: the old ratio was an upper bound
    (0.8 for every seed, sd 0); the delta is measured on every seed and decides 'not
    reproduced' by a t-test with a real spread."""
    runs = {}
    for s in range(4):
        runs[("dense", s)] = rec("dense", s, [5, 4, 3, 2])  # target 2.0 at step 40
        runs[("moe", s)] = rec("moe", s, [5, 4.5, 3.5, 2.5 + 0.05 * s])  # never reaches 2.0
    c = SpeedupClaim(name="s", baseline="dense", arm="moe", threshold=1.0, **KW)
    r = c.evaluate(Results(runs))
    assert r.per_seed["delta"] == pytest.approx([0.5, 0.55, 0.6, 0.65])
    assert r.outcome.sd > 0 and r.verdict == NOT_REPRODUCED
    assert "upper bound" not in r.measured
    # at k = 2 the delta reads the arm's best loss by step 20 (the 4.5)
    r2 = replace(c, threshold=2.0).evaluate(Results(runs))
    assert r2.per_seed["delta"] == pytest.approx([2.5] * 4)
    # without committed curves (summary.csv only) the claim is pending, never a verdict
    flat = {k: RunRecord(v.arm, v.seed, v.run_id, v.val_curve[-1:], curves=False)
            for k, v in runs.items()}
    p = c.evaluate(Results(flat))
    assert p.verdict == PENDING and p.outcome is None and "per-seed curves" in p.pending


def test_arms_are_never_paired_across_cpu_types():
    runs = {("a", 0): rec("a", 0, [3.0], machine="AMD EPYC"),
            ("b", 0): rec("b", 0, [2.9], machine="Intel Xeon"),
            ("a", 1): rec("a", 1, [3.0], machine="AMD EPYC"),
            ("b", 1): rec("b", 1, [2.9], machine="AMD EPYC")}
    res = Results(runs)
    assert res.seeds("a", "b") == [1] and res.cross_machine("a", "b") == [0]
    from repro.experiments.report import machine_dependent

    rows = [("e", "c", ("AMD EPYC",), "reproduced"), ("e", "c", ("Intel Xeon",), "inconclusive"),
            ("e", "d", ("AMD EPYC",), "reproduced"), ("e", "d", ("Intel Xeon",), "reproduced")]
    assert machine_dependent(rows) == {("e", "c")}


def _payload(name, claims, control=False):
    return {"experiment": name, "control": control, "claims": claims}


def _entry(name, family, p, up=True, pending=None):
    return {"name": name, "family": family, "p": p, "p_for": p / 2 if up else 1 - p / 2,
            "p_against": 1 - p / 2 if up else p / 2, "crossed": True, "pending": pending,
            "own_verdict": (REPRODUCED if up else NOT_REPRODUCED) if p <= 0.05 else
            "inconclusive"}


def test_families_gate_bh_and_holm():
    ctrl = _payload("ctrl", [_entry("g", GATE, 0.001)], control=True)
    other = _payload("x", [_entry("c1", CONFIRMATORY, 0.01), _entry("c2", CONFIRMATORY, 0.04),
                           _entry("c3", CONFIRMATORY, 0.03, up=False),
                           _entry("k1", CHECK, 0.02), _entry("k2", CHECK, 0.03),
                           _entry("e1", EXPLORATORY, 0.0001),
                           _entry("pd", CONFIRMATORY, 0.5, pending="needs curves")])
    V.adjust_scale([ctrl, other])
    got = {e["name"]: e for e in other["claims"]}
    # BH over the 3 decidable confirmatory claims: 0.03, 0.04, 0.04
    assert [got[n]["p_adj"] for n in ("c1", "c2", "c3")] == pytest.approx(
        list(false_discovery_control([0.01, 0.04, 0.03])))
    assert got["c1"]["verdict"] == REPRODUCED and got["c3"]["verdict"] == NOT_REPRODUCED
    assert got["c1"]["survives_holm"] and not got["c2"]["survives_holm"]  # Holm: 0.03, 0.08
    assert got["k2"]["p_adj"] == pytest.approx(0.04) and got["k2"]["verdict"] == REPRODUCED
    assert got["e1"]["verdict"] == V.EXPLORATORY_VERDICT and "p_adj" not in got["e1"]
    assert got["pd"]["verdict"].startswith(PENDING)
    # the same claims behind a control that is not reproduced: not interpretable
    ctrl2 = _payload("ctrl", [_entry("g", GATE, 0.2)], control=True)
    other2 = _payload("x", [_entry("c1", CONFIRMATORY, 0.01)])
    V.adjust_scale([ctrl2, other2])
    c1 = other2["claims"][0]
    assert c1["verdict"].startswith(V.NOT_INTERPRETABLE) and c1["verdict_if_gate_held"] == \
        REPRODUCED


def test_a_claim_edited_after_its_lock_becomes_exploratory():
    exp = get_experiment("ec-capped", "cpu")
    lock = V.make_lock(exp, "locked before runs", "abc", today="2026-12-08")
    assert all(V.lock_status(c, exp, lock) == V.L_LOCKED for c in exp.claims)
    moved = replace(exp.claims[0], margin=0.01)  # the threshold moved after the lock
    assert V.lock_status(moved, exp, lock) == V.L_DIFFERS
    assert V.claim_hash(V.canonical(moved, exp)) != lock["claims"][moved.name]["sha256"]
    new = replace(exp.claims[0], name="cap2-hurts-more")  # added after the lock
    assert V.lock_status(new, exp, lock) == V.L_NOT_IN_LOCK
    edited = replace(exp, claims=(moved, *exp.claims[1:]))
    res = V.results_from_folder(ROOT / "ec-capped" / "cpu")
    payload = V.judge(edited, res, lock, "env")
    V.adjust_scale([payload])
    e = payload["claims"][0]
    assert e["family"] == EXPLORATORY and e["lock"] == V.L_DIFFERS
    assert e["verdict"] == V.EXPLORATORY_VERDICT and e.get("estimate") is not None
    # a design change (more seeds allowed) changes every claim's hash too
    grown = replace(exp, max_seeds=10)
    assert V.lock_status(exp.claims[1], grown, lock) == V.L_DIFFERS
    # a hand-edited hash in the lock is caught
    lock["claims"]["cap3-matches"]["canonical"]["claim"]["margin"] = 0.05
    assert V.lock_problems(lock, Path("x"))


def test_verify_passes_on_the_committed_results():
    from repro.cli import main

    problems, checked = V.verify(ROOT)
    assert problems == [] and checked >= 40
    assert main(["verify"]) == 0


def test_verify_fails_on_a_hand_edited_number(tmp_path, monkeypatch, capsys):
    from repro.cli import main

    root = tmp_path / "results"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns("*.png"))
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(root))
    assert main(["verify"]) == 0
    summary = root / "mone-pruning-curve" / "cpu" / "summary.csv"
    text = summary.read_text()
    row = next(line for line in text.splitlines() if line.startswith("mone-pruning-curve,cpu,"
                                                                    "moe,0,"))
    cells = row.split(",")
    i = text.splitlines()[0].split(",").index("prune_delta@0.4")
    cells[i] = f"{float(cells[i]) - 0.01:.6g}"  # one per-seed value, nudged
    summary.write_text(text.replace(row, ",".join(cells)))
    capsys.readouterr()
    assert main(["verify"]) == 1
    err = capsys.readouterr().err
    assert "MISMATCH" in err and "mone-pruning-curve/cpu/claims.json" in err
    assert "prune-60pct-negligible" not in err or "estimate" in err  # names the field


def test_verify_fails_on_an_edited_verdict(tmp_path, monkeypatch, capsys):
    from repro.cli import main

    root = tmp_path / "results"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns("*.png"))
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(root))
    path = root / "ec-capped" / "cpu" / "claims.json"
    d = json.loads(path.read_text())
    d["claims"][1]["verdict_if_gate_held"] = "inconclusive"
    path.write_text(json.dumps(d, indent=1) + "\n")
    assert main(["verify"]) == 1
    assert "verdict_if_gate_held" in capsys.readouterr().err


def test_committed_results_have_no_zero_width_interval_bound_or_rate_t_interval():
    for f in ROOT.glob("*/*/claims.json"):
        d = json.loads(f.read_text())
        if d["scale"] in V.LEGACY_SCALES:
            continue
        exp = get_experiment(d["experiment"], d["scale"])
        rates = {c.name for c in exp.claims if isinstance(c, RateClaim)}
        for e in d["claims"]:
            assert "upper bound" not in e["measured"], (f, e["name"])
            lo, hi = e.get("ci") or [None, None]
            if lo is not None:
                assert hi > lo, (f, e["name"])
            if e["name"] in rates:
                assert e["interval"] == S.CI_CP
            for col in ("family", "test", "seeds", "measured", "p", "verdict", "lock", "cpu"):
                assert col in e, (f, e["name"], col)


def test_metric_claims_relative_to_the_final_loss():
    runs = {("a", s): rec("a", s, [2.0]) for s in range(3)}
    for s, v in enumerate((0.4, 0.5, 0.6)):
        runs[("a", s)].metrics["m"] = v
    c = MetricClaim(name="m", arm="a", metric="m", threshold=0.1, greater=True,
                    per_final_loss=True, **KW)
    assert c.evaluate(Results(runs)).mean == pytest.approx(0.25)
    assert PairedMetricClaim(name="p", arm="a", other="a", **KW).spec()["test"] == S.T_TEST
