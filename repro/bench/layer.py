"""Layer benchmark: one MoE block (router included) against the dense SwiGLU of equal activated
FLOPs, forward + backward, warm-up then interleaved repetitions in one process.

Dimension legend: N tokens (= B*T), D model width, E experts, K experts per token, F expert hidden,
H activated hidden width (K*F), C capacity.

Matching: each case fixes the activated hidden width H; the MoE block gets F = H / k_eff (k_eff =
the router's experts per token, rounded to 16-byte-aligned rows so every backend can run it) and
the dense arm is derived from the built MoE config with ``compute.match_dense_to`` (router FLOPs
included), never typed in. The reference is the faster of that exact width and the next multiple
of 64 (equal or more FLOPs), both timed in the same rounds, so an odd, slow GEMM width never
flatters the MoE ratio.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace

import torch

from repro.bench.peers import PEER_ROUTER
from repro.bench.peers import PEERS as _PEERS
from repro.bench.peers import build as build_peer
from repro.compute import match_dense_to
from repro.layers import dispatch_policy
from repro.layers.dense import SwiGLU
from repro.layers.dispatch import sort_assignments
from repro.layers.moe import MoEConfig, MoEFFN
from repro.routers import ROUTERS

PEER_NAMES = tuple(p[0] for p in _PEERS)


@dataclass(frozen=True)
class LayerCase:
    router: str
    n_experts: int  # E
    top_k: int  # K for the top-k style routers; capacity factor for Expert Choice
    d_model: int  # D
    hidden: int  # H activated hidden width (the dense reference does the same FLOPs)


def default_top_k(n_experts: int) -> int:
    """The issue's grid: coarse top-2 below 64 experts, fine-grained top-8 from 64 on."""
    return 2 if n_experts < 64 else 8


# per-router settings of the benchmark grid on top of ``with_experts_per_token``; a router not
# listed runs with its defaults, so every registered router is benchmarked without an edit here
BENCH_ROUTER_KW: dict[str, dict] = {
    # one routing group over the whole call: C = N*k/E exactly. (The default per-position groups
    # have only B tokens each, so C = max(1, floor(B*k/E)) rounds up at large E and runs more
    # than k experts per token: E=256, B=8 would run 4x the matched FLOPs.)
    "expert_choice": dict(group="batch"),
}


def router_config(name: str, k: int):
    """The registered router's config with this case's K where the method has a free K (top-k's
    K, Expert Choice's capacity factor; Switch top-1 and GShard top-2 fix their own)."""
    cfg = ROUTERS.get(name).Config(**BENCH_ROUTER_KW.get(name, {}))
    return cfg.with_experts_per_token(k)


def moe_config(case: LayerCase, backend: str, dtype: torch.dtype = torch.float32) -> MoEConfig:
    r = router_config(case.router, case.top_k)
    k_eff = r.experts_per_token(case.n_experts)
    align = 8  # 16-byte rows in fp32 and bf16 alike (grouped_mm needs it)
    f = max(align, int(round(case.hidden / k_eff / align)) * align)
    return MoEConfig(n_experts=case.n_experts, d_expert=f, router=r, backend=backend)


def dense_width(cfg: MoEConfig, d_model: int) -> int:
    return match_dense_to(cfg, d_model).d_ff


def build_moe(case: LayerCase, backend: str, seed: int, device, dtype) -> MoEFFN:
    torch.manual_seed(seed)
    m = MoEFFN(moe_config(case, backend), case.d_model)
    std = 0.02
    m.experts.init_weights(std, std)
    m.router.reset_parameters()
    return m.to(device=device, dtype=dtype)


def build_dense(d_model: int, d_ff: int, seed: int, device, dtype) -> SwiGLU:
    torch.manual_seed(seed)
    d = SwiGLU(d_model, d_ff)
    d.init_weights(0.02, 0.02)
    return d.to(device=device, dtype=dtype)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def fwd_bwd(module, x: torch.Tensor, g: torch.Tensor, seed: int | None = None):
    """One forward + backward; returns (output, input grad, {param name: grad}) detached.
    ``seed``: reseed first, so stochastic routers (noisy top-k, GShard's random policy) route the
    same way in the reference and the checked backend."""
    if seed is not None:
        torch.manual_seed(seed)
    for p in module.parameters():
        p.grad = None
    x = x.detach().requires_grad_(True)
    out = module(x)
    y = out.y if hasattr(out, "y") else out
    y.backward(g)
    return y.detach(), x.grad.detach(), {n: p.grad.detach() for n, p in module.named_parameters()
                                         if p.grad is not None}


def compare(ref, got, dtype) -> float:
    """Largest relative error over the output, the input gradient and every parameter gradient,
    each normalised by the reference tensor's largest magnitude. Missing grads count as error."""
    (y0, gx0, gp0), (y1, gx1, gp1) = ref, got
    err = 0.0
    pairs = [(y0, y1), (gx0, gx1)]
    for n, g in gp0.items():
        if n not in gp1:
            return math.inf
        pairs.append((g, gp1[n]))
    for a, b in pairs:
        if a.shape != b.shape:
            return math.inf
        scale = a.float().abs().max().clamp_min(1e-12)
        err = max(err, float((a.float() - b.float()).abs().max() / scale))
    return err


def tolerance(dtype: torch.dtype) -> float:
    return 2e-2 if dtype == torch.bfloat16 else 1e-4


@dataclass
class Timed:
    name: str
    fn: object
    times: list[float] = field(default_factory=list)


# A sparse block that does at least the dense reference's FLOPs cannot run faster than it on one
# device by more than the measurement noise (about 0.05 in a ratio, docs/cost.md): a ratio below
# 1 - PLAUSIBLE_TOL is a measurement artefact (allocator page faults inflating the reference, a
# cached or skipped computation) and is refused, not reported.
PLAUSIBLE_TOL = 0.05
DRIFT_TOL = 0.10  # the dense reference's late rounds vs its early ones: more is flagged


def clock_for(device) -> tuple[str, object]:
    """CPU: the process's CPU time (other processes on a shared machine do not inflate it the
    way they inflate wall time); CUDA: wall time around a synchronised call."""
    if torch.device(device).type == "cuda":
        return "wall", time.perf_counter
    return "cpu", time.process_time


def interleave(items: list[Timed], reps: int, warmup: int, device) -> None:
    """Warm-up every item, then ``reps`` rounds running each item once; the order rotates each
    round so no item always runs right after the same neighbour. Timed with ``clock_for``."""
    _, clock = clock_for(device)
    for it in items:
        for _ in range(warmup):
            it.fn()
    _sync(device)
    for r in range(reps):
        k = r % len(items)
        for it in items[k:] + items[:k]:
            _sync(device)
            t0 = clock()
            it.fn()
            _sync(device)
            it.times.append(clock() - t0)


def drift(times: list[float]) -> float:
    """Relative change of the median of the last half of the rounds over the first half."""
    if len(times) < 4:
        return 0.0
    h = len(times) // 2
    return statistics.median(times[h:]) / statistics.median(times[:h]) - 1


def plausibility(row: dict, tol: float = PLAUSIBLE_TOL) -> str:
    """"" when the row's ratio is possible, else why it is refused: a block doing at least the
    dense FLOPs measured faster than dense by more than ``tol``."""
    r = row.get("ratio", math.nan)
    if isinstance(r, float) and math.isfinite(r) and r < 1 - tol:
        return (f"refused: measured {r:.3f}x dense at >= dense FLOPs is impossible "
                "(a measurement artefact)")
    return ""


def median_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


def bench_group(router: str, n_experts: int, top_k: int, *, d_model: int, hidden: int,
                tokens: int, seq_len: int, backends: list[str], reps: int, warmup: int, device,
                dtype, seed: int = 0, wrong_backend: dict | None = None,
                peers: bool = False) -> list[dict]:
    """Every backend of one (router, E) against its dense reference. Returns one row per backend.

    Each backend is checked against the ``loop`` backend (the reference) on identical weights and
    input before it is timed; a backend that disagrees is not timed (``ref_ok`` False).
    ``wrong_backend`` (tests only) maps a backend name to a function perturbing its module.
    ``peers``: for the ``topk`` router, also time transformers 5's MoE blocks on the same weights
    (``repro.bench.peers``), each checked on its output and input gradient first.
    """
    case = LayerCase(router, n_experts, top_k, d_model, hidden)
    B = max(1, tokens // seq_len)
    T = tokens // B
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(B, T, d_model, generator=gen).to(device=device, dtype=dtype)  # [B, T, D]
    g = torch.randn(B, T, d_model, generator=gen).to(device=device, dtype=dtype)  # dL/dy
    cfg = moe_config(case, "loop")
    # experts per token the block really runs: the case's K, or the router's own (Switch 1,
    # GShard 2; Expert Choice: its capacity factor)
    k_eff = cfg.router.experts_per_token(n_experts)
    k_eff = int(k_eff) if float(k_eff).is_integer() else k_eff
    # the dense reference: the faster of the exact-FLOP width and the next multiple of 64 (equal
    # or more FLOPs), timed side by side. An odd exact width (2051 for hidden 2048 + router) runs
    # 1.2-1.3x slower than 2048 in oneDNN/MKL and would flatter every MoE ratio
    d_ff = dense_width(cfg, d_model)
    widths = {"dense": d_ff, "dense64": -(-d_ff // 64) * 64}
    if widths["dense64"] == d_ff:
        del widths["dense64"]
    dense = {n: build_dense(d_model, w, seed, device, dtype) for n, w in widths.items()}
    ref_mod = build_moe(case, "loop", seed, device, dtype)
    ref = fwd_bwd(ref_mod, x, g, seed=seed)
    rows, items = [], [Timed(n, (lambda m=m: fwd_bwd(m, x, g))) for n, m in dense.items()]
    # the loop backend is always the reference; it is timed only when listed
    for be in backends:
        m = ref_mod if be == "loop" else build_moe(case, be, seed, device, dtype)
        if wrong_backend and be in wrong_backend:
            wrong_backend[be](m)
        resolved, how = resolved_backend(m, x)
        try:
            err = 0.0 if m is ref_mod else compare(ref, fwd_bwd(m, x, g, seed=seed), dtype)
            problem = "" if err <= tolerance(dtype) else f"differs from loop by {err:.2e}"
        except (RuntimeError, NotImplementedError) as e:  # backend unavailable for this shape
            err, problem = math.inf, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
        row = dict(router=router, backend=be, resolved_backend=resolved, n_experts=n_experts,
                   top_k=k_eff, d_model=d_model, d_expert=cfg.d_expert, d_ff_dense=d_ff,
                   hidden=hidden, tokens=B * T, ref_max_err=err, ref_ok=not problem,
                   auto_choice=how, note=problem)
        rows.append(row)
        if not problem:  # auto is timed itself: its choice plus the per-call cache lookup
            items.append(Timed(be, (lambda m=m: fwd_bwd(m, x, g))))
    if peers and router == PEER_ROUTER:
        y0, gx0, _ = ref
        for name in PEER_NAMES:
            m = build_peer(name, ref_mod, device, dtype)
            try:  # their parameters differ in layout from ours: compare y and dL/dx only
                err = compare((y0, gx0, {}), fwd_bwd(m, x, g), dtype)
                problem = "" if err <= tolerance(dtype) else f"differs from loop by {err:.2e}"
            except (RuntimeError, NotImplementedError, ValueError) as e:
                err, problem = math.inf, f"failed: {type(e).__name__}: {str(e)[:80]}"
            rows.append(dict(router=router, backend=name, resolved_backend=name,
                             n_experts=n_experts, top_k=k_eff, d_model=d_model,
                             d_expert=cfg.d_expert, d_ff_dense=d_ff, hidden=hidden,
                             tokens=B * T, ref_max_err=err, ref_ok=not problem, auto_choice="",
                             note=problem or "peer: transformers block on our weights"))
            if not problem:
                items.append(Timed(name, (lambda m=m: fwd_bwd(m, x, g))))
    interleave(items, reps, warmup, device)
    t = {it.name: it.times for it in items}
    fastest = min(widths, key=lambda n: statistics.median(t[n]))
    t["dense"], d_ff = t[fastest], widths[fastest]
    for row in rows:
        row["d_ff_dense"] = d_ff
        if len(widths) > 1:
            row["note"] = (row["note"] + "; " if row["note"] else "") + (
                f"dense ref d_ff={d_ff} (of {widths['dense']} exact / {widths['dense64']} "
                "aligned, the faster)")
        tb = t.get(row["backend"])
        row.update(reps=reps, dense_ms=1e3 * statistics.median(t["dense"]),
                   moe_ms=1e3 * statistics.median(tb) if tb else math.nan,
                   ratio=median_ratio(tb, t["dense"]) if tb else math.nan,
                   ratio_min=min(a / b for a, b in zip(tb, t["dense"])) if tb else math.nan,
                   ratio_max=max(a / b for a, b in zip(tb, t["dense"])) if tb else math.nan)
        row["clock"] = clock_for(device)[0]
        row["dense_drift"] = drift(t["dense"])
        if abs(row["dense_drift"]) > DRIFT_TOL:
            row["note"] = (row["note"] + "; " if row["note"] else "") + (
                f"dense reference drifted {100 * row['dense_drift']:+.0f}% within the run")
        why = plausibility(row)
        row["plausible"] = not why
        if why:  # kept for the record, never counted as met
            row["note"] = (row["note"] + "; " if row["note"] else "") + why
            row["ratio_refused"], row["ratio"] = row["ratio"], math.nan
    return rows


def resolved_backend(m: MoEFFN, x: torch.Tensor) -> tuple[str, str]:
    """The backend ``auto`` (or an explicit choice) runs for this block on this input, and for
    ``auto`` how it was decided ("probe grouped_mm=41.2 bmm=45.0 loop=80.1 ms", "static rule").
    Asked with autograd on, as the timed forward + backward will ask (``auto`` keys
    forward-only calls apart), so a probe here is the one the timed calls reuse."""
    with torch.no_grad():
        B, T, D = x.shape
        xf = x.reshape(B * T, D)  # [N, D]
        r = m.router(xf, (B, T))
        s = sort_assignments(r.token, r.expert, r.weight, m.cfg.n_experts, r.capacity,
                             r.expert_major)
    with torch.enable_grad():
        if m.cfg.backend != "auto":
            return m.dispatch_backend(xf, s), ""
        d = dispatch_policy.POLICY.decide(xf, s, m.experts.weights, m.activation())
    if d.source == "probe":
        return d.backend, "probe " + " ".join(f"{b}={ms:.1f}" for b, ms in d.ms.items()) + " ms"
    return d.backend, {"disk": "disk cache", "static": "static rule"}[d.source]


def with_backend(cfg: MoEConfig, backend: str) -> MoEConfig:
    return replace(cfg, backend=backend)
