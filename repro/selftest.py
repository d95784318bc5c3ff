"""The router conformance contract: ``repro selftest ROUTER`` and the project's registry tests.

One contract for every router, built in or plugged in (``repro.plugins``), run on CPU at test
size (D=16, E=8 experts of F=8, batches of 8 x 6 tokens) in seconds:

* ``shapes``: a routing call returns (token, expert, weight) of one length A with the right
  dtypes and ranges, scalar finite aux losses, and exactly the declared ``STATS`` (detached,
  finite); a router whose config has a capacity (``slots_per_token``) reports it
  (``Routing.capacity``) and no expert exceeds it;
* ``gradients``: in an MoE block (one shared expert) every parameter gets a non-zero gradient
  from the output plus the aux losses;
* ``backends``: every dispatch backend gives the outputs and gradients of ``loop`` (atol 1e-5);
* ``params``: the analytic parameter count (``RouterConfig.param_count`` through
  ``repro.compute``) equals the block's and the router's real ``numel``;
* ``flops``: the matmul FLOPs torch counts for one training forward of the block
  (``torch.utils.flop_counter``) equal the analytic formula 2*(router + a*3*D*F + shared) per
  token at the realized assignments per token a = A/N, and a never exceeds the config's
  ``experts_per_token`` (the figure the compute matching uses: an upper bound per routed token);
* ``determinism``: the same seed builds the same router and routes identically;
* ``resume``: a small LM with this router trained 6 steps (AdamW) equals one trained 3 steps,
  checkpointed (model, optimizer and the RNG states the project's checkpoint carries,
  ``repro.lit.checkpoint.ResumeState``), restored into a fresh model and trained 3 more: same
  losses and parameters, bit for bit.

``run_selftest(name)`` returns one ``Check`` per item; ``check(name, item)`` raises
``AssertionError`` with the reason (the pytest form, tests/routers/test_selftest.py).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

D, E, F_EXPERT = 16, 8, 8  # model width, routed experts, expert hidden width
B, T = 8, 6  # a routing call's batch: N = 48 tokens
ATOL = 1e-5


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float


def router_config(name: str):
    """The registered router ``name``'s config with its defaults (E=8 fits every default K)."""
    from repro.routers import ROUTERS

    cfg = ROUTERS.get(name, field="router").Config()
    cfg.validate_for(E)
    return cfg


def build_router(name: str, seed: int = 0):
    from repro.routers import ROUTERS

    torch.manual_seed(seed)
    cfg = router_config(name)
    r = ROUTERS.get(name)(cfg, D, E)
    _signal(r)
    return r


def _signal(router) -> None:
    """A zero-initialised gate (Shazeer's rule) routes on noise alone: give it a signal."""
    if getattr(router.cfg, "init_scale", None) == 0 and hasattr(router, "w"):
        with torch.no_grad():
            router.w.normal_(std=0.5)


def build_block(name: str, backend: str = "loop", seed: int = 0, n_shared: int = 1):
    from repro.layers.moe import MoEConfig, MoEFFN

    torch.manual_seed(seed)
    cfg = MoEConfig(n_experts=E, d_expert=F_EXPERT, n_shared=n_shared, backend=backend,
                    router=router_config(name))
    m = MoEFFN(cfg, D)
    for mod in m.modules():  # as LM.reset_parameters does
        if hasattr(mod, "init_weights"):
            mod.init_weights(0.2, 0.2)
    _signal(m.router)
    return m.train()


# ------------------------------------------------------------------------------------ the checks
def check_shapes(name: str) -> str:
    r = build_router(name).train()
    N = B * T
    out = r(torch.randn(N, D), (B, T))
    A = out.token.numel()
    assert out.token.shape == out.expert.shape == out.weight.shape == (A,), \
        f"token/expert/weight must be 1-D of one length, got {tuple(out.token.shape)}, " \
        f"{tuple(out.expert.shape)}, {tuple(out.weight.shape)}"
    assert out.token.dtype == out.expert.dtype == torch.long, "token and expert must be long"
    assert out.weight.dtype == torch.float32, f"weight must be float32, got {out.weight.dtype}"
    assert torch.isfinite(out.weight).all(), "non-finite gate weights"
    if A:
        assert 0 <= int(out.token.min()) and int(out.token.max()) < N, "token index out of [0, N)"
        assert 0 <= int(out.expert.min()) and int(out.expert.max()) < E, \
            "expert index out of [0, E)"
    for k, a in out.aux.items():
        assert a.value.ndim == 0 and torch.isfinite(a.value), f"aux loss {k!r} is not a " \
            "finite scalar"
    assert set(out.stats) == set(type(r).STATS), \
        f"stats {sorted(out.stats)} differ from the config's STATS {sorted(type(r).STATS)}"
    for k, v in out.stats.items():
        assert not v.requires_grad and torch.isfinite(v).all(), f"stat {k!r} must be detached " \
            "and finite"
    slots = r.cfg.slots_per_token(E)
    if slots is not None:
        assert out.capacity is not None, "the config has a capacity (slots_per_token) but the " \
            "routing does not report it: set Routing.capacity"
        load = torch.bincount(out.expert, minlength=E)
        assert int(load.max()) <= out.capacity, \
            f"an expert got {int(load.max())} > capacity {out.capacity}"
    cap = "" if out.capacity is None else f", capacity {out.capacity}"
    return f"{A} assignments for {N} tokens{cap}; stats {', '.join(sorted(out.stats))}"


def check_gradients(name: str) -> str:
    m = build_block(name)
    out = m(torch.randn(8, 8, D))
    loss = out.y.pow(2).sum() + sum(a.coef * a.value for a in out.aux.values())
    loss.backward()
    none = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    if none:
        load = out.stats.get("load")
        hint = ""
        if load is not None and not (load > 0).all():
            hint = f" (experts without tokens in the test batch: " \
                   f"{(load == 0).nonzero().flatten().tolist()})"
        raise AssertionError(f"no gradient reaches {', '.join(none)}{hint}")
    n = sum(1 for _ in m.parameters())
    return f"all {n} parameters of the block get a gradient ({len(out.aux)} aux losses)"


def _grads(m) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


def check_backends(name: str) -> str:
    from repro.layers.moe_config import BACKENDS

    ref = build_block(name, "loop")
    x = torch.randn(8, 8, D)
    results = {}
    for backend in ("loop", *[b for b in BACKENDS if b != "loop"]):
        m = build_block(name, backend)
        m.load_state_dict(ref.state_dict())
        torch.manual_seed(5)  # same routing noise / random policy draws
        out = m(x)
        (out.y.pow(2).sum() + sum(a.coef * a.value for a in out.aux.values())).backward()
        results[backend] = (out.y.detach(), _grads(m))
    y0, g0 = results["loop"]
    bad = []
    for backend, (y, g) in results.items():
        if not torch.allclose(y, y0, atol=ATOL):
            bad.append(f"{backend} output (max diff {float((y - y0).abs().max()):.2e})")
        elif g.keys() != g0.keys() or any(not torch.allclose(g[k], g0[k], atol=ATOL) for k in g0):
            bad.append(f"{backend} gradients")
    assert not bad, "differ from loop: " + "; ".join(bad)
    return f"{', '.join(b for b in results if b != 'loop')} equal loop (atol {ATOL:g})"


def check_params(name: str) -> str:
    from repro.compute import count_module_params, ffn_count
    from repro.layers.base_config import router_params

    m = build_block(name)
    want_router = router_params(m.router.cfg, D, E)
    got_router = count_module_params(m.router)
    assert want_router == got_router, f"router: param_count says {want_router}, the module " \
        f"has {got_router}; fix {type(m.router.cfg).__name__}.param_count"
    want, got = ffn_count(m.cfg, D).total, count_module_params(m)
    assert want == got, f"block: analytic {want} != module {got}"
    return f"router {got_router}, block {got} parameters, as counted"


def check_flops(name: str) -> str:
    from torch.utils.flop_counter import FlopCounterMode

    from repro.layers.base_config import router_params, swiglu_params

    m = build_block(name)
    N = 8 * 8
    x = torch.randn(8, 8, D)
    seen = []
    orig = m.router.forward

    def spy(*a, **kw):
        r = orig(*a, **kw)
        seen.append(r.token.numel())
        return r

    m.router.forward = spy
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(x)
    measured = fc.get_total_flops()
    A = seen[0]
    a = A / N  # realized experts per token
    router = router_params(m.router.cfg, D, E)
    want = 2.0 * (router + a * swiglu_params(D, F_EXPERT) + swiglu_params(D, m.cfg.shared_width))
    assert abs(measured / N - want) <= 1e-6 * want, \
        f"measured {measured / N:.1f} FLOPs/token, the formula gives {want:.1f} at {a:.3f} " \
        "experts per token (router FLOPs must be 2 x its param_count per token)"
    k = m.router.cfg.experts_per_token(E)
    assert a <= k * (1 + 1e-9), f"{a:.3f} experts per token realized > experts_per_token {k}: " \
        "the compute matching would undercount this router"
    return f"{measured / N:.0f} FLOPs/token measured = formula at {a:.2f} experts/token " \
           f"(<= experts_per_token {k:g})"


def check_determinism(name: str) -> str:
    x = torch.randn(B * T, D)
    outs = []
    for _ in range(2):
        r = build_router(name, seed=3).train()
        torch.manual_seed(7)
        outs.append(r(x, (B, T)))
    a, b = outs
    for f in ("token", "expert", "weight"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f"same seed, different {f}"
    pa = [p.detach() for p in build_router(name, seed=3).parameters()]
    pb = [p.detach() for p in build_router(name, seed=3).parameters()]
    assert all(torch.equal(u, v) for u, v in zip(pa, pb)), "same seed, different init"
    return "same seed: same init, same routing"


def _lm(name: str, seed: int):
    from repro.layers.moe import MoEConfig
    from repro.models import ModelConfig
    from repro.models.lm import LM

    torch.manual_seed(seed)
    ffn = MoEConfig(n_experts=E, d_expert=F_EXPERT, n_shared=0, backend="loop",
                    router=router_config(name))
    return LM(ModelConfig(vocab_size=32, d_model=D, n_layers=2, n_heads=2, ffn=ffn)).train()


def _steps(model, opt, batches) -> list[float]:
    losses = []
    for idx in batches:
        ce, out = model.loss(idx[:, :-1], idx[:, 1:])
        loss = ce + sum(a.coef * a.value for a in out.aux.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def check_resume(name: str) -> str:
    from repro.lit.checkpoint import ResumeState

    g = torch.Generator().manual_seed(11)  # the data: its own stream, as the data module's
    batches = [torch.randint(0, 32, (4, 9), generator=g) for _ in range(6)]

    def opt_for(model):
        return torch.optim.AdamW(model.parameters(), lr=1e-2)

    ref = _lm(name, 0)
    ref_opt = opt_for(ref)
    want = _steps(ref, ref_opt, batches)

    first = _lm(name, 0)
    opt = opt_for(first)
    got = _steps(first, opt, batches[:3])
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict(),
                "rng": ResumeState().state_dict()}, buf)
    del first, opt
    torch.manual_seed(12345)  # a new process: other RNG state, other init
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    again = _lm(name, 99)
    again.load_state_dict(ckpt["model"])
    opt = opt_for(again)
    opt.load_state_dict(ckpt["opt"])
    ResumeState().load_state_dict(ckpt["rng"])
    got += _steps(again, opt, batches[3:])
    assert got == want, f"losses differ after resume: {got[3:]} vs {want[3:]}"
    sa, sb = ref.state_dict(), again.state_dict()
    diff = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not diff, f"parameters differ after resume: {', '.join(diff[:3])}"
    return "3 + 3 steps through a checkpoint = 6 steps, bit for bit"


CHECKS: dict[str, Callable[[str], str]] = {
    "shapes": check_shapes, "gradients": check_gradients, "backends": check_backends,
    "params": check_params, "flops": check_flops, "determinism": check_determinism,
    "resume": check_resume}


def check(name: str, item: str) -> str:
    """Run one item of the contract; AssertionError with the reason when it fails."""
    return CHECKS[item](name)


def run_selftest(name: str, echo: Callable[[str], None] | None = print) -> list[Check]:
    from repro.routers import ROUTERS

    ROUTERS.get(name, field="router")  # an unknown name: one line with close matches
    torch.set_num_threads(1)  # small shapes: threads only add noise
    results = []
    for item, fn in CHECKS.items():
        t0 = time.perf_counter()
        try:
            detail, ok = fn(name), True
        except AssertionError as e:
            detail, ok = str(e) or "assertion failed", False
        except Exception as e:  # noqa: BLE001 - a crash in the router is a failed check
            detail, ok = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}", False
        results.append(Check(item, ok, detail, time.perf_counter() - t0))
        if echo is not None:
            echo(f"  {'PASS' if ok else 'FAIL'} {item:12s} {detail}")
    return results
