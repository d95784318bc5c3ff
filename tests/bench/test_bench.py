"""`repro bench`: a tiny --quick run writes the CSV with the expected columns, the reference check
catches a wrong backend before timing, and the dispatch paths the bench steers (auto's choice,
the fused slot permute of ``bmm``) keep equal outputs and gradients. No test asserts a timing."""

from __future__ import annotations

import csv

import pytest
import torch

from repro.bench import BenchSpec, format_table, run_bench
from repro.bench.layer import LayerCase, bench_group, dense_width, moe_config
from repro.bench.run import COLUMNS
from repro.layers.dispatch import Assignments
from repro.layers.dispatch_policy import BMM_MAX_PAD
from repro.layers.moe import MoEFFN
from repro.routers import ROUTERS
from tests._moe_factories import D, init_module, moe_cfg

TINY = dict(d_model=32, hidden=64, tokens=128, seq_len=16, reps=1, warmup=0, device="cpu",
            dtype=torch.float32)


def test_quick_bench_writes_csv(tmp_path):
    spec = BenchSpec.quick_spec(out_dir=str(tmp_path), experts=(8,), routers=("topk",
                                "expert_choice"), tokens=128, seq_len=16, d_model=32, hidden=64,
                                reps=1, train_steps=4, train_rounds=1)
    rows, path = run_bench(spec, log=lambda *a: None)
    assert path == tmp_path / f"bench-cpu-torch{torch.__version__.split('+')[0]}-quick.csv"
    with open(path) as f:
        got = list(csv.DictReader(f))
    assert list(got[0].keys()) == COLUMNS
    layer = [r for r in got if r["section"] == "layer"]
    assert {(r["router"], r["backend"]) for r in layer} == {
        (r, b) for r in ("topk", "expert_choice") for b in ("auto", "loop", "grouped_mm", "bmm")}
    assert all(r["ref_ok"] == "True" and float(r["ratio"]) > 0 for r in layer)
    assert all(r["alloc_policy"] and r["load_before"] for r in got)
    assert {r["backend"] for r in got if r["section"] == "train"} == {
        "bare", "bare+metrics", "lightning"}
    assert (tmp_path / path.name.replace(".csv", ".png")).exists()
    table = format_table(rows, "cpu")
    assert "targets (cpu" in table and "lightning / bare" in table


def test_plausibility_check_refuses_a_too_fast_block():
    # a fabricated block: right on the checked call, then it replays that output without
    # computing anything, so it "runs" far faster than dense at equal FLOPs
    def too_fast(m):
        real, seen = m.forward, {}

        def forward(x, *a, **k):
            if "y" not in seen:
                out = real(x, *a, **k)
                seen["y"] = out.y.detach()
                return out
            return seen["y"] + 0 * x

        m.forward = forward

    kw = {**TINY, "tokens": 512, "seq_len": 64, "d_model": 64, "hidden": 256, "reps": 3}
    rows = bench_group("topk", 8, 2, backends=["loop", "bmm"], wrong_backend={"bmm": too_fast},
                       **kw)
    by = {r["backend"]: r for r in rows}
    assert by["bmm"]["ref_ok"]  # the reference check cannot see it
    assert by["bmm"]["plausible"] is False and "refused" in by["bmm"]["note"]
    assert by["bmm"]["ratio"] != by["bmm"]["ratio"] and by["bmm"]["ratio_refused"] < 0.95
    assert by["loop"]["clock"] == "cpu" and "dense_drift" in by["loop"]


def test_reference_check_rejects_wrong_backend():
    def break_it(m):  # a "backend" whose experts compute something else
        with torch.no_grad():
            m.experts.w_down.mul_(1.5)

    rows = bench_group("topk", 8, 2, backends=["loop", "bmm", "grouped_mm"],
                       wrong_backend={"bmm": break_it}, **TINY)
    by = {r["backend"]: r for r in rows}
    assert not by["bmm"]["ref_ok"] and "differs from loop" in by["bmm"]["note"]
    assert by["bmm"]["ratio"] != by["bmm"]["ratio"]  # nan: never timed
    assert by["grouped_mm"]["ref_ok"] and by["loop"]["ref_ok"]


def test_bench_times_auto_itself_and_shows_its_probed_choice(monkeypatch):
    from repro.layers import dispatch_policy

    def timer(name, fn):  # fake: says bmm is fastest, whatever the clock says
        fn()
        return {"bmm": 1.0, "grouped_mm": 2.0, "loop": 3.0}[name]

    monkeypatch.setattr(dispatch_policy, "POLICY",
                        dispatch_policy.AutoPolicy(timer=timer, reps=1, probe=True, disk=False))
    rows = bench_group("topk", 8, 2, backends=["auto", "loop", "grouped_mm", "bmm"], **TINY)
    auto = next(r for r in rows if r["backend"] == "auto")
    assert auto["resolved_backend"] == "bmm" and auto["ref_ok"]
    assert auto["auto_choice"] == "probe grouped_mm=2000.0 bmm=1000.0 loop=3000.0 ms"
    assert auto["ratio"] == auto["ratio"] and "timed as" not in auto["note"]  # timed itself
    by = {b: dict(auto, section="layer", backend=b, ratio=v) for b, v in
          (("auto", 1.2), ("bmm", 1.2), ("grouped_mm", 1.1), ("loop", 1.5))}
    line = next(ln for ln in format_table(list(by.values()), "cpu").splitlines()
                if ln.startswith("topk "))
    assert line.endswith("   bmm (fastest here: grouped_mm)")


@pytest.mark.parametrize("router", ROUTERS.names())
def test_bench_cases_are_flop_matched(router):
    from repro.compute import ffn_count

    for E in (8, 64):
        cfg = moe_config(LayerCase(router, E, 2 if E < 64 else 8, 256, 2048), "auto")
        d_ff = dense_width(cfg, 256)
        assert cfg.d_expert % 8 == 0  # 16-byte rows: grouped_mm can run every case
        assert abs(6 * 256 * d_ff / ffn_count(cfg, 256).flops - 1) < 0.01


@pytest.mark.parametrize("router", ROUTERS.names())
def test_bench_group_checks_every_router(router):
    """Each registered router runs the bench's reference check on every backend (tiny shapes)."""
    rows = bench_group(router, 8, 2, backends=["loop", "grouped_mm", "bmm"], **TINY)
    assert [r["backend"] for r in rows] == ["loop", "grouped_mm", "bmm"]
    assert all(r["ref_ok"] and r["router"] == router for r in rows), rows


def test_bench_defaults_cover_every_router():
    from repro.bench.lm_throughput import method_arms

    assert BenchSpec().routers == tuple(ROUTERS.names())
    assert set(ROUTERS.names()) <= set(method_arms(32, 64))


# ------------------------------------------------------------------- dispatch paths (no timing)
def _pair(router="topk", **kw):
    torch.manual_seed(0)
    ref = init_module(MoEFFN(moe_cfg(router, backend="loop", **kw), D)).train()
    m = MoEFFN(moe_cfg(router, backend="bmm", **kw), D).train()
    m.load_state_dict(ref.state_dict())
    return ref, m


def _check_equal(ref, m, x, seed=3):
    outs = []
    for mod in (ref, m):
        torch.manual_seed(seed)
        xi = x.clone().requires_grad_(True)
        y = mod(xi).y
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append((y.detach(), xi.grad, {n: p.grad.clone() for n, p in mod.named_parameters()
                                           if p.grad is not None}))
    (y0, gx0, g0), (y1, gx1, g1) = outs
    assert torch.allclose(y0, y1, atol=1e-5)
    assert torch.allclose(gx0, gx1, atol=1e-5)
    assert g0.keys() == g1.keys()
    for n in g0:
        assert torch.allclose(g0[n], g1[n], atol=1e-5), n


def test_fused_slots_with_skewed_groups_and_empty_experts():
    ref, m = _pair(n_experts=6)
    with torch.no_grad():  # push most tokens to expert 1 and none to 4/5 -> heavy padding
        for mod in (ref, m):
            mod.router.w[:, 1] += 2.0
            mod.router.w[:, 4:] -= 5.0
    _check_equal(ref, m, torch.randn(4, 9, D) + 0.5)


def test_fused_slots_with_capacity_drops_and_nothing_routed():
    ref, m = _pair(router_kw={"capacity_factor": 0.5})
    _check_equal(ref, m, torch.randn(3, 5, D))
    ref, m = _pair("switch")
    _check_equal(ref, m, torch.randn(1, 1, D))  # a single token


def _assign(counts, full=False):
    counts = torch.tensor(counts)  # [E]
    A = int(counts.sum())
    return Assignments(torch.zeros(A, dtype=torch.long), torch.ones(A), counts, full,
                       int(counts[0]) if full else None)


def test_static_rule_grouped_mm_first_then_bmm_by_padding():
    m = MoEFFN(moe_cfg("topk", backend="static", n_experts=4), D)
    xf = torch.randn(64, D)
    balanced = _assign([32, 32, 32, 32])
    skewed = _assign([120, 4, 2, 2])  # E * max / A = 3.75 > BMM_MAX_PAD
    assert 4 * 120 / 128 > BMM_MAX_PAD
    assert m.dispatch_backend(xf, balanced) == "grouped_mm"  # D=16, F=8: aligned fp32 rows
    threads = torch.get_num_threads()
    try:  # expert-major full slots (EC): grouped_mm on one CPU thread, bmm on more
        torch.set_num_threads(2)
        assert m.dispatch_backend(xf, _assign([32] * 4, full=True)) == "bmm"
        torch.set_num_threads(1)
        assert m.dispatch_backend(xf, _assign([32] * 4, full=True)) == "grouped_mm"
    finally:
        torch.set_num_threads(threads)
    odd = MoEFFN(moe_cfg("topk", backend="static", n_experts=4, d_expert=6), D)  # 24-byte rows
    assert odd.dispatch_backend(xf, balanced) == "bmm"
    assert odd.dispatch_backend(xf, skewed) == "loop"
    fixed = MoEFFN(moe_cfg("topk", backend="loop", n_experts=4), D)
    assert fixed.dispatch_backend(xf, balanced) == "loop"
    auto = MoEFFN(moe_cfg("topk", backend="auto", n_experts=4), D)  # probe off in tests: the rule
    assert auto.dispatch_backend(xf, balanced) == "grouped_mm"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_backends_match_loop():
    rows = bench_group("topk", 8, 2, backends=["loop", "grouped_mm", "bmm", "auto"],
                       **{**TINY, "device": "cuda", "dtype": torch.bfloat16})
    assert all(r["ref_ok"] or "failed" in r["note"] for r in rows), rows


def test_lm_throughput_times_every_method_flop_matched_at_a_preset_shape():
    from repro.bench.lm_throughput import lm_throughput, scale_shape

    shape = scale_shape("smoke")
    assert shape["vocab"] == 96 and shape["d_ff"] == 88  # the preset's, not hand-typed
    rows = lm_throughput(steps=1, rounds=1, warmup=0, echo=lambda *_: None, **shape)
    by = {r["method"]: r for r in rows}
    assert set(ROUTERS.names()) | {"dense", "deepseekmoe", "mone", "finedeep"} <= set(by)
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["rel_dense"] > 0
        assert abs(r["ffn_flops"] / by["dense"]["ffn_flops"] - 1) < 0.05, r


def test_lm_throughput_times_an_experiments_own_arms_under_each_backend():
    """--experiment: the arms exactly as they train (unrounded widths), each MoE arm once per
    requested backend, against the experiment's dense arm."""
    from repro.bench.lm_throughput import experiment_models, time_models
    from repro.experiments.base import get_experiment

    cfgs, ref, shape = experiment_models("moe-vs-dense", "smoke", ["bmm", "loop"])
    exp = get_experiment("moe-vs-dense", "smoke")
    assert ref == "dense" and shape == {"seq_len": exp.data.seq_len,
                                        "batch": exp.recipe.batch_size}
    moe = [a.name for a in exp.arms if a.name != "dense"]
    assert set(cfgs) == {"dense"} | {f"{a}[{b}]" for a in moe for b in ("bmm", "loop")}
    for a in moe:
        assert cfgs[f"{a}[loop]"].ffn.backend == "loop"
        assert cfgs[f"{a}[bmm]"].ffn.d_expert == exp.run_config(a).model.ffn.d_expert
    rows = time_models(cfgs, ref, steps=1, rounds=1, warmup=0, echo=lambda *_: None, **shape)
    assert {r["method"] for r in rows} == set(cfgs)
    assert all(r["tokens_per_s"] > 0 for r in rows)
    assert next(r for r in rows if r["method"] == "dense")["rel_dense"] == 1.0


def test_peers_run_on_our_weights_and_a_wrong_peer_is_not_timed(monkeypatch):
    pytest.importorskip("transformers", minversion="5")
    from repro.bench import layer
    from repro.bench.run import verdicts

    rows = bench_group("topk", 8, 2, backends=["auto"], peers=True, **TINY)
    peers = [r for r in rows if r["backend"].startswith("hf-")]
    assert {r["backend"] for r in peers} == set(layer.PEER_NAMES)
    assert all(r["ref_ok"] and r["ref_max_err"] < 1e-4 and r["ratio"] > 0 for r in peers), peers
    v = [x for x in verdicts([dict(r, section="layer") for r in rows], "cpu")
         if "transformers" in x["target"]]
    assert len(v) == 1 and v[0]["best"].endswith(")")

    real = layer.build_peer

    def wrong(name, ours, device, dtype):  # a peer whose down projection was copied untransposed
        m = real(name, ours, device, dtype)
        with torch.no_grad():
            m.block.experts.down_proj.mul_(1.5)
        return m

    monkeypatch.setattr(layer, "build_peer", wrong)
    rows = bench_group("topk", 8, 2, backends=["auto"], peers=True, **TINY)
    bad = [r for r in rows if r["backend"].startswith("hf-")]
    assert bad and not any(r["ref_ok"] for r in bad)
    assert all(r["ratio"] != r["ratio"] for r in bad)  # NaN: never timed


def test_bench_peers_without_transformers_is_one_line(monkeypatch, capsys):
    from repro.bench import peers
    from repro.cli import main

    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name: None)
    assert main(["bench", "--quick", "--peers"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--peers: transformers is not installed" in err


def test_precision_trial_runs_both_precisions_on_identical_models():
    from repro.bench.precision import precision_trial

    rows = precision_trial(methods=("dense", "topk"), rounds=1, steps=1, scale="smoke",
                           echo=lambda *_: None)
    assert [r["method"] for r in rows] == ["dense", "topk"]
    for r in rows:
        assert r["fp32_tok_s"] > 0 and r["bf16_tok_s"] > 0 and r["steps"] == 3
        assert abs(r["ce_fp32"] - r["ce_bf16"]) < 0.05  # same init, same data: bf16 rounding only
