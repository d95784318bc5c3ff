"""Router tests: run over the whole ROUTERS registry plus per-method paper checks."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from repro.config import ConfigError, apply_overrides
from repro.layers.moe import MoEConfig, MoEFFN
from repro.models import ModelConfig
from repro.routers import ROUTERS
from repro.routers.base import positions_in_expert
from repro.routers.expert_choice import ExpertChoiceRouterConfig, ec_capacity
from repro.routers.gshard import GShardRouterConfig
from repro.routers.noisy_topk import NoisyTopKRouterConfig
from repro.routers.switch import SwitchRouterConfig
from repro.routers.topk import TopKRouterConfig
from tests._moe_factories import D, E, init_module, moe_cfg, router_cfg

NAMES = ROUTERS.names()


def make_router(cfg, n_experts=E, d=D, seed=0):
    torch.manual_seed(seed)
    r = ROUTERS.get(cfg.kind)(cfg, d, n_experts)
    if getattr(cfg, "init_scale", None) == 0:  # zero-init gated routers (Shazeer): give them
        # a signal for routing tests
        with torch.no_grad():
            r.w.normal_(std=0.5)
    return r


# ------------------------------------------------------------------------ registry-wide checks
@pytest.mark.parametrize("name", NAMES)
def test_router_contract(name):
    r = make_router(router_cfg(name))
    B, T = 8, 6
    x = torch.randn(B * T, D)
    out = r(x, (B, T))
    A = out.token.numel()
    assert out.expert.shape == (A,) and out.weight.shape == (A,)
    assert out.weight.dtype == torch.float32 and torch.isfinite(out.weight).all()
    assert out.token.min() >= 0 and out.token.max() < B * T
    assert out.expert.min() >= 0 and out.expert.max() < E
    for k, a in out.aux.items():
        assert a.value.ndim == 0 and torch.isfinite(a.value), k
    for k, v in out.stats.items():
        assert not v.requires_grad and torch.isfinite(v).all(), k
    assert {"load", "importance", "drop_frac", "entropy"} <= set(out.stats)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("training", [True, False])
def test_stats_are_the_declared_ones_and_all_logged(name, training):
    """``Router.STATS`` is what a call returns (claims are checked against it), and every raw
    statistic reaches the logged metrics (a computed but never logged one fails here)."""
    from repro.metrics.logged import LOGGED_FROM, logged_stats
    from repro.metrics.routing import RoutingMetric

    r = make_router(router_cfg(name)).train(training)
    out = r(torch.randn(48, D), (8, 6))
    assert set(out.stats) == set(type(r).STATS), name
    assert set(out.stats) <= set(LOGGED_FROM), f"{name}: computed, never logged: " \
        f"{sorted(set(out.stats) - set(LOGGED_FROM))}"
    m = RoutingMetric(E)
    m.update(out.stats)
    assert set(m.compute()) == set(logged_stats(type(r).STATS)), name


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    kw = {"router_kw": {"z_loss": 1e-3}}
    m = init_module(MoEFFN(moe_cfg(name, n_shared=1, **kw), D))
    m.train()
    x = torch.randn(8, 8, D)
    out = m(x)
    assert (out.stats["load"] > 0).all(), "the test batch must reach every expert"
    loss = out.y.pow(2).sum() + sum(a.coef * a.value for a in out.aux.values())
    loss.backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_each_aux_loss_alone_trains_the_router(name):
    """Every auxiliary loss must carry gradient to the router on its own (a loss computed under
    no_grad silently turns a balance ablation into identical arms)."""
    torch.manual_seed(0)
    kw = {"router_kw": {"z_loss": 1e-3}}
    if name == "noisy_topk":
        kw["router_kw"].update(w_importance=0.1, w_load=0.1)
    m = init_module(MoEFFN(moe_cfg(name, **kw), D))
    m.train()
    out = m(torch.randn(8, 8, D))
    for key, term in out.aux.items():
        assert term.value.requires_grad, f"{name}: aux loss {key!r} has no gradient"
        m.zero_grad()
        term.value.backward(retain_graph=True)
        g = sum(p.grad.abs().sum() for p in m.router.parameters() if p.grad is not None)
        assert g > 0, f"{name}: aux loss {key!r} does not reach the router"


def test_noisy_topk_importance_loss_balances_importance():
    """Minimising Shazeer's importance loss alone [P-SHZ Eq. 7] drives CV(Importance) down."""
    torch.manual_seed(0)
    cfg = NoisyTopKRouterConfig(top_k=2, w_importance=1.0, w_load=0.0)
    r = ROUTERS.get("noisy_topk")(cfg, D, 8)
    with torch.no_grad():  # start collapsed: a strong bias towards expert 0 for every token
        r.w.normal_(std=0.1)
        r.w[:, 0] += 1.0
    x = torch.randn(256, D).abs()
    r.train()
    opt = torch.optim.Adam(r.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        cv2 = r(x).aux["importance"].value
        first = cv2.item() if first is None else first
        opt.zero_grad()
        cv2.backward()
        opt.step()
    assert cv2.item() < 0.25 * first, (first, cv2.item())


@pytest.mark.parametrize("name", NAMES)
def test_identical_seeds_identical_routing(name):
    outs = []
    for _ in range(2):
        r = make_router(router_cfg(name), seed=3)
        r.train()
        torch.manual_seed(7)
        x = torch.randn(32, D)
        o = r(x, (4, 8))
        outs.append((o.token, o.expert, o.weight))
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_config_factory_covers_registry():
    for name in NAMES:
        assert router_cfg(name).kind == name


# ------------------------------------------------------------------------------ token choice
@pytest.mark.parametrize("name", ["topk", "noisy_topk"])
def test_topk_gives_exactly_k_experts(name):
    r = make_router(router_cfg(name))
    N, K = 40, 2
    o = r(torch.randn(N, D), (5, 8))
    per_tok = torch.bincount(o.token, minlength=N)
    assert (per_tok == K).all()
    pairs = set(zip(o.token.tolist(), o.expert.tolist()))
    assert len(pairs) == N * K  # k distinct experts per token


def test_topk_with_capacity_gives_k_minus_drops():
    r = make_router(TopKRouterConfig(top_k=2, capacity_factor=0.5))
    N = 64
    o = r(torch.randn(N, D), (8, 8))
    per_tok = torch.bincount(o.token, minlength=N)
    assert (per_tok <= 2).all()
    dropped = N * 2 - o.token.numel()
    assert dropped > 0
    assert math.isclose(float(o.stats["drop_frac"]), dropped / (N * 2), rel_tol=1e-6)


CAPACITY_CASES = {
    "switch": SwitchRouterConfig(capacity_factor=1.0),
    "topk": TopKRouterConfig(top_k=2, capacity_factor=1.0),
    "gshard": GShardRouterConfig(capacity_factor=0.5, policy="all"),
    "expert_choice": ExpertChoiceRouterConfig(capacity_factor=1.0, group="batch"),
}


@pytest.mark.parametrize("name", list(CAPACITY_CASES))
def test_no_expert_exceeds_capacity(name):
    cfg = CAPACITY_CASES[name]
    r = make_router(cfg)
    with torch.no_grad():
        r.w[:, 0] += 2.0  # skew every token toward expert 0 so capacity binds
    N = 64
    x = torch.randn(N, D) + 1.0
    o = r(x, (8, 8))
    load = torch.bincount(o.expert, minlength=E)
    C = {"switch": math.floor(N / E * 1.0), "topk": math.floor(2 * N / E * 1.0),  # [P-SW] §2.2
         "gshard": math.floor(N * 0.5 / E), "expert_choice": ec_capacity(N, E, 1.0)}[name]
    assert load.max() <= C
    if name != "expert_choice":
        assert load[0] == C  # the skewed expert is full, not over-full


def test_gshard_first_choices_take_priority_and_gates_renormalise():
    cfg = GShardRouterConfig(policy="all", capacity_factor=1.0, alpha=0.0)
    r = make_router(cfg)
    with torch.no_grad():
        r.w.zero_()
    N = 16
    x = torch.randn(N, D)
    # every token: first choice expert 0, second choice expert 1
    logits_bias = torch.tensor([3.0, 2.0, 0.0, 0.0])
    r.logits = lambda x_: torch.zeros(x_.shape[0], E) + logits_bias  # type: ignore[method-assign]
    o = r(x, (2, 8))
    C = math.floor(N * 1.0 / E)  # 4
    first = o.expert == 0
    assert first.sum() == C and torch.equal(o.token[first], torch.arange(C))
    # expert 1 only receives second choices (of the first C tokens, in order)
    second = o.expert == 1
    assert torch.equal(o.token[second], torch.arange(C))
    p = torch.softmax(logits_bias, 0)
    g1, g2 = p[0] / (p[0] + p[1]), p[1] / (p[0] + p[1])
    assert torch.allclose(o.weight[first], g1.expand(C)) and torch.allclose(
        o.weight[second], g2.expand(C))


def test_gshard_random_policy_keeps_second_with_prob_2g2():
    cfg = GShardRouterConfig(policy="random", capacity_factor=100.0)
    r = make_router(cfg)
    N = 4000
    r.logits = lambda x_: torch.zeros(x_.shape[0], E) + torch.tensor(  # type: ignore[method-assign]
        [1.0, 0.5, -5.0, -5.0])
    torch.manual_seed(0)
    o = r(torch.randn(N, D), (40, 100))
    p = torch.softmax(torch.tensor([1.0, 0.5, -5.0, -5.0]), 0)
    g2 = float(p[1] / (p[0] + p[1]))
    frac = float(o.stats["second_frac"])
    assert abs(frac - min(1.0, g2 / 0.5)) < 0.03


def test_gshard_groups_capacity_per_group():
    cfg = GShardRouterConfig(policy="all", capacity_factor=1.0, group_size=8)
    r = make_router(cfg)
    with torch.no_grad():
        r.w[:, 0] += 3.0
    o = r(torch.randn(32, D) + 1.0, (4, 8))
    assert o.capacity == 4 * 2  # G=4 groups, C = floor(8 * 1 / 4) = 2 per group
    grp = o.token // 8
    key = grp * E + o.expert
    assert torch.bincount(key, minlength=4 * E).max() <= 2
    with pytest.raises(ValueError, match="group_size"):
        r(torch.randn(30, D), (3, 10))


def test_switch_aux_loss_hand_computation():
    cfg = SwitchRouterConfig(capacity_factor=10.0, z_loss=1e-3)
    r = make_router(cfg, n_experts=3, d=2)
    with torch.no_grad():
        r.w.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]])
    o = r(x, (1, 4))
    logits = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0], [1.5, 2.0, -1.0], [-0.75, 1.0, 1.0]]
    probs = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in logits]
    arg = [max(range(3), key=lambda i: row[i]) for row in probs]
    f = [sum(a == i for a in arg) / 4 for i in range(3)]
    P = [sum(row[i] for row in probs) / 4 for i in range(3)]
    want = 3 * sum(fi * pi for fi, pi in zip(f, P))
    assert math.isclose(o.aux["balance"].value.item(), want, rel_tol=1e-5)
    z = sum(math.log(sum(math.exp(v) for v in row)) ** 2 for row in logits) / 4
    assert math.isclose(o.aux["z"].value.item(), z, rel_tol=1e-5)


# ------------------------------------------------------------------------------- Shazeer 2017
def test_noisy_topk_zero_init_and_param_count():
    cfg = NoisyTopKRouterConfig()
    r = ROUTERS.get("noisy_topk")(cfg, D, 8)
    assert r.w.abs().sum() == 0 and r.w_noise.abs().sum() == 0
    assert cfg.param_count(D, 8) == sum(p.numel() for p in r.parameters()) == 2 * D * 8
    assert cfg.top_k == 4 and cfg.w_importance == 0.1 and cfg.w_load == 0.1


def _phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_noisy_topk_losses_equal_hand_computation():
    E_, K = 4, 2
    cfg = NoisyTopKRouterConfig(top_k=K, w_importance=0.1, w_load=0.1, noise_eps=0.01)
    r = ROUTERS.get("noisy_topk")(cfg, 2, E_)
    with torch.no_grad():
        r.w.copy_(torch.tensor([[1.0, -0.5, 0.2, 0.0], [0.3, 0.8, -1.0, 0.5]]))
        r.w_noise.copy_(torch.tensor([[0.1, 0.2, -0.3, 0.0], [0.0, -0.1, 0.4, 0.2]]))
    r.train()
    x = torch.tensor([[1.0, 0.5], [-0.5, 1.0], [0.2, -1.0]])
    torch.manual_seed(123)
    o = r(x, (1, 3))
    torch.manual_seed(123)
    eps = torch.randn(3, E_).tolist()  # the same draw the router made
    W = r.w.detach().tolist()
    Wn = r.w_noise.detach().tolist()
    imp = [0.0] * E_
    load = [0.0] * E_
    for n, xv in enumerate(x.tolist()):
        clean = [sum(xv[d] * W[d][e] for d in range(2)) for e in range(E_)]
        raw = [sum(xv[d] * Wn[d][e] for d in range(2)) for e in range(E_)]
        std = [math.log1p(math.exp(v)) + 0.01 for v in raw]
        H = [clean[e] + eps[n][e] * std[e] for e in range(E_)]
        top = sorted(range(E_), key=lambda e: -H[e])[:K]
        z = sum(math.exp(H[e]) for e in top)
        for e in top:
            imp[e] += math.exp(H[e]) / z
        for e in range(E_):
            others = sorted((H[j] for j in range(E_) if j != e), reverse=True)
            kth_excl = others[K - 1]  # k-th largest of H leaving out entry e
            load[e] += _phi((clean[e] - kth_excl) / std[e])

    def cv2(v):
        m = sum(v) / len(v)
        return (sum((a - m) ** 2 for a in v) / len(v)) / (m * m + 1e-10)

    assert math.isclose(o.aux["importance"].value.item(), cv2(imp), rel_tol=1e-4)
    assert math.isclose(o.aux["load"].value.item(), cv2(load), rel_tol=1e-4)
    assert o.aux["importance"].coef == 0.1 and o.aux["load"].coef == 0.1
    assert torch.allclose(o.stats["smooth_load"], torch.tensor(load), atol=1e-5)


def test_noisy_topk_noise_only_in_training():
    r = make_router(NoisyTopKRouterConfig(top_k=2))
    x = torch.randn(16, D)
    r.eval()
    a, b = r(x), r(x)
    assert torch.equal(a.expert, b.expert) and torch.equal(a.weight, b.weight)
    r.train()
    with torch.no_grad():
        r.w_noise.fill_(1.0)
    c, d = r(x), r(x)
    assert not torch.equal(c.weight, d.weight)


# ------------------------------------------------------------------------------ Expert Choice
@pytest.mark.parametrize("group", ["position", "sequence", "batch"])
def test_expert_choice_each_expert_takes_exactly_c_tokens(group):
    cfg = ExpertChoiceRouterConfig(group=group, capacity_factor=2.0)
    r = make_router(cfg)
    B, T = 8, 6
    o = r(torch.randn(B * T, D), (B, T))
    n = {"position": B, "sequence": T, "batch": B * T}[group]
    G = B * T // n
    C = ec_capacity(n, E, 2.0)
    assert torch.equal(torch.bincount(o.expert, minlength=E), torch.full((E,), G * C))
    assert o.capacity == G * C and o.expert_major
    # per group, an expert's C tokens are distinct members of that group
    t_of = o.token % T
    b_of = o.token // T
    gid = {"position": t_of, "sequence": b_of, "batch": torch.zeros_like(o.token)}[group]
    for e in range(E):
        for g in range(G):
            sel = o.token[(o.expert == e) & (gid == g)]
            assert sel.numel() == C and sel.unique().numel() == C
    assert o.stats["ept_hist"].sum() == B * T
    per_tok = torch.bincount(o.token, minlength=B * T)
    assert math.isclose(float(o.stats["zero_frac"]), float((per_tok == 0).float().mean()))


def _ec_block(group):
    cfg = moe_cfg("expert_choice", router_kw={"group": group})
    return init_module(MoEFFN(cfg, D)).eval()


def test_expert_choice_position_grouping_is_causal():
    torch.manual_seed(0)
    m = _ec_block("position")
    x = torch.randn(8, 10, D)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(8, 4, D)  # change every later token of every sequence
    y, y2 = m(x).y, m(x2).y
    assert torch.allclose(y[:, :6], y2[:, :6], atol=0, rtol=0)
    assert not torch.allclose(y[:, 6:], y2[:, 6:])


def test_expert_choice_sequence_grouping_leaks():
    """The same check fails for per-sequence groups: it can detect leakage."""
    torch.manual_seed(0)
    m = _ec_block("sequence")
    x = torch.randn(8, 10, D)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(8, 4, D) * 3
    assert not torch.allclose(m(x).y[:, :6], m(x2).y[:, :6])


def max_experts_per_token(o, n_tokens: int) -> int:
    return int(torch.bincount(o.token, minlength=n_tokens).max())


@pytest.mark.parametrize("cf,b", [(2.0, 2), (1.0, 1)])
def test_expert_choice_capped_greedy_bounds_experts_per_token(cf, b):
    cfg = ExpertChoiceRouterConfig(group="batch", capacity_factor=cf, cap=b)
    r = make_router(cfg)
    with torch.no_grad():
        r.w.normal_(std=2.0)  # peaked affinities: uncapped EC gives some tokens > 2 experts
    x = torch.randn(32, D)
    unc = ROUTERS.get("expert_choice")(ExpertChoiceRouterConfig(group="batch",
                                                                capacity_factor=cf), D, E)
    unc.load_state_dict(r.state_dict())
    assert max_experts_per_token(unc(x, (4, 8)), 32) > b
    o = r(x, (4, 8))
    assert max_experts_per_token(o, 32) <= b
    C = int(32 * cf / E)
    assert torch.bincount(o.expert, minlength=E).max() <= C
    pairs = set(zip(o.token.tolist(), o.expert.tolist()))
    assert len(pairs) == o.token.numel()
    m = init_module(MoEFFN(moe_cfg("expert_choice", router_kw={"cap": 2, "group": "batch"}), D))
    assert torch.isfinite(m(torch.randn(4, 8, D)).y).all()


def test_expert_choice_capped_dykstra_runs_and_fills_capacity():
    """The paper's relaxation: exactly C per expert (the cap is approximate, see docstring)."""
    cfg = ExpertChoiceRouterConfig(group="batch", capacity_factor=2.0, cap=2,
                                   cap_method="dykstra")
    r = make_router(cfg)
    o = r(torch.randn(32, D), (4, 8))
    assert torch.equal(torch.bincount(o.expert, minlength=E), torch.full((E,), 16))
    assert {"ept_hist", "zero_frac"} <= set(o.stats)  # how far the cap holds is logged


def test_expert_choice_gradient_is_exact():
    """Autograd gradient of the router equals a finite difference (eager path)."""
    cfg = ExpertChoiceRouterConfig(group="batch", capacity_factor=1.0)
    r = make_router(cfg).double()
    x = torch.randn(12, D, dtype=torch.float64)

    def f():
        o = r.__class__.forward(r, x, (1, 12))
        return (o.weight * torch.arange(1, o.weight.numel() + 1, dtype=o.weight.dtype)).sum()

    r.logits = lambda x_: x_ @ r.w  # type: ignore[method-assign]  (float64 for the check)
    loss = f()
    (g,) = torch.autograd.grad(loss, r.w)
    i, j, h = 3, 1, 1e-6
    with torch.no_grad():
        r.w[i, j] += h
        up = f()
        r.w[i, j] -= 2 * h
        dn = f()
        r.w[i, j] += h
    assert math.isclose(float(g[i, j]), float((up - dn) / (2 * h)), rel_tol=1e-5, abs_tol=1e-8)


def test_expert_choice_experts_per_token_is_capacity_factor():
    assert ExpertChoiceRouterConfig(capacity_factor=2.0).experts_per_token(64) == 2.0


# ----------------------------------------------------------------------------- config errors
BAD = [
    ("ffn.router.top_k=9", "top_k"),
    ("ffn.router.top_k=0", "top_k"),
    ("ffn.router.capacity_factor=0", "capacity_factor"),
    ("ffn.router.capacity_factor=-1", "capacity_factor"),
    ("ffn.neuron_ratio=0", "neuron_ratio"),
    ("ffn.neuron_ratio=1.5", "neuron_ratio"),
]


@pytest.mark.parametrize("override,field", BAD)
def test_config_errors_name_the_field(override, field):
    base = ModelConfig(ffn=MoEConfig(n_experts=8))
    with pytest.raises(ConfigError) as ei:
        apply_overrides(base, [override])
    msg = str(ei.value)
    assert "\n" not in msg, msg
    assert msg.startswith((f"ffn.{field}:", f"ffn.router.{field}:")), msg


@pytest.mark.parametrize("kind,override,field", [
    ("noisy_topk", "ffn.router.top_k=9", "top_k"),
    ("noisy_topk", "ffn.router.top_k=0", "top_k"),
    ("switch", "ffn.router.capacity_factor=0", "capacity_factor"),
    ("gshard", "ffn.router.capacity_factor=0", "capacity_factor"),
    ("gshard", "ffn.router.policy=sampling", "policy"),
    ("expert_choice", "ffn.router.capacity_factor=-0.5", "capacity_factor"),
    ("expert_choice", "ffn.router.group=token", "group"),
    ("expert_choice", "ffn.router.cap=0", "cap"),
])
def test_router_config_errors(kind, override, field):
    base = apply_overrides(ModelConfig(ffn=MoEConfig(n_experts=8)), [f"ffn.router.kind={kind}"])
    assert base.ffn.router.kind == kind
    with pytest.raises(ConfigError) as ei:
        apply_overrides(base, [override])
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"ffn.router.{field}:"), msg


def test_positions_in_expert_priority_order():
    expert = torch.tensor([1, 0, 1, 1, 0])
    assert positions_in_expert(expert, 2).tolist() == [0, 0, 1, 2, 1]


# ----------------------------------------------------------------------------- import hygiene
def test_model_code_imports_no_training_stack():
    code = ("import repro.routers, repro.layers, repro.models, sys; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('lightning', 'mlflow', 'optuna', 'pytorch_lightning')]; assert not bad, bad")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # and each package imports standalone (no import cycle between routers and layers)
    for mod in ("repro.routers", "repro.layers", "repro.models"):
        res = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True,
                             text=True)
        assert res.returncode == 0, res.stderr


# ------------------------------------------------------ a new router gets its tests for free
def test_a_new_router_is_tested_and_benchmarked_without_other_edits():
    """Register a throwaway router (tests/_probe_router.py) and nothing else: the factories and
    the bench pick it up in process, and a child pytest run over the router, layer, compute and
    bench test files collects and passes every registry-wide test for it."""
    from repro.bench import BenchSpec
    from repro.bench.layer import router_config
    from repro.bench.lm_throughput import method_arms
    from repro.config import variant_names
    from repro.routers import RouterConfig
    from tests import _probe_router as probe

    probe.register()
    try:
        assert router_cfg(probe.NAME).kind == probe.NAME
        assert probe.NAME in BenchSpec().routers and probe.NAME in method_arms(32, 64)
        assert router_config(probe.NAME, 3).top_k == 3
    finally:
        probe.unregister()
    assert probe.NAME not in ROUTERS and probe.NAME not in variant_names(RouterConfig)
    assert probe.NAME not in BenchSpec().routers

    code = ("import sys, pytest; from tests import _probe_router; _probe_router.register(); "
            "sys.exit(pytest.main(sys.argv[1:]))")
    files = ["tests/routers/test_routers.py", "tests/layers/test_layers.py",
             "tests/test_compute.py", "tests/bench/test_bench.py",
             "tests/routers/test_selftest.py"]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code, *files, "-p", "no:cacheprovider", "-k",
                          probe.NAME, "-rA", "-q"], cwd=root, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    passed = {line.split("::")[1].split("[")[0] for line in out.stdout.splitlines()
              if line.startswith("PASSED ") and probe.NAME in line}
    assert passed >= {  # the registry-wide tests of each file, now run for the probe
        "test_router_contract", "test_every_parameter_gets_a_gradient",
        "test_each_aux_loss_alone_trains_the_router", "test_identical_seeds_identical_routing",
        "test_identical_seeds_identical_lm_outputs", "test_backends_identical_outputs_and_grads",
        "test_lm_trains_under_bf16_autocast", "test_ffn_params_equal_module",
        "test_model_params_equal_module", "test_bench_cases_are_flop_matched",
        "test_bench_group_checks_every_router",
        "test_router_contract_item"}, out.stdout[-3000:]  # repro selftest's contract
