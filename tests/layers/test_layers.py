"""FFN block tests: run over FFN_BLOCKS, dispatch backends, DeepSeekMoE / MoNE / Finedeep checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from repro.config import ConfigError, apply_overrides
from repro.layers import FFN_BLOCKS, build_ffn
from repro.layers.dense import DenseFFN, DenseFFNConfig
from repro.layers.finedeep import FinedeepConfig, FinedeepFFN
from repro.layers.moe import MoEConfig, MoEFFN
from repro.layers.mone import keep_top_neurons
from repro.models import LM, ModelConfig
from repro.routers import ROUTERS
from repro.routers.base import Routing
from repro.routers.topk import TopKRouterConfig
from tests._moe_factories import F_EXPERT, D, E, ffn_cfg, init_module, moe_cfg

BLOCKS = FFN_BLOCKS.names()
ROUTER_NAMES = ROUTERS.names()


def grads(mod):
    return {n: p.grad.clone() for n, p in mod.named_parameters() if p.grad is not None}


# ------------------------------------------------------------------------ registry-wide checks
@pytest.mark.parametrize("name", BLOCKS)
def test_block_shapes_finite_and_activations(name):
    torch.manual_seed(0)
    m = init_module(build_ffn(ffn_cfg(name), D))
    x = torch.randn(4, 6, D)
    out = m(x)
    assert out.y.shape == x.shape and torch.isfinite(out.y).all()
    a = m.activations(x)
    assert a.ndim == 2 and torch.isfinite(a).all()


@pytest.mark.parametrize("name", BLOCKS)
def test_block_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    m = init_module(build_ffn(ffn_cfg(name), D))
    out = m(torch.randn(8, 8, D))
    loss = out.y.pow(2).sum() + sum(a.coef * a.value for a in out.aux.values())
    loss.backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("ffn", BLOCKS + [f"moe:{r}" for r in ROUTER_NAMES])
def test_identical_seeds_identical_lm_outputs(ffn):
    if ffn.startswith("moe:"):
        fc = moe_cfg(ffn.split(":")[1])
    else:
        fc = ffn_cfg(ffn)
    cfg = ModelConfig(vocab_size=64, d_model=D, n_layers=2, n_heads=2, ffn=fc)
    outs = []
    for _ in range(2):
        torch.manual_seed(11)
        lm = LM(cfg).train()
        idx = torch.randint(0, 64, (4, 8))
        loss, out = lm.loss(idx, idx)
        outs.append((loss, out.logits))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_factory_covers_registry():
    for name in BLOCKS:
        assert ffn_cfg(name).kind == name


# ------------------------------------------------------------------------- reference MoE math
def ref_moe(x, router_w, experts, k, normalize, neuron_k=None):
    """Per-token loop reference of softmax top-k MoE: y_t = sum_e g_e SwiGLU_e(x_t)."""
    ys = []
    for t in range(x.shape[0]):
        p = torch.softmax(x[t] @ router_w, -1)
        g, idx = p.topk(k)
        if normalize:
            g = g / g.sum()
        y = torch.zeros(x.shape[1])
        for gi, e in zip(g, idx.tolist()):
            a = F.silu(x[t] @ experts.w_gate[e])
            if neuron_k is not None:
                a = keep_top_neurons(a[None], neuron_k)[0]
            y = y + gi * ((a * (x[t] @ experts.w_up[e])) @ experts.w_down[e])
        ys.append(y)
    return torch.stack(ys)


def test_one_expert_top1_moe_equals_dense():
    torch.manual_seed(0)
    dense = init_module(DenseFFN(DenseFFNConfig(d_ff=24), D))
    moe = MoEFFN(MoEConfig(n_experts=1, d_expert=24, router=TopKRouterConfig(top_k=1)), D)
    with torch.no_grad():
        moe.experts.w_gate[0].copy_(dense.ffn.w_gate)
        moe.experts.w_up[0].copy_(dense.ffn.w_up)
        moe.experts.w_down[0].copy_(dense.ffn.w_down)
    x = torch.randn(3, 5, D)
    assert torch.allclose(moe(x).y, dense(x).y, atol=1e-6)


def test_deepseek_m1_no_shared_equals_plain_topk():
    """DeepSeekMoE at granularity m=1 and K_s=0 is plain (unnormalised) softmax top-k."""
    from repro.compute import fine_grained

    torch.manual_seed(0)
    N_, K_, d_ff, m, Ks = 4, 2, 16, 1, 0
    cfg = MoEConfig(n_experts=m * N_ - Ks, d_expert=fine_grained(d_ff, m), n_shared=Ks,
                    router=TopKRouterConfig(top_k=m * K_ - Ks, normalize=False))
    blk = init_module(MoEFFN(cfg, D))
    x = torch.randn(2, 5, D)
    want = ref_moe(x.view(-1, D), blk.router.w, blk.experts, K_, normalize=False)
    assert torch.allclose(blk(x).y.view(-1, D), want, atol=1e-5)


def test_deepseek_fine_grained_and_shared_counts():
    from repro.compute import ffn_count, fine_grained

    d_ff, N_, K_ = 32, 4, 2
    base = ffn_count(MoEConfig(n_experts=N_, d_expert=d_ff, router=TopKRouterConfig(top_k=K_)), D)
    for m, Ks in [(2, 1), (4, 1), (4, 2)]:
        cfg = MoEConfig(n_experts=m * N_ - Ks, d_expert=fine_grained(d_ff, m), n_shared=Ks,
                        router=TopKRouterConfig(top_k=m * K_ - Ks, normalize=False))
        c = ffn_count(cfg, D)
        # total and activated expert params fixed as m and K_s vary [P-DSM] §3 (router aside)
        assert c.total - D * cfg.n_experts == base.total - D * N_
        assert c.activated - D * cfg.n_experts == base.activated - D * N_


def test_shared_experts_apply_to_every_token():
    torch.manual_seed(0)
    blk = init_module(MoEFFN(moe_cfg("topk", n_shared=2), D))
    x = torch.randn(2, 5, D)

    def route_nothing(mod, xf):
        z = torch.zeros(0, dtype=torch.long)
        return Routing(z, z, torch.zeros(0))

    y = blk(x, routing_override=route_nothing).y
    assert torch.allclose(y, blk.shared(x), atol=1e-6)
    assert (y.abs().sum(-1) > 0).all()
    y_full = blk(x).y
    assert torch.allclose(y_full - blk.shared(x),
                          ref_moe(x.view(-1, D), blk.router.w, blk.experts, 2, True).view_as(x),
                          atol=1e-5)


# ----------------------------------------------------------------------------------- MoNE
@pytest.mark.parametrize("rho", [0.5, 0.25, 0.3])
def test_mone_keeps_exactly_ceil_rho_f_neurons(rho):
    torch.manual_seed(0)
    blk = init_module(MoEFFN(moe_cfg("topk", neuron_ratio=rho), D))
    a = blk.activations(torch.randn(2, 6, D))
    k = math.ceil(rho * F_EXPERT)
    assert blk.cfg.neuron_k == k
    assert ((a != 0).sum(-1) == k).all()


def test_mone_equals_reference_and_rho1_equals_plain_moe():
    torch.manual_seed(0)
    plain = init_module(MoEFFN(moe_cfg("topk"), D))
    rho1 = MoEFFN(moe_cfg("topk", neuron_ratio=1.0), D)
    rho1.load_state_dict(plain.state_dict())
    half = MoEFFN(moe_cfg("topk", neuron_ratio=0.5), D)
    half.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, D)
    xf = x.view(-1, D)
    assert torch.allclose(rho1(x).y.view(-1, D), ref_moe(xf, plain.router.w, plain.experts, 2,
                                                         True), atol=1e-5)
    assert torch.equal(rho1(x).y, plain(x).y)
    want = ref_moe(xf, plain.router.w, plain.experts, 2, True, neuron_k=4)
    assert torch.allclose(half(x).y.view(-1, D), want, atol=1e-5)


@pytest.mark.parametrize("rho", [0.5, 0.25])
@pytest.mark.parametrize("backend", ["loop", "grouped_mm", "bmm"])
def test_mone_gather_equals_mask(rho, backend):
    torch.manual_seed(0)
    kw = {"neuron_ratio": rho, "neuron_alpha": 0.01, "backend": backend}
    mask = init_module(MoEFFN(moe_cfg("topk", neuron_impl="mask", **kw), D))
    gath = MoEFFN(moe_cfg("topk", neuron_impl="gather", **kw), D)
    gath.load_state_dict(mask.state_dict())
    x = torch.randn(4, 8, D)
    res = []
    for m in (mask, gath):
        out = m(x)
        loss = out.y.pow(2).sum() + sum(a.coef * a.value for a in out.aux.values())
        loss.backward()
        res.append((out, grads(m)))
    (o1, g1), (o2, g2) = res
    assert torch.allclose(o1.y, o2.y, atol=1e-5)
    assert torch.allclose(o1.aux["neuron_balance"].value, o2.aux["neuron_balance"].value)
    for n in g1:
        assert torch.allclose(g1[n], g2[n], atol=1e-5), n


@pytest.mark.parametrize("F_, k", [(286, 143), (24, 6), (7, 1), (5, 5)])
def test_neuron_threshold_mask_equals_topk(F_, k):
    # the kthvalue threshold keeps exactly the top-k set of |a| (ties have probability 0 here)
    from repro.layers.mone import top_neuron_mask

    torch.manual_seed(F_)
    a = torch.nn.functional.silu(torch.randn(300, F_))  # [A, F]
    want = torch.zeros_like(a, dtype=torch.bool).scatter_(1, a.abs().topk(k, dim=-1).indices, True)
    got = top_neuron_mask(a, k)
    assert torch.equal(got, want) and int(got.sum(-1).min()) == k


def test_neuron_balance_loss_is_one_at_uniform_use():
    from repro.layers.mone import neuron_balance_loss

    # 4 tokens of one expert, F=4, K_n=2: every neuron kept by half the tokens, equal |a|
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.bool)
    a = mask.float()
    assert torch.allclose(neuron_balance_loss(a, mask, torch.tensor([4])), torch.tensor(1.0))
    skew = torch.tensor([[1, 1, 0, 0]] * 4, dtype=torch.bool)
    assert neuron_balance_loss(skew.float(), skew, torch.tensor([4])) > 1.0


# ------------------------------------------------------------------------------- backends
@pytest.mark.parametrize("router", ROUTER_NAMES + ["topk_cap", "mone"])
def test_backends_identical_outputs_and_grads(router):
    if router == "topk_cap":
        base = dict(router="topk", router_kw={"capacity_factor": 0.75})
    elif router == "mone":
        base = dict(router="topk", neuron_ratio=0.5)
    else:
        base = dict(router=router)
    torch.manual_seed(0)
    ref = init_module(MoEFFN(moe_cfg(**base, backend="loop"), D)).train()
    x = torch.randn(8, 8, D)
    results = {}
    for backend in ("loop", "grouped_mm", "bmm", "auto", "static"):
        m = MoEFFN(moe_cfg(**base, backend=backend), D).train()
        m.load_state_dict(ref.state_dict())
        torch.manual_seed(5)  # same routing noise / random policy draws
        out = m(x)
        loss = out.y.pow(2).sum() + sum(a.coef * a.value for a in out.aux.values())
        loss.backward()
        results[backend] = (out.y.detach(), grads(m))
    y0, g0 = results["loop"]
    for backend, (y, g) in results.items():
        assert torch.allclose(y, y0, atol=1e-5), backend
        assert g.keys() == g0.keys()
        for n in g0:
            assert torch.allclose(g[n], g0[n], atol=1e-5), (backend, n)


@pytest.mark.parametrize("ffn, backend", [(b, "loop") for b in BLOCKS] + [
    (f"moe:{r}", be) for r in [*ROUTER_NAMES, "mone"] for be in ("loop", "grouped_mm", "bmm")])
def test_lm_trains_under_bf16_autocast(ffn, backend):
    """bf16-mixed (the CUDA default, and CPU autocast) runs every block and backend: expert
    outputs come back in bf16 while the residual stream stays fp32."""
    if ffn == "moe:mone":
        fc = moe_cfg("topk", neuron_ratio=0.5, backend=backend)
    elif ffn.startswith("moe:"):
        fc = moe_cfg(ffn.split(":")[1], backend=backend)
    else:
        fc = ffn_cfg(ffn)
    torch.manual_seed(0)
    lm = LM(ModelConfig(vocab_size=64, d_model=D, n_layers=1, n_heads=2, ffn=fc)).train()
    idx = torch.randint(0, 64, (4, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, out = lm.loss(idx, idx)
        loss = loss + sum(a.coef * a.value for a in out.aux.values())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lm.parameters()
               if p.requires_grad)


def test_bmm_backend_pads_without_capacity():
    torch.manual_seed(0)
    m = init_module(MoEFFN(moe_cfg("topk", backend="bmm"), D))
    ref = MoEFFN(moe_cfg("topk", backend="loop"), D)
    ref.load_state_dict(m.state_dict())
    with torch.no_grad():
        m.router.w[:, 1] += 1.0  # unequal groups -> padding
        ref.router.w[:, 1] += 1.0
    x = torch.randn(3, 7, D) + 0.5
    assert torch.allclose(m(x).y, ref(x).y, atol=1e-6)


def test_backend_config_error():
    with pytest.raises(ConfigError, match=r"^backend: .*allowed: auto, grouped_mm, loop, bmm"):
        MoEConfig(backend="scatter")


# ---------------------------------------------------------------------------------- Finedeep
def test_finedeep_m1_gates_one_equals_dense():
    torch.manual_seed(0)
    dense = init_module(DenseFFN(DenseFFNConfig(d_ff=32), D))
    fd = FinedeepFFN(FinedeepConfig(d_ff=32, n_sublayers=1, n_experts=4, gate="none",
                                    norm=False), D)
    fd.load_dense(dense.ffn.w_gate, dense.ffn.w_up, dense.ffn.w_down)
    x = torch.randn(3, 5, D)
    assert torch.allclose(fd(x).y, dense(x).y, atol=1e-6)
    assert torch.allclose(fd.activations(x), dense.activations(x), atol=1e-6)


@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
def test_finedeep_matches_explicit_per_expert_loop(gate):
    """The fused implementation equals references.md §Finedeep's pseudo-code, per expert."""
    torch.manual_seed(0)
    M, K = 2, 3
    cfg = FinedeepConfig(d_ff=36, n_sublayers=M, n_experts=K, gate=gate, norm=True)
    fd = init_module(FinedeepFFN(cfg, D))
    with torch.no_grad():
        for n in fd.norms:
            n.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 4, D)
    f = cfg.d_expert
    h0 = x.reshape(-1, D)
    h = h0
    for j in range(M):
        z = fd.norms[j](h)
        outs, scores = [], []
        for i in range(K):
            sl = slice(i * f, (i + 1) * f)
            o = (F.silu(z @ fd.w_gate[j][:, sl]) * (z @ fd.w_up[j][:, sl])) @ fd.w_down[j][sl]
            outs.append(o)
            scores.append(o @ fd.router[j, i])
        s = torch.stack(scores, -1)
        r = s.sigmoid() if gate == "sigmoid" else s.softmax(-1)
        h = h + sum(r[:, i:i + 1] * outs[i] for i in range(K))
    assert torch.allclose(fd(x).y.reshape(-1, D), h - h0, atol=1e-5)


def test_finedeep_config_errors():
    with pytest.raises(ConfigError) as ei:
        FinedeepConfig(d_ff=30, n_sublayers=2, n_experts=4)
    msg = str(ei.value)
    assert msg.startswith("n_experts:") and "d_ff=30" in msg and "\n" not in msg
    base = ModelConfig(ffn=FinedeepConfig(d_ff=32, n_sublayers=2, n_experts=2))
    with pytest.raises(ConfigError, match=r"^ffn\.n_experts: .*must divide d_ff=32"):
        apply_overrides(base, ["ffn.n_experts=3"])
    with pytest.raises(ConfigError, match=r"^ffn\.gate: .*allowed: sigmoid, softmax, none"):
        apply_overrides(base, ["ffn.gate=relu"])


def test_finedeep_in_lm_trains_a_step():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, d_model=D, n_layers=2, n_heads=2,
                      ffn=FinedeepConfig(d_ff=32, n_sublayers=2, n_experts=2))
    lm = LM(cfg)
    opt = torch.optim.SGD(lm.parameters(), lr=0.1)
    idx = torch.randint(0, 64, (4, 8))
    l0, _ = lm.loss(idx, idx)
    l0.backward()
    opt.step()
    l1, _ = lm.loss(idx, idx)
    assert l1 < l0


def test_expert_choice_block_uses_bmm_view_under_auto():
    torch.manual_seed(0)
    cfg = moe_cfg("expert_choice", backend="auto", n_experts=E)
    m = init_module(MoEFFN(cfg, D))
    ref = MoEFFN(moe_cfg("expert_choice", backend="loop"), D)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(8, 4, D)
    assert torch.allclose(m(x).y, ref(x).y, atol=1e-6)


@pytest.mark.parametrize("router, F_", [("topk", 192), ("switch", 380), ("expert_choice", 192)])
def test_aligned_cpu_widths_run_grouped_mm_and_equal_loop(router, F_):
    # the cpu scale's aligned widths take grouped_mm under the static rule and give loop's
    # outputs and gradients
    from repro.layers import dispatch_policy
    from repro.layers.dispatch import sort_assignments

    torch.manual_seed(0)
    Dm = 32
    ref = init_module(MoEFFN(moe_cfg(router, d_expert=F_, backend="loop"), Dm)).train()
    x = torch.randn(2, 64, Dm)
    res = {}
    threads = torch.get_num_threads()
    for backend in ("loop", "static", "grouped_mm"):
        m = MoEFFN(moe_cfg(router, d_expert=F_, backend=backend), Dm).train()
        m.load_state_dict(ref.state_dict())
        torch.manual_seed(1)
        out = m(x)
        out.y.pow(2).sum().backward()
        res[backend] = (out.y, grads(m))
        if backend == "static":
            xf = x.view(-1, Dm)
            r = m.router(xf, (2, 64))
            s = sort_assignments(r.token, r.expert, r.weight, m.cfg.n_experts, r.capacity,
                                 r.expert_major)
            torch.set_num_threads(1)  # the rule's 1-thread branch (Expert Choice)
            try:
                assert dispatch_policy.choose_backend("static", xf, s, m.experts.weights,
                                                      m.activation()) == "grouped_mm"
            finally:
                torch.set_num_threads(threads)
    y0, g0 = res["loop"]
    for b, (y, g) in res.items():
        assert torch.allclose(y, y0, atol=1e-5), b
        for n in g0:
            assert torch.allclose(g[n], g0[n], atol=1e-5), (b, n)
