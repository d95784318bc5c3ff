"""Trial: gate and up weights STORED fused ([E, D, 2F] leaf, no per-call cat) vs the current
grouped_mm path, MoE layer fwd+bwd, topk, 1 thread, interleaved; plus transformers' OLMoE eager
block on the same weights when transformers is installed."""
import os, statistics, time, torch
from repro.layers import dispatch
from repro.layers.dispatch import permute, unpermute
from repro.layers.moe import MoEConfig, MoEFFN
from repro.layers.dense import DenseFFN, DenseFFNConfig
from repro.routers.topk import TopKRouterConfig
torch.set_num_threads(1); torch.manual_seed(0)
D, N, H = 256, 8192, 2048
def init(mod, std=0.02):
    for m in mod.modules():
        if hasattr(m, "init_weights"):
            m.init_weights(std, std)
    return mod
x = torch.randn(N, D)
res = {}
def bench(fns, rounds=7):
    for f in fns.values(): f(); f()
    T = {n: [] for n in fns}
    for r in range(rounds):
        names = list(fns); names = names[r % len(names):] + names[:r % len(names)]
        for n in names:
            t0 = time.perf_counter(); fns[n](); fns[n](); T[n].append((time.perf_counter() - t0) / 2)
    return T
for E, k in ((8, 2), (64, 8)):
    F = H // k
    m = init(MoEFFN(MoEConfig(n_experts=E, d_expert=F, router=TopKRouterConfig(top_k=k), backend="grouped_mm"), D))
    dense = init(DenseFFN(DenseFFNConfig(d_ff=H), D))
    wgu = torch.cat([m.experts.w_gate.detach(), m.experts.w_up.detach()], -1).requires_grad_(True)  # [E, D, 2F]
    wd = m.experts.w_down.detach().clone().requires_grad_(True)
    xf = x.clone().requires_grad_(True)
    def run_cur():
        out = m(xf.view(1, N, D)); out.y.pow(2).mean().backward()
    def run_dense():
        dense(xf.view(1, N, D)).y.pow(2).mean().backward()
    def run_fused():
        r = m.router(xf, (1, N))
        s = dispatch.sort_assignments(r.token, r.expert, r.weight, E)
        xs = permute(xf, s); offs = s.counts.cumsum(0).to(torch.int32)
        g, u = torch._grouped_mm(xs, wgu, offs=offs).split(F, -1)
        y = unpermute(xf, s, torch._grouped_mm(torch.nn.functional.silu(g) * u, wd, offs=offs))
        y.pow(2).mean().backward()
    T = bench({"dense": run_dense, "current": run_cur, "prefused": run_fused})
    for n in T:
        print(f"E{E} k{k} {n:10s} {1e3*statistics.median(T[n]):8.1f} ms  {statistics.median(t/d for t, d in zip(T[n], T['dense'])):.3f}x dense")
